package handlers_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"presencestats"
	"presencestats/handlers"
	"presencestats/storage/storagetest"
)

// loopback is the test servers' peer: trusted as a proxy, so that X-Forwarded-For gives each
// test client the address it claims.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

// dialFrom opens a WebSocket for user from the client address ip; it returns the handshake's
// answer when the upgrade is refused (its body read into body).
func dialFrom(t testing.TB, s *presenceServer, room, user uuid.UUID, ip string) (*wsClient, *http.Response, []byte) {
	t.Helper()
	h := http.Header{}
	if ip != "" {
		h.Set("X-Forwarded-For", ip)
	}
	c, resp, err := websocket.DefaultDialer.Dial(wsURL(s.URL, room.String())+"?access_token="+s.token(t, user), h)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, resp, body
	}
	return startWSClient(t, c), resp, nil
}

// refusedWith checks a refused handshake's status and JSON error code.
func refusedWith(t testing.TB, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	if resp == nil || resp.StatusCode != status {
		got := 0
		if resp != nil {
			got = resp.StatusCode
		}
		t.Fatalf("status %d (%s), want %d", got, body, status)
	}
	var eb handlers.ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error.Code != code || eb.Error.Message == "" {
		t.Fatalf("body %s, want {\"error\":{\"code\":%q,...}}", body, code)
	}
}

// metricLabel returns the value of the counter or gauge name with label=value.
func metricLabel(t testing.TB, reg prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if m.Counter != nil {
						return m.Counter.GetValue()
					}
					return m.Gauge.GetValue()
				}
			}
		}
	}
	t.Fatalf("no metric %s{%s=%q}", name, label, value)
	return 0
}

// chatUntilSlowConsumer has talker send large chat messages until s drops a slow consumer.
func chatUntilSlowConsumer(t testing.TB, s *presenceServer, talker *wsClient) {
	t.Helper()
	text := strings.Repeat("z", 900)
	deadline := time.Now().Add(30 * time.Second)
	for s.metric(t, "presence_slow_consumers_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("slow consumer never dropped")
		}
		for range 20 {
			talker.send(t, handlers.ClientFrame{Type: handlers.TypeMessage, Text: text})
		}
	}
}

func pingPong(t testing.TB, c *wsClient) {
	t.Helper()
	c.send(t, handlers.ClientFrame{Type: handlers.TypePing})
	c.waitFrame(t, push, "pong", func(f frame) bool { return f.Type == handlers.TypePong })
}

// MAX_CONNECTIONS_PER_USER: the connection over the limit is refused before the upgrade with 429
// and the JSON error body; the user's open connections and other users go on; closing one lets
// the user in again.
func TestConnLimitPerUser(t *testing.T) {
	s := newPresenceServer(t, presenceOpts{limits: &handlers.ConnLimitsConfig{MaxPerUser: 3}})
	room, user := uuid.New(), uuid.New()
	var tabs []*wsClient
	for i := range 3 {
		c, resp, body := dialFrom(t, s, room, user, "")
		if c == nil {
			t.Fatalf("tab %d refused: %d %s", i+1, resp.StatusCode, body)
		}
		tabs = append(tabs, c)
	}
	tabs[2].waitFrame(t, push, "snapshot", func(f frame) bool { return f.Type == handlers.TypeOnlineStats })
	c, resp, body := dialFrom(t, s, room, user, "")
	if c != nil {
		t.Fatal("a fourth connection of the user was accepted")
	}
	refusedWith(t, resp, body, http.StatusTooManyRequests, presencestats.ETOOMANY)
	for _, tab := range tabs {
		pingPong(t, tab)
	}
	other, resp, body := dialFrom(t, s, room, uuid.New(), "")
	if other == nil {
		t.Fatalf("another user refused: %d %s", resp.StatusCode, body)
	}
	other.waitOnline(t, push, 2)
	if got := metricLabel(t, s.reg, "presence_ws_refused_total", "cause", handlers.RefusedUserLimit); got != 1 {
		t.Errorf("presence_ws_refused_total{cause=user_limit} %v, want 1", got)
	}
	if got := metricLabel(t, s.reg, "presence_limit", "setting", "MAX_CONNECTIONS_PER_USER"); got != 3 {
		t.Errorf("presence_limit{setting=MAX_CONNECTIONS_PER_USER} %v, want 3", got)
	}
	tabs[0].conn.Close()
	eventually(t, push, "the closed tab released", func() bool { return s.limits.OfUser(user) == 2 })
	if c, resp, body := dialFrom(t, s, room, user, ""); c == nil {
		t.Fatalf("refused after a tab closed: %d %s", resp.StatusCode, body)
	}
}

// failingJoins is a store whose joins fail, as with Redis gone: the session stays (degraded).
type failingJoins struct{ handlers.PresenceStore }

func (failingJoins) Join(context.Context, presencestats.Session, bool) (presencestats.PresenceEvent, presencestats.OnlineStats, error) {
	return presencestats.PresenceEvent{}, presencestats.OnlineStats{}, presencestats.Errorf(presencestats.EUNAVAILABLE, "join refused by the test")
}

// A connection's count is released however it ends: with MAX_CONNECTIONS_PER_USER 1 the user can
// connect again afterwards, and nothing stays counted.
func TestConnLimitReleasedOnEveryClosePath(t *testing.T) {
	one := &handlers.ConnLimitsConfig{MaxPerUser: 1, MaxTotal: 10}
	released := func(t *testing.T, s *presenceServer, room, user uuid.UUID) {
		t.Helper()
		eventually(t, 10*time.Second, "the connection released", func() bool { return s.limits.Open() == 0 })
		c, resp, body := dialFrom(t, s, room, user, "")
		if c == nil {
			t.Fatalf("the user is refused after the close: %d %s", resp.StatusCode, body)
		}
		c.waitFrame(t, push, "snapshot", func(f frame) bool { return f.Type == handlers.TypeOnlineStats })
	}
	t.Run("closed by the client", func(t *testing.T) {
		s := newPresenceServer(t, presenceOpts{limits: one})
		room, user := uuid.New(), uuid.New()
		c := dialWS(t, s, room, user)
		c.waitOnline(t, push, 1)
		if _, resp, body := dialFrom(t, s, room, user, ""); resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("second connection: %d %s, want 429", resp.StatusCode, body)
		}
		c.conn.Close()
		released(t, s, room, user)
	})
	t.Run("timeout", func(t *testing.T) {
		s := newPresenceServer(t, presenceOpts{limits: one, ttl: 600 * time.Millisecond})
		room, user := uuid.New(), uuid.New()
		silent, _, err := websocket.DefaultDialer.Dial(wsURL(s.URL, room.String())+"?access_token="+s.token(t, user), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close() // never read: pings stay unanswered
		eventually(t, 10*time.Second, "timeout event", func() bool {
			return s.rec.count(presencestats.EventDisconnected, presencestats.ReasonTimeout) == 1
		})
		released(t, s, room, user)
	})
	t.Run("slow consumer", func(t *testing.T) {
		prefix := storagetest.KeyPrefix(t)
		s := newPresenceServer(t, presenceOpts{prefix: prefix, sendBuffer: 8, limits: one})
		other := newPresenceServer(t, presenceOpts{prefix: prefix, chatRate: 100000})
		room, user := uuid.New(), uuid.New()
		slow, _, err := websocket.DefaultDialer.Dial(wsURL(s.URL, room.String())+"?access_token="+s.token(t, user), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer slow.Close()
		talker := dialWS(t, other, room, uuid.New())
		talker.waitOnline(t, push, 2)
		chatUntilSlowConsumer(t, s, talker)
		// The user's slot is back (MAX_CONNECTIONS_PER_USER is per user, whatever the room); the
		// redial goes to another room: in this one the talker's burst may still be in flight,
		// and it would rightly cut a fresh connection with this server's 8-frame buffer too.
		released(t, s, uuid.New(), user)
	})
	t.Run("failed join", func(t *testing.T) {
		s := newPresenceServer(t, presenceOpts{limits: one, wrapStore: func(st handlers.PresenceStore) handlers.PresenceStore {
			return failingJoins{st}
		}})
		room, user := uuid.New(), uuid.New()
		c := dialWS(t, s, room, user)
		st := c.waitFrame(t, push, "snapshot", func(f frame) bool { return f.Type == handlers.TypeOnlineStats }).stats(t)
		if !st.Degraded {
			t.Fatalf("snapshot %+v, want degraded (the join failed)", st)
		}
		c.conn.Close()
		eventually(t, 10*time.Second, "the connection released", func() bool { return s.limits.Open() == 0 })
	})
	t.Run("failed handshake", func(t *testing.T) {
		s := newPresenceServer(t, presenceOpts{limits: one})
		room, user := uuid.New(), uuid.New()
		// A valid token and room, but not a WebSocket request: the upgrader answers 400.
		res, err := http.Get(s.URL + "/ws/rooms/" + room.String() + "?access_token=" + s.token(t, user))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", res.StatusCode)
		}
		released(t, s, room, user)
	})
	t.Run("server shutdown", func(t *testing.T) {
		s := newPresenceServer(t, presenceOpts{limits: one})
		room := uuid.New()
		for range 3 {
			dialWS(t, s, room, uuid.New())
		}
		eventually(t, push, "3 counted", func() bool { return s.limits.Open() == 3 })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.hub.Close(ctx)
		eventually(t, 10*time.Second, "every connection released", func() bool { return s.limits.Open() == 0 })
	})
}

// MAX_CONNECTIONS: above it 503 with Retry-After before the upgrade, /readyz says "full" (503,
// each dependency still named); a connection closing makes room again.
func TestConnLimitInstance(t *testing.T) {
	s := newPresenceServer(t, presenceOpts{limits: &handlers.ConnLimitsConfig{MaxPerUser: 20, MaxTotal: 3}})
	readyz := func() (int, map[string]any) {
		t.Helper()
		var body map[string]any
		return s.getJSON(t, "/readyz", "", &body), body
	}
	if status, body := readyz(); status != http.StatusOK || body["status"] != "ready" {
		t.Fatalf("readyz before: %d %v", status, body)
	}
	room := uuid.New()
	var open []*wsClient
	for range 3 {
		c, resp, body := dialFrom(t, s, room, uuid.New(), "")
		if c == nil {
			t.Fatalf("refused below the limit: %d %s", resp.StatusCode, body)
		}
		open = append(open, c)
	}
	open[2].waitOnline(t, push, 3)
	c, resp, body := dialFrom(t, s, room, uuid.New(), "")
	if c != nil {
		t.Fatal("a fourth connection was accepted")
	}
	refusedWith(t, resp, body, http.StatusServiceUnavailable, presencestats.EUNAVAILABLE)
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q, want whole seconds", resp.Header.Get("Retry-After"))
	}
	status, rb := readyz()
	if status != http.StatusServiceUnavailable || rb["status"] != "full" {
		t.Fatalf("readyz when full: %d %v, want 503 full", status, rb)
	}
	if deps, _ := rb["dependencies"].(map[string]any); deps["redis"] == nil {
		t.Errorf("readyz when full does not name the dependencies: %v", rb)
	}
	for _, c := range open {
		pingPong(t, c)
	}
	if got := metricLabel(t, s.reg, "presence_ws_refused_total", "cause", handlers.RefusedInstanceLimit); got != 1 {
		t.Errorf("presence_ws_refused_total{cause=instance_limit} %v, want 1", got)
	}
	open[0].conn.Close()
	eventually(t, push, "a connection released", func() bool { return s.limits.Open() == 2 })
	if status, body := readyz(); status != http.StatusOK || body["status"] != "ready" {
		t.Fatalf("readyz after a close: %d %v", status, body)
	}
	if c, resp, body := dialFrom(t, s, room, uuid.New(), ""); c == nil {
		t.Fatalf("refused after a close: %d %s", resp.StatusCode, body)
	}
}

// CONNECT_RATE / CONNECT_BURST: a flood from one address gets 429 with Retry-After past its
// burst, whatever the attempts carry, and another address connects all the while.
func TestConnectRatePerAddress(t *testing.T) {
	s := newPresenceServer(t, presenceOpts{trusted: loopback,
		limits: &handlers.ConnLimitsConfig{Rate: 0.01, Burst: 5, MaxAddresses: 1000}})
	room := uuid.New()
	attempt := func(ip, token string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, s.URL+"/ws/rooms/"+room.String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Forwarded-For", ip)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	flooder := "198.51.100.7"
	for i := range 5 { // the burst: attempts without a token still count, and get their 401
		if res := attempt(flooder, ""); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want 401", i+1, res.StatusCode)
		}
	}
	for range 200 {
		res := attempt(flooder, s.token(t, uuid.New()))
		if res.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("past the burst: %d, want 429", res.StatusCode)
		}
		if res.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}
	// A WebSocket from the flooding address is refused too, with the JSON body.
	c, resp, body := dialFrom(t, s, room, uuid.New(), flooder)
	if c != nil {
		t.Fatal("the flooding address connected")
	}
	refusedWith(t, resp, body, http.StatusTooManyRequests, presencestats.ETOOMANY)
	// Another address is not held up.
	for i, ip := range []string{"203.0.113.10", "203.0.113.11", "2001:db8:1::1"} {
		c, resp, body := dialFrom(t, s, room, uuid.New(), ip)
		if c == nil {
			t.Fatalf("%s refused: %d %s", ip, resp.StatusCode, body)
		}
		c.waitOnline(t, push, int64(i+1))
	}
	if got := metricLabel(t, s.reg, "presence_ws_refused_total", "cause", handlers.RefusedConnectRate); got != 201 {
		t.Errorf("presence_ws_refused_total{cause=connect_rate} %v, want 201", got)
	}
}

// The address table stays within CONNECT_ADDRESSES under a flood of distinct addresses; buckets
// idle long enough to have refilled are the first to go; an IPv6 /64 is one bucket.
func TestConnectRateTableBounded(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	l := handlers.NewConnLimits(handlers.ConnLimitsConfig{
		Rate: 10, Burst: 20, MaxAddresses: 100, Now: func() time.Time { return now },
	}, reg)
	addresses := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "presence_connect_rate_addresses" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no presence_connect_rate_addresses")
		return 0
	}
	for i := range 100000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if err := l.AllowConnect(ip); err != nil {
			t.Fatalf("first attempt of %s refused: %v", ip, err)
		}
		if i%1000 == 0 {
			now = now.Add(time.Millisecond)
		}
	}
	if got := addresses(); got > 100 || got < 1 {
		t.Fatalf("%v addresses kept after a flood of 100000, want at most 100", got)
	}
	// An address that spent its burst is still refused while the others come and go...
	hot := netip.MustParseAddr("192.0.2.1")
	for range 20 {
		if err := l.AllowConnect(hot); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.AllowConnect(hot); presencestats.ErrorCode(err) != presencestats.ETOOMANY {
		t.Fatalf("past the burst: %v, want ETOOMANY", err)
	}
	// ...and once every bucket has refilled (Burst/Rate = 2 s), a new address sweeps them all.
	now = now.Add(3 * time.Second)
	if err := l.AllowConnect(netip.MustParseAddr("192.0.2.2")); err != nil {
		t.Fatal(err)
	}
	if got := addresses(); got > 100 {
		t.Fatalf("%v addresses, want at most 100", got)
	}
	for i := range 200 { // idle ones were swept: the table fills with fresh addresses again
		_ = l.AllowConnect(netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}))
	}
	if got := addresses(); got > 100 {
		t.Fatalf("%v addresses, want at most 100", got)
	}
	// IPv6: one /64 shares a bucket, another /64 has its own.
	v6 := handlers.NewConnLimits(handlers.ConnLimitsConfig{Rate: 0.001, Burst: 2, MaxAddresses: 10}, prometheus.NewRegistry())
	for _, ip := range []string{"2001:db8:0:1::1", "2001:db8:0:1::2"} {
		if err := v6.AllowConnect(netip.MustParseAddr(ip)); err != nil {
			t.Fatal(err)
		}
	}
	if err := v6.AllowConnect(netip.MustParseAddr("2001:db8:0:1:ffff::3")); err == nil {
		t.Fatal("a third address of the same /64 was allowed past a burst of 2")
	}
	if err := v6.AllowConnect(netip.MustParseAddr("2001:db8:0:2::1")); err != nil {
		t.Fatalf("another /64: %v", err)
	}
}
