package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"presencestats"
	"presencestats/handlers"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

// The kill drill of issue 17: presence events flow on three instances while one of them is
// killed with SIGKILL at a random moment within the flush interval, round after round (restarted
// or not). Afterwards the history holds, for every session, exactly one connected event and at
// most one disconnected (one of each for every finished session), no event twice, and
// sum(online_delta) per room equals the room's live count.
func TestOutboxKillDrill(t *testing.T) { outboxKillDrill(t, false) }

// The same drill with the database unreachable (every instance's connections to it cut) during
// every other round's kill: the events wait in Redis and reach the database once it is back.
func TestOutboxKillDrillDatabaseDown(t *testing.T) { outboxKillDrill(t, true) }

func outboxKillDrill(t *testing.T, dbDown bool) {
	if testing.Short() {
		t.Skip("builds and runs presenced")
	}
	const (
		rounds    = 20
		instances = 3
		ttl       = 3 * time.Second // heartbeats every second: a loaded machine does not expire live sessions
		flush     = time.Second
	)
	// The database `make test` started (TEST_DATABASE_URL), or one of its own: the drill's rooms
	// are new, so sharing it is safe.
	dbURL := os.Getenv("TEST_DATABASE_URL")
	if dbURL == "" {
		dbURL = storagetest.StartTimescale(t, 0).DSN()
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	dbPort, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	pool := storagetest.Connect(t, dbURL, true)
	proxy := startTCPProxy(t, dbPort)
	u.Host = fmt.Sprintf("127.0.0.1:%d", proxy.port)
	dsn := u.String() + "&connect_timeout=2"
	prefix := storagetest.KeyPrefix(t)
	redisURL := storagetest.RedisURL(t)
	env := map[string]string{
		"JWT_SECRET": killTestSecret, "REDIS_URL": redisURL, "REDIS_KEY_PREFIX": prefix, "DATABASE_URL": dsn,
		"PRESENCE_TTL": ttl.String(), "SWEEP_INTERVAL": "500ms", "STATS_PUSH_INTERVAL": "50ms",
		"EVENT_FLUSH_INTERVAL": flush.String(), "OUTBOX_CLAIM_IDLE": "1s", "HEARTBEAT_EVENT_INTERVAL": "300ms",
	}
	bin := buildPresenced(t)
	procs := make([]*presencedProcess, instances)
	for i := range procs {
		procs[i] = startPresenced(t, bin, env)
	}
	auth := handlers.NewTokenAuthority(killTestSecret)
	rooms := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	users := make([]uuid.UUID, 8) // few users: several tabs of one user, online_delta 0 and ±1
	for i := range users {
		users[i] = uuid.New()
	}
	var clients []*drillClient
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 17))
	dead := -1 // an instance killed and not restarted yet
	alive := func() int {
		for {
			if i := rng.IntN(instances); i != dead {
				return i
			}
		}
	}
	for round := range rounds {
		if dead >= 0 {
			procs[dead] = startPresenced(t, bin, env)
			dead = -1
		}
		down := dbDown && round%2 == 1
		if down {
			proxy.setUp(false)
		}
		// A few clients join on random instances; some of the earlier ones leave.
		for range 3 {
			i := alive()
			tok, err := auth.Mint(users[rng.IntN(len(users))], handlers.RoleUser, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if c := dialDrill(t, procs[i].base, tok, rooms[rng.IntN(len(rooms))], i); c != nil {
				clients = append(clients, c)
			}
		}
		for _, c := range clients {
			if !c.isGone() && rng.IntN(4) == 0 {
				c.close()
			}
		}
		// Kill one instance within the flush interval after the joins: its events of this round
		// are in no batch written yet.
		victim := rng.IntN(instances)
		time.Sleep(time.Duration(rng.Int64N(int64(flush)))) // the random moment of the kill
		_ = procs[victim].cmd.Process.Signal(syscall.SIGKILL)
		<-procs[victim].done
		for _, c := range clients {
			if c.instance == victim {
				c.markKilled()
			}
		}
		if rng.IntN(3) == 0 && round < rounds-1 {
			// Not restarted at once: the others take over its pending events and sweep its
			// sessions; it comes back at the next round's start.
			dead = victim
		} else {
			procs[victim] = startPresenced(t, bin, env)
		}
		if down {
			proxy.setUp(true)
		}
	}
	// The clients still connected stay: their sessions are live, with a connected event and no
	// disconnected one.
	verifyDrillHistory(t, pool, redisURL, prefix, rooms, clients, 90*time.Second)
}

// verifyDrillHistory polls the database until the history of the drill's sessions is complete
// and consistent, and fails with what is wrong at the deadline.
func verifyDrillHistory(t *testing.T, pool *pgxpool.Pool, redisURL, prefix string, rooms []uuid.UUID, clients []*drillClient, within time.Duration) {
	t.Helper()
	rdb, err := storage.OpenRedis(context.Background(), redisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	store := storage.NewPresence(rdb, storage.PresenceOptions{KeyPrefix: prefix, TTL: time.Second})
	deadline := time.Now().Add(within)
	var problems []string
	for {
		problems = drillProblems(t, pool, store, rooms, clients)
		if len(problems) == 0 {
			var joined, killed, events int
			for _, c := range clients {
				c.mu.Lock()
				if c.joined {
					joined++
				}
				if c.killed {
					killed++
				}
				c.mu.Unlock()
			}
			_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM presence_events WHERE room_id = ANY($1)`, rooms).Scan(&events)
			t.Logf("history consistent: %d sessions (%d joined, %d on a killed instance), %d events", len(clients), joined, killed, events)
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // polling the history
	}
	if len(problems) > 20 {
		problems = append(problems[:20], fmt.Sprintf("... %d more", len(problems)-20))
	}
	t.Fatalf("history after the drill (%d sessions):\n  %s", len(clients), strings.Join(problems, "\n  "))
}

func drillProblems(t *testing.T, pool *pgxpool.Pool, store *storage.Presence, rooms []uuid.UUID, clients []*drillClient) []string {
	ctx := context.Background()
	type key struct {
		session uuid.UUID
		typ     string
	}
	counts := map[key]int{}
	rows, err := pool.Query(ctx, `SELECT session_id, event_type, count(*) FROM presence_events
		WHERE room_id = ANY($1) AND event_type <> 'heartbeat' GROUP BY 1, 2`, rooms)
	if err != nil {
		return []string{err.Error()}
	}
	for rows.Next() {
		var k key
		var n int
		if err := rows.Scan(&k.session, &k.typ, &n); err != nil {
			t.Fatal(err)
		}
		counts[k] = n
	}
	if err := rows.Err(); err != nil {
		return []string{err.Error()}
	}
	var problems []string
	var dup int
	if err := pool.QueryRow(ctx, `SELECT count(*) - count(DISTINCT event_id) FROM presence_events WHERE room_id = ANY($1)`, rooms).Scan(&dup); err != nil {
		return []string{err.Error()}
	}
	if dup != 0 {
		problems = append(problems, fmt.Sprintf("%d events stored twice", dup))
	}
	for _, c := range clients {
		id, joined, finished := c.state()
		if id == uuid.Nil {
			continue // killed before its welcome: it may or may not have joined
		}
		conn, disc := counts[key{id, "connected"}], counts[key{id, "disconnected"}]
		switch {
		case conn > 1 || disc > 1:
			problems = append(problems, fmt.Sprintf("session %s: %d connected, %d disconnected", id, conn, disc))
		case joined && conn != 1:
			problems = append(problems, fmt.Sprintf("session %s joined: %d connected events", id, conn))
		case finished && conn != disc:
			problems = append(problems, fmt.Sprintf("session %s finished: %d connected, %d disconnected", id, conn, disc))
		case !finished && disc != 0:
			problems = append(problems, fmt.Sprintf("session %s live: %d disconnected", id, disc))
		}
	}
	live, err := store.Counts(ctx, rooms...)
	if err != nil {
		return append(problems, err.Error())
	}
	for i, room := range rooms {
		var sum int64
		if err := pool.QueryRow(ctx, `SELECT coalesce(sum(online_delta), 0) FROM presence_events WHERE room_id = $1`, room).Scan(&sum); err != nil {
			return append(problems, err.Error())
		}
		if sum != live[i].OnlineCount {
			problems = append(problems, fmt.Sprintf("room %s: sum(online_delta) %d, live count %d", room, sum, live[i].OnlineCount))
		}
	}
	return problems
}

// drillClient is one WebSocket session of the drill.
type drillClient struct {
	conn     *websocket.Conn
	instance int

	mu       sync.Mutex
	id       uuid.UUID                 // from welcome
	joined   bool                      // a snapshot that was not degraded came after the welcome: Redis has it
	last     presencestats.OnlineStats // the newest online_stats frame
	frames   int                       // online_stats frames received
	closed   bool                      // the test closed it (a leave)
	killed   bool                      // its instance was killed (the sweeper expires it)
	readDone chan struct{}
}

func dialDrill(t *testing.T, base, token string, room uuid.UUID, instance int) *drillClient {
	t.Helper()
	c := openDrill(t, base, token, room, instance)
	// Wait for the join (its snapshot) so the round's events exist before the kill; a client
	// whose instance does not answer in time is still part of the drill (maybe joined).
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, joined, _ := c.state(); joined {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling the read loop
	}
	return c
}

// openDrill opens a drill session without waiting for its join.
func openDrill(t *testing.T, base, token string, room uuid.UUID, instance int) *drillClient {
	t.Helper()
	url := "ws" + strings.TrimPrefix(base, "http") + "/ws/rooms/" + room.String() + "?access_token=" + token
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", base, err)
	}
	c := &drillClient{conn: conn, instance: instance, readDone: make(chan struct{})}
	t.Cleanup(func() { conn.Close() })
	go func() {
		defer close(c.readDone)
		followSession(conn, &c.mu, func(id uuid.UUID) { c.id = id }, func(st presencestats.OnlineStats) {
			c.last, c.frames = st, c.frames+1
			if !st.Degraded && c.id != uuid.Nil {
				c.joined = true
			}
		})
	}()
	return c
}

// state returns the session id, whether it joined, and whether it ended (closed or killed).
func (c *drillClient) state() (uuid.UUID, bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id, c.joined, c.closed || c.killed
}

func (c *drillClient) isGone() bool {
	_, _, gone := c.state()
	return gone
}

func (c *drillClient) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = c.conn.Close()
}

func (c *drillClient) markKilled() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.killed = true
	}
}

// tcpProxy forwards a local port to the database; setUp(false) cuts every connection and refuses
// new ones (the database is unreachable), setUp(true) accepts again, on the same port.
type tcpProxy struct {
	port, target int
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]struct{}
}

func startTCPProxy(t *testing.T, target int) *tcpProxy {
	t.Helper()
	p := &tcpProxy{port: storagetest.FreePort(t), target: target, conns: map[net.Conn]struct{}{}}
	p.setUp(true)
	t.Cleanup(func() { p.setUp(false) })
	return p
}

func (p *tcpProxy) setUp(up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !up {
		if p.ln != nil {
			p.ln.Close()
			p.ln = nil
		}
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]struct{}{}
		return
	}
	if p.ln != nil {
		return
	}
	var ln net.Listener
	var err error
	for range 100 { // the port may linger for a moment after the close
		if ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.port)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // retrying the bind
	}
	if err != nil {
		panic(fmt.Sprintf("proxy: listen again on %d: %v", p.port, err))
	}
	p.ln = ln
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.target))
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln { // cut meanwhile
				p.mu.Unlock()
				in.Close()
				out.Close()
				return
			}
			p.conns[in], p.conns[out] = struct{}{}, struct{}{}
			p.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close(); in.Close() }()
			go func() { _, _ = io.Copy(in, out); out.Close(); in.Close() }()
		}
	}()
}
