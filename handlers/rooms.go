package handlers

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"presencestats"
)

// MaxStatsRooms is the most rooms GET /api/rooms/stats answers for at once.
const MaxStatsRooms = 100

// RoomsStats is the body of GET /api/rooms/stats.
type RoomsStats struct {
	Rooms []presencestats.OnlineStats `json:"rooms"`
}

// serveRoomStats answers GET /api/rooms/:room_id/stats from the live cache.
func (h *Hub) serveRoomStats(c *gin.Context) {
	room, err := parseRoomID(c.Param("room_id"))
	if err != nil {
		writeError(c, h.log, err)
		return
	}
	c.JSON(http.StatusOK, h.Stats(c.Request.Context(), []uuid.UUID{room})[0])
}

// serveManyStats answers GET /api/rooms/stats?room_id=..&room_id=.. (1 to 100 rooms).
func (h *Hub) serveManyStats(c *gin.Context) {
	raw := c.QueryArray("room_id")
	if len(raw) == 0 {
		writeError(c, h.log, presencestats.Errorf(presencestats.EINVALID, "room_id: give at least one room_id query parameter"))
		return
	}
	if len(raw) > MaxStatsRooms {
		writeError(c, h.log, presencestats.Errorf(presencestats.EINVALID, "room_id: at most %d rooms per request, got %d", MaxStatsRooms, len(raw)))
		return
	}
	seen := make(map[uuid.UUID]bool, len(raw))
	rooms := make([]uuid.UUID, 0, len(raw))
	for _, s := range raw {
		id, err := parseRoomID(s)
		if err != nil {
			writeError(c, h.log, err)
			return
		}
		if !seen[id] {
			seen[id] = true
			rooms = append(rooms, id)
		}
	}
	c.JSON(http.StatusOK, RoomsStats{Rooms: h.Stats(c.Request.Context(), rooms)})
}
