package handlers_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"presencestats"
	"presencestats/handlers"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

const presenceSecret = "presence-test-secret-0123456789"

// presenceRecorder is the in-memory history of the tests: an outbox consumer (storage.Outbox)
// writes to it the events the presence scripts append to the outbox.
type presenceRecorder struct {
	mu  sync.Mutex
	evs []presencestats.PresenceEvent
}

func (r *presenceRecorder) Record(ev presencestats.PresenceEvent) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	return nil
}

// WriteEvents is the outbox's writer.
func (r *presenceRecorder) WriteEvents(_ context.Context, evs []presencestats.PresenceEvent) error {
	for _, ev := range evs {
		if err := r.Record(ev); err != nil {
			return err
		}
	}
	return nil
}

func (r *presenceRecorder) events() []presencestats.PresenceEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]presencestats.PresenceEvent(nil), r.evs...)
}

// count returns how many events of typ (with reason, when not "") were recorded.
func (r *presenceRecorder) count(typ presencestats.EventType, reason string) int {
	n := 0
	for _, ev := range r.events() {
		if ev.Type == typ && (reason == "" || ev.Reason == reason) {
			n++
		}
	}
	return n
}

type presenceOpts struct {
	redisURL   string
	prefix     string
	ttl        time.Duration
	sendBuffer int
	chatRate   float64
	hbEvents   time.Duration
	origins    []string
	trusted    []netip.Prefix
	// wrapStore, when set, stands between the hub and the real store (to inject faults).
	wrapStore func(handlers.PresenceStore) handlers.PresenceStore
	// limits, when set, are the hub's connection limits (none otherwise).
	limits *handlers.ConnLimitsConfig
	// pushInterval is STATS_PUSH_INTERVAL (default 50 ms); clock, when set, is the hub's Now and
	// AfterFunc: its coalescing windows end only when the test advances it.
	pushInterval time.Duration
	// roomRate is STATS_PUSH_ROOM_RATE (default 0: a room's window is pushInterval, whatever its size).
	roomRate int
	clock    *fakeClock
	// rec, when set, is the history of another server on the same prefix, whose outbox consumer
	// fills it with the events of both (an outbox entry is deleted once written).
	rec *presenceRecorder
	// resumeWindow is RESUME_WINDOW (default 0: a shutdown ends the sessions).
	resumeWindow time.Duration
	// history, when set, answers rooms not cached while Redis is down (storage.HistoryCounts).
	history handlers.HistoryCounts
}

// presenceServer is one instance: a hub on Redis behind a test HTTP server.
type presenceServer struct {
	URL    string
	hub    *handlers.Hub
	rec    *presenceRecorder
	auth   *handlers.TokenAuthority
	reg    *prometheus.Registry
	store  *storage.Presence
	srv    *httptest.Server
	limits *handlers.ConnLimits
}

func newPresenceServer(t testing.TB, o presenceOpts) *presenceServer {
	t.Helper()
	if o.redisURL == "" {
		o.redisURL = storagetest.RedisURL(t)
	}
	if o.prefix == "" {
		o.prefix = storagetest.KeyPrefix(t)
	}
	if o.ttl == 0 {
		o.ttl = 30 * time.Second
	}
	if o.sendBuffer == 0 {
		o.sendBuffer = 256
	}
	if o.chatRate == 0 {
		o.chatRate = 50
	}
	if o.hbEvents == 0 {
		o.hbEvents = 5 * time.Minute
	}
	if o.pushInterval == 0 {
		o.pushInterval = 50 * time.Millisecond
	}
	var now func() time.Time
	var afterFunc func(time.Duration, func())
	if o.clock != nil {
		now, afterFunc = o.clock.Now, o.clock.AfterFunc
	}
	// Fail fast while Redis is down, as production settings would within the store's 2 s bound.
	rdb, err := storage.OpenRedis(context.Background(), storagetest.WithRedisOptions(o.redisURL, "max_retries=-1&dial_timeout=200ms"))
	if err != nil {
		t.Fatal(err)
	}
	store := storage.NewPresence(rdb, storage.PresenceOptions{KeyPrefix: o.prefix, TTL: o.ttl})
	rec := o.rec
	var outbox *storage.Outbox
	if rec == nil {
		rec = &presenceRecorder{}
		outbox, err = storage.NewOutbox(rdb, rec, storage.OutboxConfig{
			KeyPrefix: o.prefix, Consumer: "test-" + uuid.NewString(), PollInterval: 10 * time.Millisecond,
			ClaimIdle: time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Logger: testLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = outbox.Run(context.Background()) }()
	}
	auth := handlers.NewTokenAuthority(presenceSecret)
	reg := prometheus.NewRegistry()
	var hubStore handlers.PresenceStore = store
	if o.wrapStore != nil {
		hubStore = o.wrapStore(store)
	}
	var limits *handlers.ConnLimits
	var capacity func() (int, int)
	if o.limits != nil {
		limits = handlers.NewConnLimits(*o.limits, reg)
		capacity = limits.Capacity
	}
	hub := handlers.NewHub(handlers.HubConfig{
		Store: hubStore, Auth: auth, Registry: reg, Logger: testLogger(),
		AllowedOrigins: o.origins, MaxMessageBytes: 1024, PresenceTTL: o.ttl,
		StatsPushInterval: o.pushInterval, StatsPushRoomRate: o.roomRate, StatsCacheTTL: 5 * time.Second,
		HeartbeatEventInterval: o.hbEvents, ChatRatePerSecond: o.chatRate, ChatBurst: int(o.chatRate),
		SendBuffer: o.sendBuffer, WriteWait: time.Second, Limits: limits, Now: now, AfterFunc: afterFunc,
		ResumeWindow: o.resumeWindow,
		History:      o.history,
	})
	router := handlers.NewRouter(handlers.RouterConfig{
		Logger: discardLogger(), Registry: reg, Features: []handlers.Feature{hub}, TrustedProxies: o.trusted,
		Checks: []handlers.ReadinessCheck{{Name: "redis", Check: store.Ping}}, Capacity: capacity,
	})
	// A message published before the hub's subscription is up is not heard by it (pub/sub keeps
	// nothing): tests that chat or count across instances start once it is. Best effort, for the
	// tests whose Redis is away from the start.
	for deadline := time.Now().Add(5 * time.Second); !hub.Subscribed() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // polling the hub's subscription
	}
	srv := httptest.NewServer(router)
	s := &presenceServer{URL: srv.URL, hub: hub, rec: rec, auth: auth, reg: reg, store: store, srv: srv, limits: limits}
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hub.Close(ctx)
		if outbox != nil {
			_ = outbox.Close(ctx)
		}
		rdb.Close()
	})
	return s
}

func (s *presenceServer) token(t testing.TB, user uuid.UUID) string {
	t.Helper()
	tok, err := s.auth.Mint(user, handlers.RoleUser, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (s *presenceServer) metric(t testing.TB, name string) float64 {
	t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				total += m.Counter.GetValue()
			case m.Gauge != nil:
				total += m.Gauge.GetValue()
			}
		}
	}
	return total
}

// getJSON does an authenticated GET and decodes the body into out; it returns the status.
func (s *presenceServer) getJSON(t testing.TB, path, token string, out any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// frame is a server frame as a client reads it.
type frame struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

func (f frame) stats(t testing.TB) presencestats.OnlineStats {
	var st presencestats.OnlineStats
	if err := json.Unmarshal(f.Data, &st); err != nil {
		t.Fatalf("online_stats data %s: %v", f.Data, err)
	}
	return st
}

// wsClient is a test WebSocket client that reads every frame into a channel.
type wsClient struct {
	conn   *websocket.Conn
	frames chan frame
	closed chan struct{}
	mu     sync.Mutex
	code   int // close code received, 0 until closed
}

func wsURL(base string, room string) string {
	return "ws" + strings.TrimPrefix(base, "http") + "/ws/rooms/" + room
}

// dialWS connects user to room; it fails the test unless the upgrade succeeds.
func dialWS(t testing.TB, s *presenceServer, room uuid.UUID, user uuid.UUID) *wsClient {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(wsURL(s.URL, room.String())+"?access_token="+s.token(t, user), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	return startWSClient(t, c)
}

func startWSClient(t testing.TB, c *websocket.Conn) *wsClient {
	w := &wsClient{conn: c, frames: make(chan frame, 4096), closed: make(chan struct{})}
	go func() {
		defer close(w.closed)
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				w.mu.Lock()
				if asCloseError(err, &ce) {
					w.code = ce.Code
				} else {
					w.code = -1
				}
				w.mu.Unlock()
				return
			}
			var f frame
			if json.Unmarshal(b, &f) == nil {
				select {
				case w.frames <- f:
				default: // the test is not reading this client's frames
				}
			}
		}
	}()
	t.Cleanup(func() { c.Close() })
	return w
}

func asCloseError(err error, ce **websocket.CloseError) bool {
	e, ok := err.(*websocket.CloseError)
	if ok {
		*ce = e
	}
	return ok
}

func (w *wsClient) send(t testing.TB, v any) {
	t.Helper()
	var b []byte
	switch x := v.(type) {
	case string:
		b = []byte(x)
	case []byte:
		b = x
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// waitFrame returns the first frame for which ok is true, failing after timeout.
func (w *wsClient) waitFrame(t testing.TB, timeout time.Duration, what string, ok func(frame) bool) frame {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case f := <-w.frames:
			if ok(f) {
				return f
			}
		case <-w.closed:
			t.Fatalf("connection closed (code %d) while waiting for %s", w.closeCode(), what)
		case <-deadline.C:
			t.Fatalf("no %s within %s", what, timeout)
		}
	}
}

// waitOnline waits for an online_stats frame with the given online count.
func (w *wsClient) waitOnline(t testing.TB, timeout time.Duration, online int64) presencestats.OnlineStats {
	t.Helper()
	var st presencestats.OnlineStats
	w.waitFrame(t, timeout, "online_stats with online_count "+itoa(online), func(f frame) bool {
		if f.Type != handlers.TypeOnlineStats {
			return false
		}
		st = f.stats(t)
		return st.OnlineCount == online
	})
	return st
}

func (w *wsClient) closeCode() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.code
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testLogger logs to stderr when PRESENCE_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("PRESENCE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return discardLogger()
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not a wait for an effect
	}
}

// noneToken returns an unsigned token ("alg": "none") for user.
func noneToken(user uuid.UUID) string {
	enc := base64.RawURLEncoding.EncodeToString
	header := enc([]byte(`{"alg":"none","typ":"JWT"}`))
	claims := enc([]byte(`{"sub":"` + user.String() + `","role":"user","exp":` + itoaTime(time.Now().Add(time.Hour)) + `}`))
	return header + "." + claims + "."
}

func itoaTime(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
