package handlers

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

// RoomLister is the part of the report store the dashboard's room picker needs: the rooms that
// appear in the presence aggregates (storage.Reports implements it).
type RoomLister interface {
	Rooms(ctx context.Context) ([]uuid.UUID, error)
}

// WebAPI is the small API the dashboard needs beyond the reports: GET /admin/api/rooms.
type WebAPI struct {
	rooms RoomLister
	log   *slog.Logger
	guard gin.HandlersChain
}

// NewWebAPI returns the feature. guard runs before each handler and must authenticate the admin
// and write the audit record, exactly as for the other admin endpoints: cmd passes
// admin.Guard(ActionRoomsList) of the admin API.
func NewWebAPI(rooms RoomLister, log *slog.Logger, guard ...gin.HandlerFunc) *WebAPI {
	return &WebAPI{rooms: rooms, log: log, guard: guard}
}

// Register adds GET /admin/api/rooms.
func (a *WebAPI) Register(r *gin.Engine) {
	r.GET("/admin/api/rooms", append(append(gin.HandlersChain{}, a.guard...), a.listRooms)...)
}

type roomsResponse struct {
	Rooms []uuid.UUID `json:"rooms"`
}

// listRooms answers {"rooms": ["<uuid>", ...]}: the rooms with history, for the room picker.
func (a *WebAPI) listRooms(c *gin.Context) {
	rooms, err := a.rooms.Rooms(c.Request.Context())
	if err != nil {
		writeError(c, a.log, err)
		return
	}
	if rooms == nil {
		rooms = []uuid.UUID{}
	}
	c.JSON(http.StatusOK, roomsResponse{Rooms: rooms})
}
