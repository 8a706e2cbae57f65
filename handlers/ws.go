package handlers

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/olahol/melody"
	"golang.org/x/time/rate"

	"presencestats"
)

// Register adds GET /ws/rooms/:room_id and the room stats endpoints.
func (h *Hub) Register(r *gin.Engine) {
	r.GET("/ws/rooms/:room_id", h.serveWS)
	api := r.Group("/api/rooms", RequireUser(h.cfg.Auth, h.log))
	api.GET("/stats", h.serveManyStats)
	api.GET("/:room_id/stats", h.serveRoomStats)
}

func parseRoomID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil || id == uuid.Nil {
		return uuid.Nil, presencestats.Errorf(presencestats.EINVALID, "room_id %q is not a UUID", truncate(s, 64))
	}
	return id, nil
}

// parseResume reads the resume query parameter: empty (a new session) or a session id.
func parseResume(s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.Nil, nil
	}
	id, err := uuid.Parse(s)
	if err != nil || id == uuid.Nil {
		return uuid.Nil, presencestats.Errorf(presencestats.EINVALID, "resume %q is not a session id (a UUID from the welcome frame)", truncate(s, 64))
	}
	return id, nil
}

// truncate cuts s to at most n bytes, at a character boundary, marking the cut with "...".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// serveWS authenticates, validates and applies the connection limits before the upgrade, so a
// bad or refused request gets a plain HTTP answer (401, 400, 403, 429, 503) and never a
// WebSocket. The connect rate of the client's address is metered first, before the token is
// verified: a flood costs a map look-up per attempt, whatever it carries.
func (h *Hub) serveWS(c *gin.Context) {
	ip := requestIP(c)
	if err := h.cfg.Limits.AllowConnect(ip); err != nil {
		writeError(c, h.log, err)
		return
	}
	claims, err := h.cfg.Auth.authenticate(c)
	if err != nil {
		writeError(c, h.log, err)
		return
	}
	room, err := parseRoomID(c.Param("room_id"))
	if err != nil {
		writeError(c, h.log, err)
		return
	}
	resume, err := parseResume(c.Query("resume"))
	if err != nil {
		writeError(c, h.log, err)
		return
	}
	if !h.originAllowed(c.Request) {
		writeError(c, h.log, presencestats.Errorf(presencestats.EFORBIDDEN, "origin %q is not allowed", truncate(c.GetHeader("Origin"), 100)))
		return
	}
	h.mu.Lock()
	closing := h.closing
	h.mu.Unlock()
	if closing {
		writeError(c, h.log, presencestats.Errorf(presencestats.EUNAVAILABLE, "server shutting down"))
		return
	}
	// The connection counts against the user's and the instance's limits from here until the
	// upgrade's goroutine ends: HandleRequestWithKeys returns only after the session's read loop
	// and its disconnect handler are done, whichever way it ended (closed, timeout, slow
	// consumer, shutdown, a failed join), or at once when the handshake fails.
	release, err := h.cfg.Limits.Acquire(claims.UserID)
	if err != nil {
		writeError(c, h.log, err)
		return
	}
	conn := &wsConn{
		hub: h, id: presencestats.NewID(), room: room, user: claims.UserID,
		ip: ip, ua: truncate(c.Request.UserAgent(), 512),
		limiter: rate.NewLimiter(rate.Limit(h.cfg.ChatRatePerSecond), h.cfg.ChatBurst),
	}
	if resume != uuid.Nil && h.cfg.ResumeWindow > 0 {
		h.resumeBeforeUpgrade(conn, resume)
	}
	// The session runs on a goroutine of its own and this handler returns as soon as the
	// connection is hijacked: net/http then frees the request's buffers and the handler's deep
	// stack, which would otherwise live as long as the WebSocket (about half of the memory of an
	// idle connection). A bad handshake is answered (400) before the handler returns.
	dw := &detachedWriter{ResponseWriter: c.Writer, hijacked: make(chan struct{}), wrap: func(nc net.Conn) net.Conn {
		return &batchedConn{Conn: nc, more: conn.moreQueued, pool: &h.heldFrames}
	}}
	req := c.Request
	go func() {
		defer dw.release()
		defer release()
		if err := h.m.HandleRequestWithKeys(dw, req, map[string]any{connKey: conn}); err != nil {
			h.log.Debug("websocket upgrade failed", "err", err)
		}
		// onConnect ran (or not) on this goroutine, inside HandleRequestWithKeys.
		if conn.resumed && !conn.counted {
			h.releaseUnconnected(conn)
		}
	}()
	<-dw.hijacked
}

// upgradeError answers a WebSocket handshake the upgrader refuses (not an upgrade request, an
// unsupported version...) with the JSON error body every other answer has, instead of the
// upgrader's plain text.
func upgradeError(w http.ResponseWriter, _ *http.Request, status int, reason error) {
	code := presencestats.EINVALID
	if status == http.StatusForbidden {
		code = presencestats.EFORBIDDEN
	}
	w.Header().Set("Sec-Websocket-Version", "13") // the one version the server speaks
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(ErrorBody{Error: ErrorDetail{Code: code, Message: "websocket handshake: " + reason.Error()}})
}

// detachedWriter is the ResponseWriter of an upgrade running on another goroutine: release
// (after a successful Hijack, or when the upgrade gave up and answered) lets the HTTP handler
// return. Nothing writes to it after that. The connection it hands over is wrap's (the
// WebSocket's writes batched, wswrite.go).
type detachedWriter struct {
	http.ResponseWriter
	hijacked chan struct{}
	once     sync.Once
	wrap     func(net.Conn) net.Conn
}

func (w *detachedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("the response writer cannot be hijacked")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return conn, brw, err
	}
	w.release()
	return w.wrap(conn), brw, nil
}

func (w *detachedWriter) release() { w.once.Do(func() { close(w.hijacked) }) }

// originAllowed accepts requests without Origin (not from a browser), and otherwise an Origin
// listed in ALLOWED_ORIGINS ("*" allows all) or, when the list is empty, of the same host.
func (h *Hub) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if len(h.cfg.AllowedOrigins) == 0 {
		return strings.EqualFold(u.Host, r.Host)
	}
	for _, a := range h.cfg.AllowedOrigins {
		if a == "*" || strings.EqualFold(strings.TrimRight(a, "/"), origin) {
			return true
		}
	}
	return false
}

// onMessage handles one client frame. Every bad frame gets an error frame; none closes the
// connection (melody closes only above 4 x MAX_MESSAGE_BYTES, with 1009).
func (h *Hub) onMessage(s *melody.Session, msg []byte) {
	c := connOf(s)
	if c == nil {
		return
	}
	f, code, why := parseClientFrame(msg, h.cfg.MaxMessageBytes)
	switch {
	case code != "":
		c.send(errorFrame(code, why))
	case f.Type == TypePing:
		c.send([]byte(pongFrame))
	case f.Type == TypeMessage:
		h.chat(c, f.Text)
	}
}

// chat relays text, a message frame's text as parseClientFrame returns it.
func (h *Hub) chat(c *wsConn, text string) {
	if !c.limiter.Allow() {
		c.send(errorFrame(CodeRateLimited, "too many messages: slow down"))
		return
	}
	h.metrics.chat.Inc()
	payload, err := json.Marshal(ChatMessage{RoomID: c.room, UserID: c.user, Text: text, Timestamp: h.now().UTC()})
	if err != nil {
		return
	}
	ctx, cancel := storeCtx()
	defer cancel()
	if err := h.cfg.Store.Publish(ctx, c.room, payload); err != nil {
		// Redis is down: members on this instance still get it.
		h.markDown(err)
		h.onChat(c.room, payload)
		c.send(errorFrame(CodeUnavailable, "message delivered on this server only: the relay is down"))
	}
}
