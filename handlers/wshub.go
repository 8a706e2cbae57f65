package handlers

import (
	"context"
	"errors"
	"log/slog"
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
	// Detach and Resume carry a session over a rolling restart (wshub_resume.go).
	Detach(ctx context.Context, room, session uuid.UUID, window time.Duration, reason string) (bool, error)
	Resume(ctx context.Context, s presencestats.Session) (connectedAt time.Time, stats presencestats.OnlineStats, resumed bool, err error)
}

// HubConfig is what the real-time presence feature needs; cmd fills it from Config.
type HubConfig struct {
	Store    PresenceStore
	Auth     *TokenAuthority
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// History answers rooms this instance has no count of while Redis is unreachable
	// (wshub_fallback.go); nil: zero, degraded.
	History HistoryCounts

	AllowedOrigins    []string // empty: same host only
	MaxMessageBytes   int
	PresenceTTL       time.Duration
	StatsPushInterval time.Duration // a room's push window: the shortest gap between two online_stats (pushWindow)
	// StatsPushRoomRate (STATS_PUSH_ROOM_RATE) widens the window of a large room: its pushes cost
	// at most this many frames a second, across instances, up to a window of 1 s; 0: no widening.
	StatsPushRoomRate      int
	StatsCacheTTL          time.Duration
	HeartbeatEventInterval time.Duration
	ChatRatePerSecond      float64
	ChatBurst              int
	SendBuffer             int
	// ResumeWindow (RESUME_WINDOW) is how long a session this instance's shutdown detaches waits
	// for its client to resume it on another instance (wshub_resume.go); 0: no resume, a
	// shutdown ends every session.
	ResumeWindow time.Duration
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

	heldFrames sync.Pool // buffers of frames held back by connections (batchedConn)

	cacheMu  sync.RWMutex
	cache    map[uuid.UUID]cachedStats
	fallback *historyFallback // the history's answers while Redis is unreachable

	up         atomic.Bool // Redis reachable as far as we know
	subscribed atomic.Bool // the subscription to the rooms' channels was established once
	bgCancel   context.CancelFunc
	bgDone     sync.WaitGroup
	hbCancel   context.CancelFunc // the heartbeat loop, stopped first by a shutdown that detaches
	hbDone     sync.WaitGroup
	resumes    *resumeMetrics
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
	lastPush time.Time     // start of the current coalescing window (the last push)
	window   time.Duration // its length: pushWindow of the counts it pushed
	pending  bool          // the window has changes: a trailing push of last is scheduled at its end
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
	// resumed says the session was taken over from a shut-down instance before the upgrade
	// (wshub_resume.go), with resumedStats its room's counts then; set before onConnect.
	resumed      bool
	resumedStats presencestats.OnlineStats

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
		cfg.SendBuffer = 128
	}
	h := &Hub{
		cfg: cfg, log: cfg.Logger, now: cfg.Now, metrics: newHubMetrics(cfg.Registry),
		rooms: map[uuid.UUID]*localRoom{}, cache: map[uuid.UUID]cachedStats{},
		resumes:  newResumeMetrics(cfg.Registry),
		fallback: newHistoryFallback(cfg.Registry),
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
	// Memory per connection: a small read buffer of its own (256 bytes: a client's pings and
	// short chat frames fit, a longer frame is read past it), and write buffers borrowed from a
	// pool only while a frame is written.
	m.Upgrader.ReadBufferSize = 256
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
	h.bgDone.Add(1)
	go func() {
		defer h.bgDone.Done()
		_ = cfg.Store.Listen(ctx, h.onStats, h.onChat, h.onStoreState)
	}()
	hbCtx, hbCancel := context.WithCancel(ctx)
	h.hbCancel = hbCancel
	h.hbDone.Add(1)
	go func() {
		defer h.hbDone.Done()
		h.heartbeatLoop(hbCtx)
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

// Subscribed reports whether the hub hears the other instances: its subscription to the rooms'
// channels was established and Redis has not failed since. Before that, chat relayed by other
// instances, and their count changes, do not reach this instance's members.
func (h *Hub) Subscribed() bool { return h.subscribed.Load() && h.up.Load() }

// errNotSubscribed is what /readyz says of the rooms' channels before the hub hears them.
var errNotSubscribed = errors.New("not subscribed to the rooms' channels yet: other instances' changes and chat would not reach this instance's members")

// CheckSubscribed is the readiness check "channels": an instance takes WebSocket clients only
// once it hears the other instances (pub/sub keeps nothing for a late subscriber).
func (h *Hub) CheckSubscribed(context.Context) error {
	if !h.Subscribed() {
		return errNotSubscribed
	}
	return nil
}

// Close ends every session of this instance and closes the WebSockets, then stops the hub's
// background work. With RESUME_WINDOW it detaches the sessions, for their clients to resume on
// another instance, and closes with 1012 (wshub_resume.go); without, each leaves Redis (reason
// server_shutdown, recorded) and the close is 1001. Run it after the HTTP server has stopped and
// before the event recorder and Redis are closed.
func (h *Hub) Close(ctx context.Context) {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return
	}
	h.closing = true
	live := h.liveLocked()
	h.mu.Unlock()
	end, closeMsg := h.shutdownEnding(ctx)
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
				end(c)
			}
		}()
	}
	wg.Wait()
	_ = h.m.CloseWithMsg(closeMsg)
	done := make(chan struct{})
	go func() { h.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		h.log.Warn("hub close: sessions still closing at the deadline")
	}
	h.bgCancel()
	h.bgDone.Wait()
	h.hbDone.Wait()
	h.log.Info("presence hub closed", "sessions", len(live))
}
