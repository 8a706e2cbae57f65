package handlers

// Coalesced pushes of a room's counts to its local members, and chat relayed from the room's
// channel.

import (
	"time"

	"github.com/google/uuid"

	"presencestats"
)

// applyStats takes the newest counts of a room (from this instance's own change or from the
// room's channel): it refreshes the cache and pushes them to the room's local members, coalesced
// on the leading and the trailing edge of a window of STATS_PUSH_INTERVAL. The first change after
// a quiet window (no push for a whole interval) is pushed at once and opens a window; the changes
// within it are pushed once, with the latest counts, when it ends, and that push opens the next
// window. A member so gets at most one online_stats per window plus one, and always the latest
// counts last. Every instance does the same with what it hears on the room's channel.
func (h *Hub) applyStats(st presencestats.OnlineStats) {
	h.cachePut(st)
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.rooms[st.RoomID]
	if r == nil {
		return
	}
	if r.hasLast {
		if st.Timestamp.Before(r.last.Timestamp) {
			return // older than what members have or will get
		}
		if st.Timestamp.Equal(r.last.Timestamp) && st.OnlineCount == r.last.OnlineCount && st.SessionCount == r.last.SessionCount {
			return // the same change, seen twice (own result and channel)
		}
	}
	r.last, r.hasLast = st, true
	if r.pending {
		return // the trailing push of this window carries it
	}
	now := h.now()
	if now.Sub(r.lastPush) >= h.cfg.StatsPushInterval {
		h.pushLocked(st.RoomID, r, now) // leading edge
		return
	}
	r.pending = true
	room := st.RoomID
	h.cfg.AfterFunc(r.lastPush.Add(h.cfg.StatsPushInterval).Sub(now), func() { h.flush(room, r) })
}

// flush is the trailing edge of r's window: the latest counts, when the window had changes. A
// room that emptied and came back is another localRoom, with a window of its own.
func (h *Hub) flush(room uuid.UUID, r *localRoom) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rooms[room] == r && r.pending {
		h.pushLocked(room, r, h.now())
	}
}

func (h *Hub) pushLocked(room uuid.UUID, r *localRoom, now time.Time) {
	r.pending = false
	r.lastPush = now
	frame := StatsFrame(r.last)
	for c := range r.members {
		if c.welcomed {
			c.send(frame)
		}
	}
	h.metrics.pushes.Inc()
}

// onStats receives a room's counts from the room's channel.
func (h *Hub) onStats(st presencestats.OnlineStats) { h.applyStats(st) }

// onChat receives a chat message from the room's channel and relays it to local members.
func (h *Hub) onChat(room uuid.UUID, payload []byte) {
	frame := messageFrame(payload)
	h.mu.Lock()
	defer h.mu.Unlock()
	if r := h.rooms[room]; r != nil {
		for c := range r.members {
			if c.welcomed {
				c.send(frame)
			}
		}
	}
}
