package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"presencestats/handlers"
	"presencestats/storage/storagetest"
)

// drillCluster is N presenced processes on one Redis (a prefix of their own) and one database,
// with the ground truth of who is connected: the clients the test opened and has not closed,
// nor lost with a killed instance.
type drillCluster struct {
	t        *testing.T
	bin      string
	env      map[string]string
	procs    []*presencedProcess
	alive    []bool
	auth     *handlers.TokenAuthority
	pool     *pgxpool.Pool
	redisURL string
	prefix   string
	rooms    []uuid.UUID
	clients  []*drillClient // every session of the drill, ended ones included
	users    map[*drillClient]uuid.UUID
	roomOf   map[*drillClient]uuid.UUID
}

// newDrillCluster starts n instances on pool (nil: the test binary's shared database; fresh room
// ids keep the drill's history apart) and the shared Redis, with env on top of the drill's
// settings (REDIS_URL and DATABASE_URL there replace the shared ones).
func newDrillCluster(t *testing.T, n int, rooms int, pool *pgxpool.Pool, env map[string]string) *drillCluster {
	t.Helper()
	if pool == nil {
		pool = storagetest.SharedDatabase(t)
	}
	redisURL := env["REDIS_URL"]
	if redisURL == "" {
		redisURL = storagetest.RedisURL(t)
	}
	c := &drillCluster{
		t: t, bin: buildPresenced(t), auth: handlers.NewTokenAuthority(killTestSecret), pool: pool,
		redisURL: redisURL, prefix: storagetest.KeyPrefix(t),
		users: map[*drillClient]uuid.UUID{}, roomOf: map[*drillClient]uuid.UUID{},
	}
	c.env = map[string]string{
		"JWT_SECRET": killTestSecret, "REDIS_URL": c.redisURL, "REDIS_KEY_PREFIX": c.prefix,
		"DATABASE_URL": pool.Config().ConnString(),
		// Heartbeats every second: a loaded machine does not expire live sessions; a killed
		// instance's sessions are gone within 3 s + the sweep.
		"PRESENCE_TTL": "3s", "SWEEP_INTERVAL": "250ms", "STATS_PUSH_INTERVAL": "50ms",
		"EVENT_FLUSH_INTERVAL": "500ms", "OUTBOX_CLAIM_IDLE": "1s",
	}
	for k, v := range env {
		c.env[k] = v
	}
	for range rooms {
		c.rooms = append(c.rooms, uuid.New())
	}
	c.procs, c.alive = make([]*presencedProcess, n), make([]bool, n)
	for i := range n {
		c.start(i)
	}
	return c
}

func (c *drillCluster) start(i int) {
	c.t.Helper()
	c.procs[i] = startPresenced(c.t, c.bin, c.env)
	c.alive[i] = true
}

// kill SIGKILLs instance i; its clients' sessions are left for the sweepers (the truth drops them).
func (c *drillCluster) kill(i int) []*drillClient {
	c.t.Helper()
	_ = c.procs[i].cmd.Process.Signal(syscall.SIGKILL)
	<-c.procs[i].done
	c.alive[i] = false
	var lost []*drillClient
	for _, cl := range c.clients {
		if cl.instance == i && !cl.isGone() {
			cl.markKilled()
			lost = append(lost, cl)
		}
	}
	return lost
}

// seat makes users distinct users and joins sessions sessions of them one after another, spread
// over the instances and the rooms in turn (a user holds several sessions, in several rooms),
// then waits until every client and instance agrees on the counts; it returns the users.
func (c *drillCluster) seat(users, sessions int) []uuid.UUID {
	us := make([]uuid.UUID, users)
	for i := range us {
		us[i] = uuid.New()
	}
	for k := range sessions {
		c.join(k%len(c.procs), us[k%users], c.rooms[k%len(c.rooms)])
	}
	c.settle("start", 15*time.Second)
	return us
}

// join opens a session of user in room on instance i and waits for its join.
func (c *drillCluster) join(i int, user, room uuid.UUID) *drillClient {
	c.t.Helper()
	cl := c.open(i, user, room)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, joined, _ := cl.state(); joined {
			return cl
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("a client on instance %d did not join within 10 s", i)
		}
		time.Sleep(10 * time.Millisecond) // polling the read loop
	}
}

// open opens a session of user in room on instance i without waiting for its join (during an
// outage its snapshot is degraded and it joins Redis when Redis is back).
func (c *drillCluster) open(i int, user, room uuid.UUID) *drillClient {
	c.t.Helper()
	tok, err := c.auth.Mint(user, handlers.RoleUser, time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}
	cl := openDrill(c.t, c.procs[i].base, tok, room, i)
	c.clients = append(c.clients, cl)
	c.users[cl], c.roomOf[cl] = user, room
	return cl
}

// live returns the clients connected now, the ground truth.
func (c *drillCluster) live() []*drillClient {
	var out []*drillClient
	for _, cl := range c.clients {
		if !cl.isGone() {
			out = append(out, cl)
		}
	}
	return out
}

// truth returns the counts each room must show: distinct users and sessions of the live clients.
func (c *drillCluster) truth() map[uuid.UUID][2]int64 {
	users := map[uuid.UUID]map[uuid.UUID]bool{}
	out := map[uuid.UUID][2]int64{}
	for _, room := range c.rooms {
		users[room] = map[uuid.UUID]bool{}
	}
	for _, cl := range c.live() {
		room := c.roomOf[cl]
		users[room][c.users[cl]] = true
		t := out[room]
		t[1]++
		out[room] = t
	}
	for room, u := range users {
		t := out[room]
		t[0] = int64(len(u))
		out[room] = t
	}
	return out
}

// mismatches compares what every live client was last pushed, and every live instance's REST
// answer, with the truth.
func (c *drillCluster) mismatches() []string {
	want := c.truth()
	var bad []string
	for _, cl := range c.live() {
		cl.mu.Lock()
		st := cl.last
		cl.mu.Unlock()
		w := want[c.roomOf[cl]]
		if st.OnlineCount != w[0] || st.SessionCount != w[1] || st.Degraded {
			bad = append(bad, fmt.Sprintf("client %s on instance %d: pushed %d users %d sessions (degraded %v), truth %d/%d",
				cl.id, cl.instance, st.OnlineCount, st.SessionCount, st.Degraded, w[0], w[1]))
		}
	}
	for i, p := range c.procs {
		if !c.alive[i] {
			continue
		}
		status, body, err := c.roomsStats(p.base, c.rooms)
		if err != nil || status != http.StatusOK || len(body.Rooms) != len(c.rooms) {
			bad = append(bad, fmt.Sprintf("instance %d REST: status %d, %d rooms, %v", i, status, len(body.Rooms), err))
			continue
		}
		for _, st := range body.Rooms {
			if w := want[st.RoomID]; st.OnlineCount != w[0] || st.SessionCount != w[1] || st.Degraded {
				bad = append(bad, fmt.Sprintf("instance %d REST room %s: %d/%d (%s), truth %d/%d", i, st.RoomID, st.OnlineCount, st.SessionCount, st.Source, w[0], w[1]))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// settle waits until every live client and every live instance shows the truth, and fails the
// test with what differs at the deadline. It returns how long that took.
func (c *drillCluster) settle(step string, within time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	for {
		bad := c.mismatches()
		if len(bad) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > within {
			if len(bad) > 10 {
				bad = append(bad[:10], fmt.Sprintf("... %d more", len(bad)-10))
			}
			c.t.Fatalf("%s: counts not the truth after %s:\n  %s", step, within, strings.Join(bad, "\n  "))
		}
		time.Sleep(50 * time.Millisecond) // polling the clients' frames and REST
	}
}

// another returns a live instance other than i, taking turns.
func (c *drillCluster) another(i, turn int) int {
	for k := range len(c.procs) {
		j := (i + 1 + (turn+k)%(len(c.procs)-1)) % len(c.procs)
		if j != i && c.alive[j] {
			return j
		}
	}
	c.t.Fatal("no live instance")
	return -1
}

// Three instances, one truth (issue 12, part 3): 18 sessions of 8 users (some with two tabs) in
// two rooms, spread over three presenced processes on one Redis and one database. Each instance in
// turn, twice round, is SIGKILLed; its clients reconnect to the other two (new sessions: their
// old ones end by expiry, PRESENCE_TTL 3 s), a client leaves and another joins, then the instance
// is restarted and takes new clients. After every step every live client's last pushed counts
// and every instance's REST answer equal the truth the test knows. At the end everyone leaves:
// every session has exactly one connected and one disconnected event, no event is stored twice,
// and sum(online_delta) per room is the live count, 0.
func TestThreeInstancesOneTruth(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs presenced three times")
	}
	c := newDrillCluster(t, 3, 2, nil, nil)
	users := c.seat(8, 18)
	within := 20 * time.Second // PRESENCE_TTL + SWEEP_INTERVAL, with room for a loaded machine
	turn := 0
	for pass := range 2 {
		for victim := range 3 {
			step := fmt.Sprintf("pass %d, instance %d killed", pass, victim)
			lost := c.kill(victim)
			for _, cl := range lost { // each reconnects elsewhere: a new session
				turn++
				c.join(c.another(victim, turn), c.users[cl], c.roomOf[cl])
			}
			if live := c.live(); len(live) > 0 { // one leaves
				live[turn%len(live)].close()
			}
			turn++
			c.join(c.another(victim, turn), users[turn%len(users)], c.rooms[turn%2]) // one joins
			took := c.settle(step, within)
			c.start(victim)
			c.join(victim, users[(turn+3)%len(users)], c.rooms[(turn+1)%2])
			c.settle(step+", restarted", within)
			t.Logf("%s: %d sessions moved, counts exact %s after the kill", step, len(lost), took.Round(10*time.Millisecond))
		}
	}
	verifyDrillHistory(t, c.pool, c.redisURL, c.prefix, c.rooms, c.clients, 60*time.Second)
	for _, cl := range c.live() {
		cl.close()
	}
	verifyDrillHistory(t, c.pool, c.redisURL, c.prefix, c.rooms, c.clients, 60*time.Second)
	assertAllFinished(t, c.pool, c.rooms, c.clients)
}

// assertAllFinished checks that every session of the drill that reached Redis (it had a
// snapshot that was not degraded) has one connected and one disconnected event, and that the
// others (opened and closed while Redis was away) have none; verifyDrillHistory allows a killed
// client's session to be still open. It returns how many sessions never reached Redis.
func assertAllFinished(t *testing.T, pool *pgxpool.Pool, rooms []uuid.UUID, clients []*drillClient) int {
	t.Helper()
	joined := 0
	for _, cl := range clients {
		if _, ok, _ := cl.state(); ok {
			joined++
		}
	}
	var sessions, open int
	err := pool.QueryRow(context.Background(), `SELECT count(DISTINCT session_id),
		count(*) FILTER (WHERE c <> d OR c <> 1) FROM (
		  SELECT session_id, count(*) FILTER (WHERE event_type = 'connected') c,
		         count(*) FILTER (WHERE event_type = 'disconnected') d
		  FROM presence_events WHERE room_id = ANY($1) GROUP BY session_id) s`, rooms).Scan(&sessions, &open)
	if err != nil {
		t.Fatal(err)
	}
	if sessions != joined || open != 0 {
		t.Errorf("history: %d sessions (want the %d that reached Redis), %d of them without exactly one connected and one disconnected", sessions, joined, open)
	}
	return len(clients) - joined
}
