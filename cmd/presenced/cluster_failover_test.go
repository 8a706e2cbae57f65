package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
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

// TestRedisClusterFailoverDrill: two presenced instances on a Redis Cluster of three masters with
// one replica each; clients join and leave rooms spread over every master; a master holding live
// rooms is SIGKILLed under that load and its replica takes over (cluster-node-timeout 1 s). Then
// every client's count is exact again (the test knows the truth: the distinct users of the
// clients it holds open in each room), the cluster keeps working (more joins and leaves), and
// the history holds every session's events once: one connected per session that joined, one
// disconnected per finished session, none for a live one, no event twice, and sum(online_delta)
// per room equal to its live count. It logs how long counts were stale: from the kill until every
// client's count was exact again (docs/operations.md publishes the figure).
func TestRedisClusterFailoverDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster and presenced")
	}
	const (
		instances = 2
		roomCount = 12
		users     = 40
		ttl       = 10 * time.Second // well above the failover (about 2 s): no live session expires
	)
	cluster := storagetest.StartRedisCluster(t, 3, 1, time.Second)
	dbURL := os.Getenv("TEST_DATABASE_URL")
	if dbURL == "" {
		dbURL = storagetest.StartTimescale(t, 0).DSN()
	}
	pool := storagetest.Connect(t, dbURL, true)
	prefix := storagetest.KeyPrefix(t)
	env := map[string]string{
		"JWT_SECRET": killTestSecret, "REDIS_URL": cluster.URL(), "REDIS_KEY_PREFIX": prefix, "DATABASE_URL": dbURL,
		"PRESENCE_TTL": ttl.String(), "SWEEP_INTERVAL": "500ms", "STATS_PUSH_INTERVAL": "50ms",
		"EVENT_FLUSH_INTERVAL": "500ms", "OUTBOX_CLAIM_IDLE": "1s",
		// Each presence change confirmed by the replica (docs/operations.md): none acknowledged is lost.
		"REDIS_WAIT_REPLICAS": "1",
	}
	bin := buildPresenced(t)
	procs := make([]*presencedProcess, instances)
	for i := range procs {
		procs[i] = startPresenced(t, bin, env)
	}

	// Rooms spread over the masters; the victim is the master holding most of them.
	rooms := make([]uuid.UUID, roomCount)
	byMaster := map[*storagetest.ClusterNode][]uuid.UUID{}
	for i := range rooms {
		rooms[i] = uuid.New()
		m := cluster.MasterOfKey(t, storage.RoomHashTag(rooms[i]))
		byMaster[m] = append(byMaster[m], rooms[i])
	}
	var victim *storagetest.ClusterNode
	for m, rs := range byMaster {
		if victim == nil || len(rs) > len(byMaster[victim]) {
			victim = m
		}
	}
	probe, onVictim := byMaster[victim][0], len(byMaster[victim])
	t.Logf("victim master %s holds %d of %d rooms", victim.Addr(), onVictim, roomCount)

	auth := handlers.NewTokenAuthority(killTestSecret)
	userIDs := make([]uuid.UUID, users)
	for i := range userIDs {
		userIDs[i] = uuid.New()
	}
	d := &failoverDrill{t: t, auth: auth, procs: procs, rooms: rooms, users: userIDs,
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 12))}
	for range 60 {
		d.open()
	}
	d.waitExact(30*time.Second, "before the kill")

	// Load: a join or a leave every 20 ms on a random instance, until the failover is over.
	stopLoad := d.churn(20 * time.Millisecond)
	time.Sleep(time.Second) // the load runs a while before the kill
	killed := time.Now()
	victim.Kill()
	// The replica is promoted after cluster-node-timeout; the load goes on until then.
	deadline := time.Now().Add(30 * time.Second)
	for m := cluster.MasterOfKey(t, storage.RoomHashTag(probe)); m == nil || m == victim; m = cluster.MasterOfKey(t, storage.RoomHashTag(probe)) {
		if time.Now().After(deadline) {
			t.Fatal("no replica took over the killed master's slots within 30 s")
		}
		time.Sleep(50 * time.Millisecond) // polling the cluster's view
	}
	promoted := time.Since(killed)
	stopLoad()
	stale := d.waitExact(30*time.Second, "after the failover").Sub(killed)
	t.Logf("FAILOVER-FIGURE counts stale for %s after the kill of a master (replica promoted after %s; %d clients open, %d rooms, %d on the killed master)",
		stale.Round(10*time.Millisecond), promoted.Round(10*time.Millisecond), d.openCount(), roomCount, onVictim)

	// The cluster works on: more joins and leaves, then a third of the clients leave.
	stopLoad = d.churn(20 * time.Millisecond)
	time.Sleep(time.Second)
	stopLoad()
	d.waitExact(30*time.Second, "after more load")
	d.closeSome(3)
	d.waitExact(30*time.Second, "after the leaves")
	d.verifyHistory(pool, cluster.URL(), prefix, 60*time.Second)
}

// failoverDrill holds the drill's clients and the truth about them.
type failoverDrill struct {
	t     *testing.T
	auth  *handlers.TokenAuthority
	procs []*presencedProcess
	rooms []uuid.UUID
	users []uuid.UUID

	mu      sync.Mutex
	rng     *rand.Rand
	clients []*failoverClient
}

// failoverClient is one WebSocket session: what it was told, and whether the test closed it.
type failoverClient struct {
	conn *websocket.Conn
	room uuid.UUID
	user uuid.UUID

	mu       sync.Mutex
	id       uuid.UUID // from welcome
	online   int64     // the last online_count pushed
	degraded bool
	joined   bool // a snapshot that was not degraded came after the welcome: Redis has it
	closed   bool
}

func (d *failoverDrill) open() {
	d.mu.Lock()
	room, user, inst := d.rooms[d.rng.IntN(len(d.rooms))], d.users[d.rng.IntN(len(d.users))], d.rng.IntN(len(d.procs))
	d.mu.Unlock()
	tok, err := d.auth.Mint(user, handlers.RoleUser, time.Hour)
	if err != nil {
		d.t.Error(err)
		return
	}
	base := d.procs[inst].base
	url := "ws" + strings.TrimPrefix(base, "http") + "/ws/rooms/" + room.String() + "?access_token=" + tok
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		d.t.Errorf("dial %s: %v", base, err)
		return
	}
	c := &failoverClient{conn: conn, room: room, user: user}
	d.t.Cleanup(func() { conn.Close() })
	go c.read()
	d.mu.Lock()
	d.clients = append(d.clients, c)
	d.mu.Unlock()
}

func (c *failoverClient) read() {
	followSession(c.conn, &c.mu, func(id uuid.UUID) { c.id = id }, func(st presencestats.OnlineStats) {
		c.online, c.degraded = st.OnlineCount, st.Degraded
		if !st.Degraded && c.id != uuid.Nil {
			c.joined = true
		}
	})
}

// closeOne closes a random open client (a leave).
func (d *failoverDrill) closeOne() {
	d.mu.Lock()
	var open []*failoverClient
	for _, c := range d.clients {
		if !c.isClosed() {
			open = append(open, c)
		}
	}
	if len(open) == 0 {
		d.mu.Unlock()
		return
	}
	c := open[d.rng.IntN(len(open))]
	d.mu.Unlock()
	c.close()
}

func (c *failoverClient) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *failoverClient) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = c.conn.Close()
}

// closeSome closes every n-th open client.
func (d *failoverDrill) closeSome(n int) {
	d.mu.Lock()
	clients := append([]*failoverClient(nil), d.clients...)
	d.mu.Unlock()
	i := 0
	for _, c := range clients {
		if c.isClosed() {
			continue
		}
		if i%n == 0 {
			c.close()
		}
		i++
	}
}

// churn opens or closes a client every interval (as many joins as leaves) until the returned
// function is called.
func (d *failoverDrill) churn(interval time.Duration) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for n := 0; ; n++ {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if n%2 == 0 {
				d.open()
			} else {
				d.closeOne()
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(done); <-finished }) }
	d.t.Cleanup(stop) // before the instances stop, when the test ends early
	return stop
}

func (d *failoverDrill) openCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, c := range d.clients {
		if !c.isClosed() {
			n++
		}
	}
	return n
}

// wrongCounts returns what differs between the clients' counts and the truth: the distinct
// users of the open clients of each room.
func (d *failoverDrill) wrongCounts() []string {
	d.mu.Lock()
	clients := append([]*failoverClient(nil), d.clients...)
	d.mu.Unlock()
	truth := map[uuid.UUID]map[uuid.UUID]bool{}
	for _, c := range clients {
		if !c.isClosed() {
			if truth[c.room] == nil {
				truth[c.room] = map[uuid.UUID]bool{}
			}
			truth[c.room][c.user] = true
		}
	}
	var wrong []string
	for _, c := range clients {
		c.mu.Lock()
		if !c.closed && (c.online != int64(len(truth[c.room])) || c.degraded) {
			wrong = append(wrong, fmt.Sprintf("client %s in room %s: online %d (degraded %v), truth %d", c.id, c.room, c.online, c.degraded, len(truth[c.room])))
		}
		c.mu.Unlock()
	}
	return wrong
}

// waitExact polls until every open client's count is the truth and returns when it first was.
func (d *failoverDrill) waitExact(within time.Duration, when string) time.Time {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for {
		wrong := d.wrongCounts()
		if len(wrong) == 0 {
			return time.Now()
		}
		if time.Now().After(deadline) {
			sort.Strings(wrong)
			if len(wrong) > 10 {
				wrong = append(wrong[:10], fmt.Sprintf("... %d more", len(wrong)-10))
			}
			d.t.Fatalf("counts %s not exact after %s:\n  %s", when, within, strings.Join(wrong, "\n  "))
		}
		time.Sleep(10 * time.Millisecond) // polling the clients' counts
	}
}

// verifyHistory polls the database until the drill's history is complete and consistent, and
// fails with what is wrong at the deadline.
func (d *failoverDrill) verifyHistory(pool *pgxpool.Pool, redisURL, prefix string, within time.Duration) {
	t := d.t
	t.Helper()
	rdb, err := storage.OpenRedis(context.Background(), redisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	store := storage.NewPresence(rdb, storage.PresenceOptions{KeyPrefix: prefix, TTL: time.Second})
	d.mu.Lock()
	clients := append([]*failoverClient(nil), d.clients...)
	d.mu.Unlock()
	deadline := time.Now().Add(within)
	var problems []string
	for {
		problems = d.historyProblems(pool, store, clients)
		if len(problems) == 0 {
			var events int
			_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM presence_events WHERE room_id = ANY($1)`, d.rooms).Scan(&events)
			t.Logf("history consistent: %d sessions, %d events", len(clients), events)
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
	t.Fatalf("history after the failover drill (%d sessions):\n  %s", len(clients), strings.Join(problems, "\n  "))
}

func (d *failoverDrill) historyProblems(pool *pgxpool.Pool, store *storage.Presence, clients []*failoverClient) []string {
	ctx := context.Background()
	type key struct {
		session uuid.UUID
		typ     string
	}
	counts := map[key]int{}
	rows, err := pool.Query(ctx, `SELECT session_id, event_type, count(*) FROM presence_events
		WHERE room_id = ANY($1) AND event_type <> 'heartbeat' GROUP BY 1, 2`, d.rooms)
	if err != nil {
		return []string{err.Error()}
	}
	for rows.Next() {
		var k key
		var n int
		if err := rows.Scan(&k.session, &k.typ, &n); err != nil {
			rows.Close()
			return []string{err.Error()}
		}
		counts[k] = n
	}
	if err := rows.Err(); err != nil {
		return []string{err.Error()}
	}
	var problems []string
	var dup int
	if err := pool.QueryRow(ctx, `SELECT count(*) - count(DISTINCT event_id) FROM presence_events WHERE room_id = ANY($1)`, d.rooms).Scan(&dup); err != nil {
		return []string{err.Error()}
	}
	if dup != 0 {
		problems = append(problems, fmt.Sprintf("%d events stored twice", dup))
	}
	for _, c := range clients {
		c.mu.Lock()
		id, joined, closed := c.id, c.joined, c.closed
		c.mu.Unlock()
		if id == uuid.Nil {
			problems = append(problems, "a client got no welcome")
			continue
		}
		conn, disc := counts[key{id, "connected"}], counts[key{id, "disconnected"}]
		switch {
		case conn > 1 || disc > 1:
			problems = append(problems, fmt.Sprintf("session %s: %d connected, %d disconnected", id, conn, disc))
		case joined && conn != 1:
			problems = append(problems, fmt.Sprintf("session %s joined: %d connected events", id, conn))
		case closed && conn != disc:
			problems = append(problems, fmt.Sprintf("session %s finished: %d connected, %d disconnected", id, conn, disc))
		case !closed && disc != 0:
			problems = append(problems, fmt.Sprintf("session %s live: %d disconnected", id, disc))
		}
	}
	live, err := store.Counts(ctx, d.rooms...)
	if err != nil {
		return append(problems, err.Error())
	}
	for i, room := range d.rooms {
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
