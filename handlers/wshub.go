package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/olahol/melody"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"presencestats"
)

// PresenceStore is the live presence the hub needs (storage.Presence). It records the presence
// events of the changes it applies (joins with record set, leaves, the heartbeats asked for) in
// the same step, so the hub records nothing itself. Errors: EUNAVAILABLE when the store cannot
// be reached; Leave returns ENOTFOUND for a session that is not there.
type PresenceStore interface {
	Join(ctx context.Context, s presencestats.Session, record bool) (presencestats.PresenceEvent, presencestats.OnlineStats, error)
	Leave(ctx context.Context, room, session uuid.UUID, reason string) (presencestats.PresenceEvent, presencestats.OnlineStats, error)
	Touch(ctx context.Context, room uuid.UUID, sessions, heartbeats []uuid.UUID) (presencestats.OnlineStats, []uuid.UUID, error)
	Counts(ctx context.Context, rooms ...uuid.UUID) ([]presencestats.OnlineStats, error)
	Publish(ctx context.Context, room uuid.UUID, payload []byte) error
	Ping(ctx context.Context) error
	Listen(ctx context.Context, onStats func(presencestats.OnlineStats), onMessage func(room uuid.UUID, payload []byte), onState func(up bool)) error
}

// HubConfig is what the real-time presence feature needs; cmd fills it from Config.
type HubConfig struct {
	Store    PresenceStore
	Auth     *TokenAuthority
	Logger   *slog.Logger
	Registry prometheus.Registerer

	AllowedOrigins         []string // empty: same host only
	MaxMessageBytes        int
	PresenceTTL            time.Duration
	StatsPushInterval      time.Duration
	StatsCacheTTL          time.Duration
	HeartbeatEventInterval time.Duration
	ChatRatePerSecond      float64
	ChatBurst              int
	SendBuffer             int
	// Limits bounds connections per user, per instance and per address (limits.go); nil: none.
	Limits *ConnLimits
	// WriteWait bounds one frame write; a client that reads nothing is cut after it. Default 5s.
	WriteWait time.Duration
	Now       func() time.Time
	// AfterFunc runs f once after d (time.AfterFunc); tests replace it, with Now, by a clock of
	// their own to run the coalescing window's end when they choose.
	AfterFunc func(d time.Duration, f func())
}

// Hub is the real-time presence feature: the WebSocket rooms of this instance, their sessions in
// the presence store, the coalesced push of counts to members, the chat relay, the in-process
// cache of counts that REST reads, and the recovery after a Redis outage.
type Hub struct {
	cfg     HubConfig
	log     *slog.Logger
	m       *melody.Melody
	metrics *hubMetrics
	now     func() time.Time

	mu       sync.Mutex
	rooms    map[uuid.UUID]*localRoom
	pending  []*wsConn // sessions whose leave failed while Redis was down
	closing  bool
	conns    sync.WaitGroup
	resyncMu sync.Mutex

	cacheMu sync.RWMutex
	cache   map[uuid.UUID]cachedStats

	up         atomic.Bool // Redis reachable as far as we know
	subscribed atomic.Bool // the subscription to the rooms' channels was established once
	bgCancel   context.CancelFunc
	bgDone     sync.WaitGroup
}

type cachedStats struct {
	st presencestats.OnlineStats
	at time.Time // local time of the last confirmation
}

// localRoom is a room with members on this instance, and its push coalescing state.
type localRoom struct {
	members  map[*wsConn]struct{}
	last     presencestats.OnlineStats // newest counts seen
	hasLast  bool
	lastPush time.Time // start of the current coalescing window (the last push)
	pending  bool      // the window has changes: a trailing push of last is scheduled at its end
}

// wsConn is one WebSocket session.
type wsConn struct {
	hub         *Hub
	s           *melody.Session
	id          uuid.UUID
	room        uuid.UUID
	user        uuid.UUID
	ip          netip.Addr
	ua          string
	connectedAt time.Time
	limiter     *rate.Limiter

	sendMu  sync.Mutex
	queued  int  // frames in melody's buffer, not yet written
	dropped bool // slow consumer: no more frames

	// stateMu serialises this session's presence-store changes (join, leave, re-join), so that a
	// re-registration never revives a session that has left.
	stateMu     sync.Mutex
	inStore     bool // the store has (or had, before an outage) this session
	joinUnsure  bool // a join timed out: Redis may have applied it after all (a stall)
	recorded    bool // its connected event was recorded (by the store's join)
	left        bool
	reason      string // why it ended, when not "closed"
	lastHBEvent time.Time
	counted     bool // onConnect registered it (h.conns, members)

	// welcomed (guarded by h.mu) says its snapshot was sent: until then it gets no room pushes
	// or chat, so that its first frames are welcome and a snapshot that counts it.
	welcomed bool
}

type hubMetrics struct {
	connections prometheus.Gauge
	joins       prometheus.Counter
	leaves      *prometheus.CounterVec
	rejoins     prometheus.Counter
	pushes      prometheus.Counter
	frames      prometheus.Counter
	slow        prometheus.Counter
	cacheHits   prometheus.Counter
	cacheMisses prometheus.Counter
	chat        prometheus.Counter
}

func newHubMetrics(reg prometheus.Registerer) *hubMetrics {
	m := &hubMetrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "presence_ws_connections", Help: "Open WebSocket sessions on this instance."}),
		joins:       prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_joins_total", Help: "Sessions joined (connected events)."}),
		leaves: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "presence_leaves_total", Help: "Sessions left, by reason."},
			[]string{"reason"}),
		rejoins:     prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_rejoins_total", Help: "Sessions registered again after a Redis outage or an expiry."}),
		pushes:      prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_stats_pushes_total", Help: "online_stats pushes to a room's local members (after coalescing)."}),
		frames:      prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_ws_frames_sent_total", Help: "Frames queued to WebSocket clients."}),
		slow:        prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_slow_consumers_total", Help: "Sessions dropped because their send buffer overflowed."}),
		cacheHits:   prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_stats_cache_hits_total", Help: "Room counts served from the in-process cache."}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_stats_cache_misses_total", Help: "Room counts read from Redis."}),
		chat:        prometheus.NewCounter(prometheus.CounterOpts{Name: "presence_chat_messages_total", Help: "Chat messages accepted from clients on this instance."}),
	}
	reg.MustRegister(m.connections, m.joins, m.leaves, m.rejoins, m.pushes, m.frames, m.slow, m.cacheHits, m.cacheMisses, m.chat)
	return m
}

const connKey = "presence.conn"

// NewHub returns the hub and starts its background work: the subscription to every room's
// updates and the heartbeat of this instance's sessions. Close stops it.
func NewHub(cfg HubConfig) *Hub {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AfterFunc == nil {
		cfg.AfterFunc = func(d time.Duration, f func()) { time.AfterFunc(d, f) }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.WriteWait <= 0 {
		cfg.WriteWait = 5 * time.Second
	}
	if cfg.SendBuffer <= 0 {
		cfg.SendBuffer = 256
	}
	h := &Hub{
		cfg: cfg, log: cfg.Logger, now: cfg.Now, metrics: newHubMetrics(cfg.Registry),
		rooms: map[uuid.UUID]*localRoom{}, cache: map[uuid.UUID]cachedStats{},
	}
	h.up.Store(true)
	m := melody.New()
	// melody closes the connection on a frame above its limit (1009); frames between
	// MAX_MESSAGE_BYTES and this hard limit get an error frame and the connection stays.
	m.Config.MaxMessageSize = int64(4 * cfg.MaxMessageBytes)
	// One slot more than WS_SEND_BUFFER, kept for the close frame of a slow consumer.
	m.Config.MessageBufferSize = cfg.SendBuffer + 1
	m.Config.PongWait = cfg.PresenceTTL
	m.Config.PingPeriod = h.heartbeatInterval()
	m.Config.WriteWait = cfg.WriteWait
	m.Upgrader.CheckOrigin = h.originAllowed
	m.Upgrader.Error = upgradeError
	// Memory per connection: a small read buffer of its own (frames larger than it are read in
	// pieces), and write buffers borrowed from a pool only while a frame is written.
	m.Upgrader.ReadBufferSize = 512
	m.Upgrader.WriteBufferSize = 1024
	m.Upgrader.WriteBufferPool = &sync.Pool{}
	m.HandleConnect(h.onConnect)
	m.HandleDisconnect(h.onDisconnect)
	m.HandleMessage(h.onMessage)
	m.HandleMessageBinary(func(s *melody.Session, _ []byte) {
		if c := connOf(s); c != nil {
			c.send(errorFrame(CodeInvalidJSON, "binary frames are not accepted: send JSON text frames"))
		}
	})
	m.HandleSentMessage(func(s *melody.Session, _ []byte) {
		if c := connOf(s); c != nil {
			c.sendMu.Lock()
			c.queued--
			c.sendMu.Unlock()
		}
	})
	m.HandleError(h.onError)
	h.m = m

	ctx, cancel := context.WithCancel(context.Background())
	h.bgCancel = cancel
	h.bgDone.Add(2)
	go func() {
		defer h.bgDone.Done()
		_ = cfg.Store.Listen(ctx, h.onStats, h.onChat, h.onStoreState)
	}()
	go func() {
		defer h.bgDone.Done()
		h.heartbeatLoop(ctx)
	}()
	return h
}

// heartbeatInterval is how often sessions are refreshed in Redis and how often clients are
// asked to show they live: a third of PRESENCE_TTL, so two missed beats do not expire anyone.
func (h *Hub) heartbeatInterval() time.Duration {
	return max(h.cfg.PresenceTTL/3, 10*time.Millisecond)
}

func connOf(s *melody.Session) *wsConn {
	v, ok := s.Get(connKey)
	if !ok {
		return nil
	}
	c, _ := v.(*wsConn)
	return c
}

// session is c as the store registers it.
func (c *wsConn) session() presencestats.Session {
	s := presencestats.Session{ID: c.id, RoomID: c.room, UserID: c.user, UserIP: c.ip, UserAgent: c.ua}
	if c.recorded {
		s.ConnectedAt = c.connectedAt
	}
	return s
}

// storeCtx bounds one presence-store call made on behalf of a session. A call that fails marks
// the store down, and the recovery re-registers every session: the bound is generous so that a
// burst of joins waiting for pool connections is not taken for an outage.
func storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

// markDown records that Redis failed; the heartbeat loop probes it and re-registers sessions
// when it answers again.
func (h *Hub) markDown(err error) {
	if h.up.Swap(false) {
		h.log.Warn("presence store down: serving last known counts as degraded", "err", err)
	}
}

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
		SessionID: c.id, RoomID: c.room, UserID: c.user,
		HeartbeatIntervalMS: h.heartbeatInterval().Milliseconds(), MaxMessageBytes: h.cfg.MaxMessageBytes,
	}))
	c.stateMu.Lock()
	if c.left {
		c.stateMu.Unlock()
		return
	}
	joined, ok := h.joinLocked(c, false)
	c.stateMu.Unlock()
	snapshot := joined
	if !ok {
		snapshot = h.cachedOrZero(c.room)
		snapshot.Degraded = true
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
	if ok {
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

// onStoreState hears that the subscription was lost or (re)established. Updates are lost while
// it is down, so coming back means: cached counts are stale and Redis may have lost our sessions.
func (h *Hub) onStoreState(up bool) {
	if !up {
		h.markDown(errors.New("subscription lost"))
		return
	}
	if !h.subscribed.Swap(true) && h.up.Load() {
		return // the first subscription, with nothing lost before it: no recovery to run
	}
	go h.resync()
}

// liveLocked returns every member of every room of this instance; h.mu must be held.
func (h *Hub) liveLocked() []*wsConn {
	var live []*wsConn
	for _, r := range h.rooms {
		for c := range r.members {
			live = append(live, c)
		}
	}
	return live
}

// resync runs when Redis answers again: the leaves that failed meanwhile are applied, every
// live session of this instance is registered again (counts become exact without any client
// reconnecting), the cache is refetched, and the degraded flag goes.
func (h *Hub) resync() {
	h.resyncMu.Lock()
	defer h.resyncMu.Unlock()
	h.mu.Lock()
	pending := h.pending
	h.pending = nil
	live := h.liveLocked()
	h.mu.Unlock()
	ok := true
	for i, c := range pending {
		c.stateMu.Lock()
		done := h.leaveLocked(c, c.reason)
		c.stateMu.Unlock()
		if !done { // it went back to pending: Redis is still down
			h.mu.Lock()
			h.pending = append(h.pending, pending[i+1:]...)
			h.mu.Unlock()
			ok = false
			break
		}
	}
	if ok {
		h.up.Store(true) // joinLocked marks it down again on failure
		for _, c := range live {
			c.stateMu.Lock()
			if !c.left {
				if _, okJoin := h.joinLocked(c, false); !okJoin {
					ok = false
				}
			}
			c.stateMu.Unlock()
			if !ok {
				break
			}
		}
	}
	if !ok {
		h.up.Store(false)
		return
	}
	// Updates were missed while the subscription was down: every cached count is refetched before
	// it is served as fresh again, and stays the "last known" answer until then.
	h.cacheMu.Lock()
	for id, e := range h.cache {
		e.at = time.Time{}
		h.cache[id] = e
	}
	h.cacheMu.Unlock()
	h.log.Info("presence store back: sessions registered again", "sessions", len(live), "leaves_applied", len(pending))
}

// heartbeatLoop refreshes this instance's sessions in Redis every heartbeat interval (their
// deadlines move to now + PRESENCE_TTL), re-joins those a sweeper expired, records a heartbeat
// event per session at most every HEARTBEAT_EVENT_INTERVAL, and while Redis is down probes it.
func (h *Hub) heartbeatLoop(ctx context.Context) {
	every := min(h.heartbeatInterval(), h.cfg.HeartbeatEventInterval)
	t := time.NewTicker(min(every, 500*time.Millisecond))
	defer t.Stop()
	var lastBeat time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !h.up.Load() {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			err := h.cfg.Store.Ping(pctx)
			cancel()
			h.log.Debug("presence store probe", "err", err)
			if err == nil {
				h.resync()
			}
			continue
		}
		if now := h.now(); now.Sub(lastBeat) >= every {
			lastBeat = now
			h.beat(ctx)
		}
	}
}

func (h *Hub) beat(ctx context.Context) {
	h.mu.Lock()
	byRoom := make(map[uuid.UUID][]*wsConn, len(h.rooms))
	for id, r := range h.rooms {
		for c := range r.members {
			byRoom[id] = append(byRoom[id], c)
		}
	}
	h.mu.Unlock()
	for room, conns := range byRoom {
		ids := make([]uuid.UUID, 0, len(conns))
		var beats []uuid.UUID // those whose heartbeat event is due: the store records it
		now := h.now()
		for _, c := range conns {
			ids = append(ids, c.id)
			c.stateMu.Lock()
			if !c.left && c.inStore && now.Sub(c.lastHBEvent) >= h.cfg.HeartbeatEventInterval {
				c.lastHBEvent = now
				beats = append(beats, c.id)
			}
			c.stateMu.Unlock()
		}
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, missing, err := h.cfg.Store.Touch(tctx, room, ids, beats)
		cancel()
		if err != nil {
			h.markDown(err)
			return
		}
		h.applyStats(st)
		gone := make(map[uuid.UUID]bool, len(missing))
		for _, id := range missing {
			gone[id] = true
		}
		for _, c := range conns {
			c.stateMu.Lock()
			if !c.left && c.inStore && gone[c.id] {
				h.joinLocked(c, true)
			}
			c.stateMu.Unlock()
		}
	}
}

func (h *Hub) cachePut(st presencestats.OnlineStats) {
	now := h.now()
	h.cacheMu.Lock()
	defer h.cacheMu.Unlock()
	if old, ok := h.cache[st.RoomID]; ok && st.Timestamp.Before(old.st.Timestamp) {
		return
	}
	st.Degraded = false
	h.cache[st.RoomID] = cachedStats{st: st, at: now}
}

func (h *Hub) cachedOrZero(room uuid.UUID) presencestats.OnlineStats {
	h.cacheMu.RLock()
	e, ok := h.cache[room]
	h.cacheMu.RUnlock()
	if !ok {
		return presencestats.OnlineStats{RoomID: room, Timestamp: h.now().UTC()}
	}
	return e.st
}

// CachedStats returns the counts of room from the cache when they are fresh (confirmed by the
// room's channel or Redis within STATS_CACHE_TTL, with Redis up).
func (h *Hub) CachedStats(room uuid.UUID) (presencestats.OnlineStats, bool) {
	h.cacheMu.RLock()
	e, ok := h.cache[room]
	h.cacheMu.RUnlock()
	if !ok || !h.up.Load() || h.now().Sub(e.at) > h.cfg.StatsCacheTTL {
		return presencestats.OnlineStats{}, false
	}
	return e.st, true
}

// Stats returns the counts of rooms: from the cache when fresh, else from Redis in one round
// trip. While Redis is down it answers the last known counts (zero for an unknown room) with
// Degraded set; it does not fail.
func (h *Hub) Stats(ctx context.Context, rooms []uuid.UUID) []presencestats.OnlineStats {
	out := make([]presencestats.OnlineStats, len(rooms))
	var miss []int
	for i, room := range rooms {
		if st, ok := h.CachedStats(room); ok {
			out[i] = st
			h.metrics.cacheHits.Inc()
			continue
		}
		miss = append(miss, i)
	}
	if len(miss) == 0 {
		return out
	}
	h.metrics.cacheMisses.Add(float64(len(miss)))
	if h.up.Load() {
		ids := make([]uuid.UUID, len(miss))
		for j, i := range miss {
			ids[j] = rooms[i]
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		got, err := h.cfg.Store.Counts(cctx, ids...)
		cancel()
		if err == nil {
			for j, i := range miss {
				h.cachePut(got[j])
				out[i] = got[j]
			}
			return out
		}
		if ctx.Err() == nil {
			h.markDown(err)
		}
	}
	for _, i := range miss {
		out[i] = h.cachedOrZero(rooms[i])
		out[i].Degraded = true
	}
	return out
}

// Close ends every session of this instance (reason server_shutdown: each leaves Redis and is
// recorded), closes the WebSockets with 1001, and stops the hub's background work. Run it after
// the HTTP server has stopped and before the event recorder and Redis are closed.
func (h *Hub) Close(ctx context.Context) {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return
	}
	h.closing = true
	live := h.liveLocked()
	h.mu.Unlock()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, c := range live {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c.stateMu.Lock()
			defer c.stateMu.Unlock()
			if !c.left {
				c.left = true
				h.leaveLocked(c, presencestats.ReasonServerShutdown)
			}
		}()
	}
	wg.Wait()
	_ = h.m.CloseWithMsg(melody.FormatCloseMessage(melody.CloseGoingAway, "server shutdown"))
	done := make(chan struct{})
	go func() { h.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		h.log.Warn("hub close: sessions still closing at the deadline")
	}
	h.bgCancel()
	h.bgDone.Wait()
	h.log.Info("presence hub closed", "sessions", len(live))
}
