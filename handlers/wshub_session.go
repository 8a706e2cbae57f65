package handlers

// Session lifecycle of the hub: a WebSocket connects, is welcomed and joined in Redis, leaves or
// errors, and is dropped when it reads too slowly.

import (
	"context"
	"errors"
	"net"

	"github.com/google/uuid"
	"github.com/olahol/melody"

	"presencestats"
)

func (h *Hub) onConnect(s *melody.Session) {
	c := connOf(s)
	if c == nil {
		return
	}
	c.s = s
	// Everything needed from the request is in c: drop it (headers, URL, context) rather than
	// keep it for the life of the connection.
	s.Request = nil
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		_ = s.CloseWithMsg(melody.FormatCloseMessage(melody.CloseGoingAway, "server shutdown"))
		return
	}
	c.counted = true
	h.conns.Add(1)
	h.metrics.connections.Inc()
	r := h.rooms[c.room]
	if r == nil {
		r = &localRoom{members: map[*wsConn]struct{}{}}
		h.rooms[c.room] = r
	}
	r.members[c] = struct{}{}
	h.conns.Add(1) // the join below
	h.mu.Unlock()
	// The join runs on a short-lived goroutine: its deep stack (Redis client, JSON) is freed when
	// it ends, instead of growing the stack of the session's read loop for the connection's life.
	go func() {
		defer h.conns.Done()
		h.welcome(c)
	}()
}

// welcome registers a new session in the store and sends it the welcome frame and the snapshot
// of its room's counts (degraded ones when Redis is down: it is registered when Redis is back).
func (h *Hub) welcome(c *wsConn) {
	c.send(mustFrame(TypeWelcome, WelcomeData{
		SessionID: c.id, RoomID: c.room, UserID: c.user, Resumed: c.resumed,
		HeartbeatIntervalMS: h.heartbeatInterval().Milliseconds(), MaxMessageBytes: h.cfg.MaxMessageBytes,
	}))
	c.stateMu.Lock()
	if c.left {
		c.stateMu.Unlock()
		return
	}
	var joined presencestats.OnlineStats
	ok := true
	if c.resumed {
		// Registered by the resume before the upgrade, which changed no count: nothing to push.
		joined = c.resumedStats
	} else {
		joined, ok = h.joinLocked(c, false)
	}
	c.stateMu.Unlock()
	snapshot := joined
	if !ok {
		snapshot = h.degradedStats(context.Background(), []uuid.UUID{c.room})[0]
	}
	// Pushes made while it joined skipped it: it gets the newest counts of its room, which its
	// join is part of, and from now on every push.
	h.mu.Lock()
	if r := h.rooms[c.room]; ok && r != nil && r.hasLast && r.last.Timestamp.After(snapshot.Timestamp) {
		snapshot = r.last
	}
	c.welcomed = true
	c.send(StatsFrame(snapshot))
	h.mu.Unlock()
	if ok && !c.resumed {
		h.applyStats(joined)
	}
}

// joinLocked registers c in the store (c.stateMu held) and records its connected event the
// first time. expired says the store dropped the session with a timeout event (a sweeper expired
// it): coming back is then recorded as a new connection. Re-registering after a Redis outage is
// not (the history never saw those sessions end). It reports whether the store answered.
func (h *Hub) joinLocked(c *wsConn, expired bool) (presencestats.OnlineStats, bool) {
	if c.left {
		return presencestats.OnlineStats{}, false
	}
	return h.register(c, expired)
}

// register is joinLocked without the check that c has not left: leaveLocked uses it to learn
// whether a join whose reply was lost was applied, before it undoes it.
func (h *Hub) register(c *wsConn, expired bool) (presencestats.OnlineStats, bool) {
	ctx, cancel := storeCtx()
	defer cancel()
	// The store records the connected event of a new session when asked: the first time, and
	// when the session had been expired (with a timeout event). Not after a Redis outage: the
	// history never saw those sessions end.
	ev, st, err := h.cfg.Store.Join(ctx, c.session(), !c.recorded || expired)
	if err != nil {
		if outcomeUnknown(err) {
			c.joinUnsure = true
		}
		h.markDown(err)
		return presencestats.OnlineStats{}, false
	}
	c.inStore, c.joinUnsure = true, false
	if !c.recorded {
		// Recorded by this join, or by an earlier one whose answer was lost (Join returns that
		// join's event then).
		c.recorded = true
		c.connectedAt = ev.TS
		c.lastHBEvent = h.now()
		h.metrics.joins.Inc()
	} else {
		h.metrics.rejoins.Inc()
		if ev.Type == presencestats.EventConnected {
			// Recorded as a new connection (it had been expired): later registrations carry
			// this connection's time.
			c.connectedAt = ev.TS
		}
	}
	return st, true
}

func (h *Hub) onDisconnect(s *melody.Session) {
	c := connOf(s)
	if c == nil || !c.counted {
		return
	}
	defer h.conns.Done()
	h.metrics.connections.Dec()
	h.mu.Lock()
	if r := h.rooms[c.room]; r != nil {
		delete(r.members, c)
		if len(r.members) == 0 {
			delete(h.rooms, c.room)
		}
	}
	h.mu.Unlock()
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if c.left {
		return
	}
	c.left = true
	reason := c.reason
	c.sendMu.Lock()
	if c.dropped {
		reason = presencestats.ReasonSlowConsumer
	}
	c.sendMu.Unlock()
	if reason == "" {
		reason = presencestats.ReasonClosed
	}
	h.leaveLocked(c, reason)
}

// leaveLocked removes c from the store (c.stateMu held, c.left set) and records its
// disconnected event. While Redis is down the leave waits in h.pending; it reports false then.
func (h *Hub) leaveLocked(c *wsConn, reason string) bool {
	c.reason = reason
	if !c.inStore && c.joinUnsure {
		// A join of c timed out, and Redis may have applied it after all (it stalled, then ran
		// the command): joining again tells, and records the connected event of that join if it
		// was applied (or of this one), so that the leave below has one.
		if _, ok := h.register(c, false); !ok {
			h.mu.Lock()
			h.pending = append(h.pending, c)
			h.mu.Unlock()
			return false
		}
	}
	if !c.inStore {
		return true // never reached Redis (joined during an outage): nothing to undo, nothing recorded
	}
	ctx, cancel := storeCtx()
	defer cancel()
	_, st, err := h.cfg.Store.Leave(ctx, c.room, c.id, reason)
	switch {
	case err == nil: // its disconnected event is recorded by the store
		c.inStore = false
		h.metrics.leaves.WithLabelValues(reason).Inc()
		h.applyStats(st)
	case presencestats.ErrorCode(err) == presencestats.ENOTFOUND:
		// Expired by a sweeper (its timeout event is recorded) or lost with Redis's data.
		c.inStore = false
		h.applyStats(st)
	default:
		h.markDown(err)
		h.mu.Lock()
		h.pending = append(h.pending, c)
		h.mu.Unlock()
		return false
	}
	return true
}

// outcomeUnknown reports a store error after which the command may still have been applied: it
// timed out, rather than failing to reach Redis.
func outcomeUnknown(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func (h *Hub) onError(s *melody.Session, err error) {
	c := connOf(s)
	if c == nil {
		return
	}
	var ne interface{ Timeout() bool }
	switch {
	case errors.Is(err, melody.ErrMessageBufferFull):
		// Not expected (send keeps a slot free), and melody may report it from inside a write
		// made under c.sendMu: drop the client from another goroutine.
		go c.dropSlow()
	case errors.As(err, &ne) && ne.Timeout():
		c.stateMu.Lock()
		if c.reason == "" {
			c.reason = presencestats.ReasonTimeout
		}
		c.stateMu.Unlock()
	}
}

// send queues a frame to the client without waiting. A client whose queue is full is a slow
// consumer: it is disconnected (1008) and gets no more frames; the room is never held up.
func (c *wsConn) send(frame []byte) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if c.dropped || c.s == nil {
		return
	}
	if c.queued >= c.hub.cfg.SendBuffer {
		c.dropSlowLocked()
		return
	}
	c.queued++
	c.hub.metrics.frames.Inc()
	_ = c.s.Write(frame)
}

func (c *wsConn) dropSlow() {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.dropSlowLocked()
}

func (c *wsConn) dropSlowLocked() {
	if c.dropped {
		return
	}
	c.dropped = true
	c.hub.metrics.slow.Inc()
	c.hub.log.Warn("dropping slow consumer", "session_id", c.id, "room_id", c.room, "queued", c.queued)
	// The buffer has one slot more than WS_SEND_BUFFER: the close frame always fits. A client
	// that reads nothing at all is cut when the pending write times out (WriteWait).
	_ = c.s.CloseWithMsg(melody.FormatCloseMessage(melody.ClosePolicyViolation, "slow consumer"))
}
