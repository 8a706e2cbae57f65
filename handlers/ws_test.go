package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"presencestats"
	"presencestats/handlers"
	"presencestats/storage/storagetest"
)

const push = 2 * time.Second // generous bound for one push on a busy 2-core test machine

func TestWSRejectsBadRequestsBeforeUpgrade(t *testing.T) {
	s := newPresenceServer(t, presenceOpts{origins: []string{"https://chat.example"}})
	room := uuid.New()
	user := uuid.New()
	expired := handlers.NewTokenAuthority(presenceSecret)
	expired.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	expiredTok, err := expired.Mint(user, handlers.RoleUser, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherTok, err := handlers.NewTokenAuthority("another-secret-0123456789abcdef").Mint(user, handlers.RoleUser, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	good := s.token(t, user)
	tests := []struct {
		name   string
		path   string
		header http.Header
		want   int
	}{
		{"no token", "/ws/rooms/" + room.String(), nil, http.StatusUnauthorized},
		{"expired token", "/ws/rooms/" + room.String() + "?access_token=" + expiredTok, nil, http.StatusUnauthorized},
		{"other secret", "/ws/rooms/" + room.String() + "?access_token=" + otherTok, nil, http.StatusUnauthorized},
		{"alg none", "/ws/rooms/" + room.String() + "?access_token=" + noneToken(user), nil, http.StatusUnauthorized},
		{"garbage token", "/ws/rooms/" + room.String(), http.Header{"Authorization": {"Bearer x.y.z"}}, http.StatusUnauthorized},
		{"room not a uuid", "/ws/rooms/lobby?access_token=" + good, nil, http.StatusBadRequest},
		{"room nil uuid", "/ws/rooms/" + uuid.Nil.String() + "?access_token=" + good, nil, http.StatusBadRequest},
		{"foreign origin", "/ws/rooms/" + room.String() + "?access_token=" + good, http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.URL, "http")+tt.path, tt.header)
			if err == nil {
				t.Fatal("upgrade succeeded")
			}
			if resp == nil {
				t.Fatalf("no HTTP answer: %v", err)
			}
			if got := resp.StatusCode; got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
	// Past the checks, a request the WebSocket upgrader refuses gets the same JSON error body.
	for _, tc := range []struct {
		name   string
		header http.Header
	}{
		{"plain GET", nil},
		{"unsupported version", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"},
			"Sec-Websocket-Version": {"8"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, s.URL+"/ws/rooms/"+room.String()+"?access_token="+good, nil)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var body handlers.ErrorBody
			if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
				t.Fatalf("status %d, body not the JSON error body: %v", res.StatusCode, err)
			}
			if res.StatusCode != http.StatusBadRequest || body.Error.Code != "invalid" || !strings.Contains(body.Error.Message, "websocket handshake") {
				t.Fatalf("status %d, body %+v: want 400 invalid, websocket handshake", res.StatusCode, body)
			}
		})
	}
	t.Run("allowed origin and header token", func(t *testing.T) {
		h := http.Header{"Origin": {"https://chat.example"}, "Authorization": {"Bearer " + good}}
		c, _, err := websocket.DefaultDialer.Dial(wsURL(s.URL, room.String()), h)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
}

func TestWSBadFramesKeepTheConnection(t *testing.T) {
	s := newPresenceServer(t, presenceOpts{})
	room := uuid.New()
	c := dialWS(t, s, room, uuid.New())
	c.waitOnline(t, push, 1)
	tests := []struct {
		name  string
		frame string
		code  string
	}{
		{"oversized", `{"type":"message","text":"` + strings.Repeat("x", 2000) + `"}`, handlers.CodeTooLarge},
		{"invalid json", `{"type":`, handlers.CodeInvalidJSON},
		{"not an object", `[1,2]`, handlers.CodeInvalidJSON},
		{"two objects", `{"type":"ping"}{"type":"ping"}`, handlers.CodeInvalidJSON},
		{"unknown type", `{"type":"shout","text":"hi"}`, handlers.CodeUnknownType},
		{"empty text", `{"type":"message","text":"  "}`, handlers.CodeInvalidField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.send(t, tt.frame)
			f := c.waitFrame(t, push, "error frame", func(f frame) bool { return f.Type == handlers.TypeError })
			if !strings.Contains(string(f.Data), `"code":"`+tt.code+`"`) {
				t.Errorf("error frame %s, want code %s", f.Data, tt.code)
			}
			c.send(t, `{"type":"ping"}`)
			c.waitFrame(t, push, "pong", func(f frame) bool { return f.Type == handlers.TypePong })
		})
	}
	// The room is still whole: a second member sees count 2.
	c2 := dialWS(t, s, room, uuid.New())
	c2.waitOnline(t, push, 2)
	// Above the hard limit (4 x MAX_MESSAGE_BYTES) the connection is closed with 1009.
	c.send(t, strings.Repeat("y", 5000))
	select {
	case <-c.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("not closed after a frame above the hard limit")
	}
	if got := c.closeCode(); got != websocket.CloseMessageTooBig {
		t.Errorf("close code %d, want %d", got, websocket.CloseMessageTooBig)
	}
	c2.waitOnline(t, push, 1)
}

// Seed: 5 users join -> 5, one leaves -> 4; events at the recorder.
func TestWSJoinLeaveCounts(t *testing.T) {
	s := newPresenceServer(t, presenceOpts{})
	room := uuid.New()
	var clients []*wsClient
	for i := range 5 {
		c := dialWS(t, s, room, uuid.New())
		c.waitOnline(t, push, int64(i+1)) // the snapshot includes the joiner
		clients = append(clients, c)
	}
	clients[0].waitOnline(t, push, 5)
	clients[4].conn.Close()
	for _, c := range clients[:4] {
		c.waitOnline(t, push, 4)
	}
	eventually(t, push, "5 connected and 1 disconnected event", func() bool {
		return s.rec.count(presencestats.EventConnected, "") == 5 && s.rec.count(presencestats.EventDisconnected, presencestats.ReasonClosed) == 1
	})
	for _, ev := range s.rec.events() {
		if ev.Type == presencestats.EventDisconnected && (ev.OnlineAfter != 4 || ev.OnlineDelta != -1 || ev.SessionSeconds <= 0) {
			t.Errorf("disconnected event %+v", ev)
		}
		if !ev.UserIP.IsLoopback() {
			t.Errorf("user_ip %v, want loopback", ev.UserIP)
		}
		if !strings.Contains(ev.UserAgent, "Go-http-client") {
			t.Errorf("user agent %q", ev.UserAgent)
		}
	}
}

// Seed: joining pushes online_stats with count 1 for the joiner's room, none for other rooms.
func TestWSJoinPushesOnlyToItsRoom(t *testing.T) {
	s := newPresenceServer(t, presenceOpts{})
	roomA, roomB := uuid.New(), uuid.New()
	a := dialWS(t, s, roomA, uuid.New())
	a.waitOnline(t, push, 1)
	b := dialWS(t, s, roomB, uuid.New())
	st := b.waitOnline(t, push, 1)
	if st.RoomID != roomB {
		t.Errorf("snapshot for room %s, want %s", st.RoomID, roomB)
	}
	// A third client joining room B is seen by B; A must not get any frame about room B.
	dialWS(t, s, roomB, uuid.New())
	b.waitOnline(t, push, 2)
	a.send(t, `{"type":"ping"}`) // a marker: everything pushed before the pong has been read
	for {
		f := a.waitFrame(t, push, "pong", func(frame) bool { return true })
		if f.Type == handlers.TypePong {
			break
		}
		if f.Type == handlers.TypeOnlineStats && f.stats(t).RoomID != roomA {
			t.Fatalf("client of room A got %s", f.Data)
		}
	}
}

func TestWSTabsOfOneUserCountOnce(t *testing.T) {
	s := newPresenceServer(t, presenceOpts{})
	room, user := uuid.New(), uuid.New()
	tab1 := dialWS(t, s, room, user)
	tab1.waitOnline(t, push, 1)
	tab2 := dialWS(t, s, room, user)
	f := tab2.waitFrame(t, push, "snapshot", func(f frame) bool { return f.Type == handlers.TypeOnlineStats })
	if st := f.stats(t); st.OnlineCount != 1 || st.SessionCount != 2 {
		t.Errorf("two tabs: %+v, want online 1, sessions 2", st)
	}
	other := dialWS(t, s, room, uuid.New())
	other.waitOnline(t, push, 2)
	tab1.conn.Close()
	other.waitFrame(t, push, "sessions 2 after a tab closed", func(f frame) bool {
		st := f.stats(t)
		return f.Type == handlers.TypeOnlineStats && st.OnlineCount == 2 && st.SessionCount == 2
	})
	tab2.conn.Close()
	other.waitOnline(t, push, 1)
}

// joinGate is the real store, except that the Join of user waits until the gate opens. (It
// gated the second Join call once: the welcomes of two clients dialed one after the other run on
// goroutines of their own, and on a loaded machine the later client's Join could come second and
// be held instead.)
type joinGate struct {
	handlers.PresenceStore
	user uuid.UUID
	open chan struct{}
}

func (g *joinGate) Join(ctx context.Context, s presencestats.Session, record bool) (presencestats.PresenceEvent, presencestats.OnlineStats, error) {
	if s.UserID == g.user {
		select {
		case <-g.open:
		case <-ctx.Done():
		}
	}
	return g.PresenceStore.Join(ctx, s, record)
}

// The room's pushes made while a client is still joining do not reach it: its first online_stats
// is the snapshot that counts it, never an older count of the room without it.
func TestWSFirstStatsCountTheJoiner(t *testing.T) {
	gate := &joinGate{user: uuid.New(), open: make(chan struct{})}
	s := newPresenceServer(t, presenceOpts{wrapStore: func(st handlers.PresenceStore) handlers.PresenceStore {
		gate.PresenceStore = st
		return gate
	}})
	room := uuid.New()
	first := dialWS(t, s, room, uuid.New())
	first.waitOnline(t, push, 1)
	joining := dialWS(t, s, room, gate.user) // its join waits at the gate
	third := dialWS(t, s, room, uuid.New())
	third.waitOnline(t, push, 2)
	first.waitOnline(t, push, 2) // pushed to every member of the room that was welcomed
	close(gate.open)
	f := joining.waitFrame(t, push, "snapshot", func(f frame) bool { return f.Type == handlers.TypeOnlineStats })
	if st := f.stats(t); st.OnlineCount != 3 || st.SessionCount != 3 {
		t.Fatalf("first online_stats of the joining client: %+v, want 3 online (itself counted)", st)
	}
}

// Seed: REST returns 3 after 3 users join; two reads in a row agree and the second comes from the
// cache (no Redis round trip).
func TestRoomStatsREST(t *testing.T) {
	s := newPresenceServer(t, presenceOpts{})
	room := uuid.New()
	var last *wsClient
	for range 3 {
		last = dialWS(t, s, room, uuid.New())
	}
	last.waitOnline(t, push, 3)
	tok := s.token(t, uuid.New())
	var first, second presencestats.OnlineStats
	eventually(t, push, "REST online_count 3", func() bool {
		return s.getJSON(t, "/api/rooms/"+room.String()+"/stats", tok, &first) == http.StatusOK && first.OnlineCount == 3
	})
	hits, misses := s.metric(t, "presence_stats_cache_hits_total"), s.metric(t, "presence_stats_cache_misses_total")
	if code := s.getJSON(t, "/api/rooms/"+room.String()+"/stats", tok, &second); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	// The counts agree; the timestamp may be newer (a heartbeat of the room between the reads
	// refreshes the cached entry with the same counts).
	if first.RoomID != second.RoomID || first.OnlineCount != second.OnlineCount || first.SessionCount != second.SessionCount || first.Degraded != second.Degraded {
		t.Errorf("two reads differ: %+v then %+v", first, second)
	}
	if got := s.metric(t, "presence_stats_cache_hits_total") - hits; got != 1 {
		t.Errorf("second read: %v cache hits, want 1", got)
	}
	if got := s.metric(t, "presence_stats_cache_misses_total") - misses; got != 0 {
		t.Errorf("second read: %v cache misses, want 0", got)
	}
	if first.Degraded || first.SessionCount != 3 || first.RoomID != room {
		t.Errorf("stats %+v", first)
	}

	var many handlers.RoomsStats
	other := uuid.New()
	if code := s.getJSON(t, "/api/rooms/stats?room_id="+room.String()+"&room_id="+other.String(), tok, &many); code != http.StatusOK {
		t.Fatalf("many: status %d", code)
	}
	if len(many.Rooms) != 2 || many.Rooms[0].OnlineCount != 3 || many.Rooms[1].OnlineCount != 0 || many.Rooms[1].RoomID != other {
		t.Errorf("many: %+v", many)
	}

	tooMany := "/api/rooms/stats?" + strings.Repeat("room_id="+uuid.NewString()+"&", 101)
	bad := []struct {
		name, path, token string
		want              int
	}{
		{"no token", "/api/rooms/" + room.String() + "/stats", "", http.StatusUnauthorized},
		{"alg none", "/api/rooms/" + room.String() + "/stats", noneToken(uuid.New()), http.StatusUnauthorized},
		{"bad room", "/api/rooms/not-a-room/stats", tok, http.StatusBadRequest},
		{"no rooms", "/api/rooms/stats", tok, http.StatusBadRequest},
		{"101 rooms", tooMany, tok, http.StatusBadRequest},
		{"one bad of many", "/api/rooms/stats?room_id=" + room.String() + "&room_id=x", tok, http.StatusBadRequest},
		{"many without token", "/api/rooms/stats?room_id=" + room.String(), "", http.StatusUnauthorized},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.getJSON(t, tt.path, tt.token, nil); got != tt.want {
				t.Errorf("status %d, want %d", got, tt.want)
			}
		})
	}
}

// Seed: 1000 users join concurrently -> exactly 1000 online and 1000 connected events; all
// leave -> 0 and 1000 disconnected events.
func TestWS1000ConcurrentJoins(t *testing.T) {
	if testing.Short() {
		t.Skip("1000 WebSockets")
	}
	s := newPresenceServer(t, presenceOpts{})
	room := uuid.New()
	const n = 1000
	clients := make([]*wsClient, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 100)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			clients[i] = dialWS(t, s, room, uuid.New())
		}()
	}
	wg.Wait()
	tok := s.token(t, uuid.New())
	eventually(t, 30*time.Second, "1000 online and 1000 connected events", func() bool {
		var st presencestats.OnlineStats
		s.getJSON(t, "/api/rooms/"+room.String()+"/stats", tok, &st)
		return st.OnlineCount == n && s.rec.count(presencestats.EventConnected, "") == n
	})
	observer := dialWS(t, s, room, uuid.New())
	observer.waitOnline(t, 30*time.Second, n+1)
	for _, c := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); c.conn.Close() }()
	}
	wg.Wait()
	observer.waitOnline(t, 30*time.Second, 1)
	eventually(t, 30*time.Second, "1000 disconnected events", func() bool {
		return s.rec.count(presencestats.EventDisconnected, presencestats.ReasonClosed) == n
	})
	if got := s.rec.count(presencestats.EventConnected, ""); got != n+1 {
		t.Errorf("%d connected events, want %d", got, n+1)
	}
	online := map[int]int{}
	for _, ev := range s.rec.events() {
		online[ev.OnlineDelta]++
	}
	if online[1] != n+1 || online[-1] != n {
		t.Errorf("deltas %v, want +1 x %d and -1 x %d", online, n+1, n)
	}
}

// Two instances share Redis: a client on A sees a join on B, and chat crosses instances.
func TestWSTwoInstances(t *testing.T) {
	prefix := storagetest.KeyPrefix(t)
	a := newPresenceServer(t, presenceOpts{prefix: prefix})
	b := newPresenceServer(t, presenceOpts{prefix: prefix})
	room := uuid.New()
	onA := dialWS(t, a, room, uuid.New())
	onA.waitOnline(t, push, 1)
	onB := dialWS(t, b, room, uuid.New())
	onB.waitOnline(t, push, 2)
	onA.waitOnline(t, time.Second, 2) // the bound of the issue: within 1 s
	onB.send(t, handlers.ClientFrame{Type: handlers.TypeMessage, Text: "hello from B"})
	for _, c := range []*wsClient{onA, onB} {
		f := c.waitFrame(t, push, "chat message", func(f frame) bool { return f.Type == handlers.TypeMessage })
		if !strings.Contains(string(f.Data), "hello from B") {
			t.Errorf("message %s", f.Data)
		}
	}
	onB.conn.Close()
	onA.waitOnline(t, time.Second, 1)
	// A's REST cache follows B's changes through the channel.
	var st presencestats.OnlineStats
	a.getJSON(t, "/api/rooms/"+room.String()+"/stats", a.token(t, uuid.New()), &st)
	if st.OnlineCount != 1 {
		t.Errorf("REST on A: %+v", st)
	}
}

// Chat is rate-limited per connection with an error frame; the connection stays.
func TestWSChatRateLimit(t *testing.T) {
	s := newPresenceServer(t, presenceOpts{chatRate: 2})
	c := dialWS(t, s, uuid.New(), uuid.New())
	c.waitOnline(t, push, 1)
	for range 5 {
		c.send(t, handlers.ClientFrame{Type: handlers.TypeMessage, Text: "spam"})
	}
	f := c.waitFrame(t, push, "rate_limited error", func(f frame) bool { return f.Type == handlers.TypeError })
	if !strings.Contains(string(f.Data), handlers.CodeRateLimited) {
		t.Errorf("error %s", f.Data)
	}
	c.send(t, `{"type":"ping"}`)
	c.waitFrame(t, push, "pong", func(f frame) bool { return f.Type == handlers.TypePong })
}

// A client that reads nothing overflows its bounded buffer and is dropped; the room goes on.
// The slow client sits on an instance with an 8-frame buffer; the talker on another instance.
func TestWSSlowConsumerIsDropped(t *testing.T) {
	prefix := storagetest.KeyPrefix(t)
	s := newPresenceServer(t, presenceOpts{prefix: prefix, sendBuffer: 8})
	other := newPresenceServer(t, presenceOpts{prefix: prefix, chatRate: 100000, rec: s.rec})
	room := uuid.New()
	// The slow client: a raw connection whose frames nobody reads.
	slow, _, err := websocket.DefaultDialer.Dial(wsURL(s.URL, room.String())+"?access_token="+s.token(t, uuid.New()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	talker := dialWS(t, other, room, uuid.New())
	talker.waitOnline(t, push, 2)
	chatUntilSlowConsumer(t, s, talker)
	talker.waitOnline(t, 10*time.Second, 1)
	eventually(t, 10*time.Second, "slow_consumer event", func() bool {
		return s.rec.count(presencestats.EventDisconnected, presencestats.ReasonSlowConsumer) == 1
	})
}

// Close ends every session with reason server_shutdown and 1001, and empties the room in Redis.
func TestHubCloseShutsDownSessions(t *testing.T) {
	s := newPresenceServer(t, presenceOpts{})
	room := uuid.New()
	c1 := dialWS(t, s, room, uuid.New())
	c2 := dialWS(t, s, room, uuid.New())
	c2.waitOnline(t, push, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.hub.Close(ctx)
	for _, c := range []*wsClient{c1, c2} {
		select {
		case <-c.closed:
		case <-time.After(5 * time.Second):
			t.Fatal("session not closed")
		}
		if got := c.closeCode(); got != websocket.CloseGoingAway {
			t.Errorf("close code %d, want 1001", got)
		}
	}
	eventually(t, 5*time.Second, "2 server_shutdown events", func() bool {
		return s.rec.count(presencestats.EventDisconnected, presencestats.ReasonServerShutdown) == 2
	})
	st, err := s.store.Counts(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].OnlineCount != 0 || st[0].SessionCount != 0 {
		t.Errorf("after shutdown: %+v", st[0])
	}
}

// Heartbeat events are recorded at most once per HEARTBEAT_EVENT_INTERVAL per session.
func TestWSHeartbeatEvents(t *testing.T) {
	s := newPresenceServer(t, presenceOpts{ttl: 600 * time.Millisecond, hbEvents: 300 * time.Millisecond})
	c := dialWS(t, s, uuid.New(), uuid.New())
	c.waitOnline(t, push, 1)
	start := time.Now()
	eventually(t, 5*time.Second, "2 heartbeat events", func() bool { return s.rec.count(presencestats.EventHeartbeat, "") >= 2 })
	elapsed := time.Since(start)
	if got, most := s.rec.count(presencestats.EventHeartbeat, ""), int(elapsed/(300*time.Millisecond))+1; got > most {
		t.Errorf("%d heartbeat events in %s, at most %d allowed", got, elapsed, most)
	}
	for _, ev := range s.rec.events() {
		if ev.Type == presencestats.EventHeartbeat && (ev.OnlineAfter != 1 || ev.OnlineDelta != 0) {
			t.Errorf("heartbeat event %+v", ev)
		}
	}
}

// A client that vanishes without a word (answers no ping) is closed after PRESENCE_TTL with
// reason timeout, and the room's count drops.
func TestWSSilentClientTimesOut(t *testing.T) {
	s := newPresenceServer(t, presenceOpts{ttl: 600 * time.Millisecond})
	room := uuid.New()
	silent, _, err := websocket.DefaultDialer.Dial(wsURL(s.URL, room.String())+"?access_token="+s.token(t, uuid.New()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close() // never read: pings stay unanswered
	watcher := dialWS(t, s, room, uuid.New())
	watcher.waitOnline(t, push, 2)
	watcher.waitOnline(t, 5*time.Second, 1)
	eventually(t, push, "timeout event", func() bool {
		return s.rec.count(presencestats.EventDisconnected, presencestats.ReasonTimeout) == 1
	})
}

// Updates are coalesced per room: a burst of changes reaches a member as at most one
// online_stats per window (STATS_PUSH_INTERVAL, 50 ms here) plus one, and the last one has the
// final count (ws_coalesce_test.go asserts the same on a fake clock).
func TestWSStatsCoalesced(t *testing.T) {
	s := newPresenceServer(t, presenceOpts{})
	room := uuid.New()
	observer := dialWS(t, s, room, uuid.New())
	observer.waitOnline(t, push, 1)
	start := time.Now()
	const burst = 200
	var wg sync.WaitGroup
	for range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := s.store.Join(context.Background(), presencestats.Session{RoomID: room, UserID: uuid.New(), ID: uuid.New()}, true); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	frames := 0
	observer.waitFrame(t, 5*time.Second, "the final count", func(f frame) bool {
		if f.Type != handlers.TypeOnlineStats {
			return false
		}
		frames++
		return f.stats(t).OnlineCount == burst+1
	})
	elapsed := time.Since(start)
	// No two pushes closer than the window, plus the leading one.
	if most := int(elapsed/(50*time.Millisecond)) + 2; frames > most {
		t.Errorf("%d online_stats frames for %d changes in %s, want at most %d", frames, burst, elapsed, most)
	}
	t.Logf("%d changes -> %d frames in %s", burst, frames, elapsed)
}
