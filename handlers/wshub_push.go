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
// pushWindow(s), s being the session_count it carried: STATS_PUSH_INTERVAL, longer in a large
// room. The first change after the window ended is pushed at once (leading edge) and opens the
// next window; the changes made within a window are pushed once, with the latest counts, when it
// ends (trailing edge), and that push opens the next window. So two online_stats of a room reach
// a member at least pushWindow(s) apart, s being the session_count of the first, and the last one
// has the latest counts. Every instance does the same with what it hears on the room's channel,
// and since all of them see the same counts, their windows agree.
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

// maxPushWindow caps the window STATS_PUSH_ROOM_RATE widens: a member hears of a change within a
// second however large its room (a longer STATS_PUSH_INTERVAL is taken as it is).
const maxPushWindow = time.Second

// pushWindow is the coalescing window opened by a push of counts with the given session_count:
// STATS_PUSH_INTERVAL, widened for a large room so that its pushes cost at most
// STATS_PUSH_ROOM_RATE frames a second (a push is one frame per session, across all instances),
// but not beyond maxPushWindow:
//
//	window(s) = max(STATS_PUSH_INTERVAL, min(s / STATS_PUSH_ROOM_RATE, 1 s))
//
// With the defaults (1 ms, 25,000 a second): 1 ms up to 25 sessions, 0.04 ms per session above,
// 2 ms at 50, 40 ms at 1,000, 1 s from 25,000. What that bounds, for any room:
//   - per member, two online_stats never closer than STATS_PUSH_INTERVAL: over any span D at most
//     one per STATS_PUSH_INTERVAL plus one (1 + D / STATS_PUSH_INTERVAL);
//   - per room, across all instances: at most STATS_PUSH_ROOM_RATE frames a second while the room
//     has up to STATS_PUSH_ROOM_RATE sessions (s a second above that, one push a second).
func pushWindow(interval time.Duration, roomRate int, sessions int64) time.Duration {
	w := interval
	if roomRate > 0 && sessions > 0 {
		wide := time.Duration(min(sessions, 1<<32) * int64(time.Second) / int64(roomRate))
		w = max(w, min(wide, maxPushWindow))
	}
	return w
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
	r.window = pushWindow(h.cfg.StatsPushInterval, h.cfg.StatsPushRoomRate, r.last.SessionCount)
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
