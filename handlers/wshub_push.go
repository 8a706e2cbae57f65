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
// on the leading and the trailing edge of a window. Every push opens a window of
// pushWindow(s), s being the session_count it carried. The first change after the window ended
// is pushed at once (leading edge) and opens the next window; the changes made within a window
// are pushed once, with the latest counts, when it ends (trailing edge), and that push opens the
// next window. So two online_stats of a room reach a member at least pushWindow(s) apart, s
// being the session_count of the first, and the last one has the latest counts. Every instance
// does the same with what it hears on the room's channel, and since all of them see the same
// counts, their windows agree.
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
	if now.Sub(r.lastPush) >= r.window {
		h.pushLocked(st.RoomID, r, now) // leading edge
		return
	}
	r.pending = true
	room := st.RoomID
	h.cfg.AfterFunc(r.lastPush.Add(r.window).Sub(now), func() { h.flush(room, r) })
}

// The window a push opens grows with the room: pushWindowSessions sessions or more get the whole
// STATS_PUSH_INTERVAL, a smaller room a share in proportion (a push costs one frame per session,
// across all instances), and no room less than the share of pushWindowFloorSessions.
const (
	pushWindowSessions      = 1000
	pushWindowFloorSessions = 50
)

// pushWindow is the coalescing window opened by a push of counts with the given session_count:
// STATS_PUSH_INTERVAL × sessions / 1,000, at least STATS_PUSH_INTERVAL / 20 (rooms of up to 50
// sessions) and at most STATS_PUSH_INTERVAL (rooms of 1,000 sessions or more). With the default of
// 100 ms: 0.1 ms per session, from 5 ms to 100 ms. What that bounds, for any room:
//   - per member, two online_stats never closer than pushWindow(s) of the first: over any span D
//     at most 1 + D / (STATS_PUSH_INTERVAL / 20) of them (one per 5 ms, plus one), and
//     1 + D / STATS_PUSH_INTERVAL while the room has 1,000 sessions or more;
//   - per room, the frames of its pushes, across all instances: s / pushWindow(s) per second,
//     1,000 / STATS_PUSH_INTERVAL (10,000 a second) while s <= 1,000, s / STATS_PUSH_INTERVAL above.
func (h *Hub) pushWindow(sessions int64) time.Duration {
	s := min(max(sessions, pushWindowFloorSessions), pushWindowSessions)
	return time.Duration(int64(h.cfg.StatsPushInterval) * s / pushWindowSessions)
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
	r.window = h.pushWindow(r.last.SessionCount)
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
