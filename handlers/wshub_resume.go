package handlers

// Rolling restarts without flapping. A shutdown with RESUME_WINDOW set detaches this instance's
// sessions instead of ending them: they stay in Redis, counted, for RESUME_WINDOW, and the sockets
// close with 1012 (service restart). A client that reconnects, to any instance, with
// ?resume=<session_id> of its welcome frame within the window resumes its session there: same
// id, no disconnected/connected pair, no change of the counts and so no push to anyone; its
// session_seconds later spans the whole stay. Only the token's user can resume a session; any id
// that cannot be resumed (unknown, expired, taken over already, another user's) is a new session,
// never an error. A detached session nobody resumes is ended by the sweeper with reason
// server_shutdown. The atomic steps are storage's detach.lua and resume.lua.

import (
	"context"

	"github.com/google/uuid"
	"github.com/olahol/melody"
	"github.com/prometheus/client_golang/prometheus"

	"presencestats"
)

// CloseServiceRestart is the close code of a shutdown that detached the sessions (RFC 6455
// registry: 1012 Service Restart): reconnect, to any instance, with ?resume=<session_id>.
const CloseServiceRestart = 1012

type resumeMetrics struct {
	detached, resumed, refused prometheus.Counter
}

func newResumeMetrics(reg prometheus.Registerer) *resumeMetrics {
	m := &resumeMetrics{
		detached: prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_detached_sessions_total",
			Help: "Sessions this instance's shutdown detached for their clients to resume elsewhere (RESUME_WINDOW)."}),
		resumed: prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_resumed_sessions_total",
			Help: "Sessions resumed on this instance after another instance's shutdown detached them."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_resume_refused_total",
			Help: "Resume requests that became new sessions (unknown, expired, taken over already, another user's, or Redis down)."}),
	}
	reg.MustRegister(m.detached, m.resumed, m.refused)
	return m
}

// shutdownEnding returns how Close ends each live session (c.stateMu held, c.left set) and the
// close frame of the sockets.
func (h *Hub) shutdownEnding(ctx context.Context) (end func(*wsConn), closeMsg []byte) {
	if h.cfg.ResumeWindow <= 0 {
		return func(c *wsConn) { h.leaveLocked(c, presencestats.ReasonServerShutdown) },
			melody.FormatCloseMessage(melody.CloseGoingAway, "server shutdown")
	}
	// A heartbeat after the detach would move the session's deadline to now + PRESENCE_TTL: the
	// heartbeat loop stops first (a round in progress is bounded by its store calls' timeouts,
	// and the wait by the shutdown's deadline).
	h.hbCancel()
	stopped := make(chan struct{})
	go func() { h.hbDone.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		h.log.Warn("hub close: heartbeats still running at the deadline")
	}
	return h.detachLocked, melody.FormatCloseMessage(CloseServiceRestart, "service restart: reconnect with resume")
}

// detachLocked lets go of c's session in the store for RESUME_WINDOW (c.stateMu held, c.left
// set). A session the store does not hold for this instance (never registered, a join whose
// outcome is unknown, expired meanwhile) or a failed detach is ended as before: a leave with
// reason server_shutdown.
func (h *Hub) detachLocked(c *wsConn) {
	if c.inStore && !c.joinUnsure {
		ctx, cancel := storeCtx()
		ok, err := h.cfg.Store.Detach(ctx, c.room, c.id, h.cfg.ResumeWindow, presencestats.ReasonServerShutdown)
		cancel()
		if err == nil && ok {
			c.inStore = false
			c.reason = presencestats.ReasonServerShutdown
			h.resumes.detached.Inc()
			return
		}
		if err != nil {
			h.markDown(err)
		}
	}
	h.leaveLocked(c, presencestats.ReasonServerShutdown)
}

// resumeBeforeUpgrade tries to take over session id for c, a connection not upgraded yet: when
// the store hands it over, c becomes that session (its id, start, counts) and is registered
// already; otherwise c stays a new session and joins as usual. A store error is a new session
// too (the join that follows meets the outage). A resume whose reply is lost after Redis applied
// it leaves the session held by this instance with nobody refreshing it: it ends after
// PRESENCE_TTL with reason timeout, while the client goes on as a new session.
func (h *Hub) resumeBeforeUpgrade(c *wsConn, id uuid.UUID) {
	ctx, cancel := storeCtx()
	defer cancel()
	at, st, ok, err := h.cfg.Store.Resume(ctx, presencestats.Session{ID: id, RoomID: c.room, UserID: c.user, UserIP: c.ip, UserAgent: c.ua})
	if err != nil || !ok {
		if err != nil {
			h.log.Warn("resume failed: a new session instead", "session_id", id, "room_id", c.room, "err", err)
		}
		h.resumes.refused.Inc()
		return
	}
	c.id, c.connectedAt, c.recorded, c.inStore = id, at, true, true
	c.resumed, c.resumedStats = true, st
	c.lastHBEvent = h.now()
	h.resumes.resumed.Inc()
}

// releaseUnconnected ends a resumed session whose WebSocket never reached onConnect (a failed
// handshake, or this instance started shutting down meanwhile): detached again when shutting
// down with a window, else left (reason closed).
func (h *Hub) releaseUnconnected(c *wsConn) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if c.left || !c.inStore {
		return
	}
	c.left = true
	h.mu.Lock()
	closing := h.closing
	h.mu.Unlock()
	if closing && h.cfg.ResumeWindow > 0 {
		h.detachLocked(c)
		return
	}
	h.leaveLocked(c, presencestats.ReasonClosed)
}
