package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"presencestats/handlers"
	"presencestats/storage/storagetest"
)

// The fault drills of issue 12 (part 6), each bounded: a fault under load, what users saw, then
// the counts against the test's ground truth and the history exact (every session one connected
// and one disconnected, no event twice, sum(online_delta) per room = its live count). The instance
// kill is TestThreeInstancesOneTruth and TestOutboxKillDrill; docs/operations.md, "Fault drills".

// aofRedis is a redis-server of the test's own that keeps its data in an append-only file synced
// at every write (as production should run it, AOF), so that a SIGKILL and a restart lose nothing.
type aofRedis struct {
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startAOFRedis(t *testing.T) *aofRedis {
	t.Helper()
	r := &aofRedis{port: storagetest.FreePort(t), dir: t.TempDir()}
	r.start(t)
	t.Cleanup(r.kill)
	return r
}

func (r *aofRedis) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *aofRedis) start(t *testing.T) {
	t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always")
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.done = make(chan struct{})
	cmd, done := r.cmd, r.done
	go func() { _ = cmd.Wait(); close(done) }()
	waitPort(t, r.port, 20*time.Second)
}

// kill SIGKILLs the server (its AOF has every write it acknowledged).
func (r *aofRedis) kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
	r.cmd = nil
}

func waitPort(t *testing.T, port int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing answers on port %d after %s", port, within)
		}
		time.Sleep(20 * time.Millisecond) // polling for the port
	}
}

// churn makes n changes on the live instances, taking turns: a join (a new session of one of the
// users) then a leave of a live session. wait says whether each join waits for Redis.
func (c *drillCluster) churn(n int, users []uuid.UUID, wait bool) {
	c.t.Helper()
	for k := range n {
		if k%2 == 0 {
			i := k / 2 % len(c.procs)
			for !c.alive[i] {
				i = (i + 1) % len(c.procs)
			}
			user, room := users[k/2%len(users)], c.rooms[k/2%len(c.rooms)]
			if wait {
				c.join(i, user, room)
			} else {
				c.open(i, user, room)
			}
			continue
		}
		if live := c.live(); len(live) > 2 {
			live[(k*7)%len(live)].close()
		}
	}
}

// restSample asks every live instance for the rooms' counts and tallies the answers.
type restTally struct{ ok, degraded, failed int }

func (c *drillCluster) restSample(tally *restTally, sources map[string]int) {
	for i, p := range c.procs {
		if !c.alive[i] {
			continue
		}
		status, body, err := c.roomsStats(p.base, c.rooms)
		if err != nil || status != http.StatusOK {
			tally.failed++
			continue
		}
		tally.ok++
		for _, st := range body.Rooms {
			if st.Degraded {
				tally.degraded++
			}
			sources[st.Source]++
		}
	}
}

// connectedCount counts the drill's clients whose WebSocket the server has not closed.
func (c *drillCluster) stillOpen(cls []*drillClient) int {
	n := 0
	for _, cl := range cls {
		select {
		case <-cl.readDone:
		default:
			n++
		}
	}
	return n
}

// Redis killed (SIGKILL) and restarted under load, kept away longer than PRESENCE_TTL so that the
// sessions' deadlines pass: two instances, 12 sessions, joins and leaves going on through the
// outage. Users keep their WebSockets; REST answers 200, degraded; joins during the outage get a
// degraded snapshot; afterwards every count is the truth again without any reconnect, and the
// history is exact (Redis runs with AOF, appendfsync always: nothing it acknowledged is lost).
func TestDrillRedisRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs presenced")
	}
	r := startAOFRedis(t)
	c := newDrillCluster(t, 2, 2, nil, map[string]string{"REDIS_URL": r.url()})
	users := c.seat(6, 12)
	before := c.live()

	r.kill()
	down := time.Now()
	var tally restTally
	sources := map[string]int{}
	for time.Since(down) < 4*time.Second { // PRESENCE_TTL 3 s: the deadlines pass
		c.churn(2, users, false)
		c.restSample(&tally, sources)
		time.Sleep(200 * time.Millisecond) // the pace of the load
	}
	var degradedSnapshots int
	for _, cl := range c.live() {
		cl.mu.Lock()
		if cl.last.Degraded {
			degradedSnapshots++
		}
		cl.mu.Unlock()
	}
	outage := time.Since(down)
	r.start(t)
	took := c.settle("after the restart", 30*time.Second)
	var kept []*drillClient // those the test did not close meanwhile
	for _, cl := range before {
		if !cl.isGone() {
			kept = append(kept, cl)
		}
	}
	if open := c.stillOpen(kept); open != len(kept) {
		t.Errorf("%d of %d WebSockets open through the outage were closed by it", len(kept)-open, len(kept))
	}
	if tally.failed > 0 || tally.ok == 0 {
		t.Errorf("REST during the outage: %d answers 200, %d failed", tally.ok, tally.failed)
	}
	c.churn(6, users, true)
	c.settle("load after the restart", 15*time.Second)
	for _, cl := range c.live() {
		cl.close()
	}
	verifyDrillHistory(t, c.pool, c.redisURL, c.prefix, c.rooms, c.clients, 60*time.Second)
	unrecorded := assertAllFinished(t, c.pool, c.rooms, c.clients)
	t.Logf("Redis down %s: REST %d answers 200 (%d room answers degraded, sources %v), 0 failed; %d clients held a degraded snapshot; "+
		"%d of %d WebSockets kept through it (the others closed by the test); counts exact %s after the restart; %d sessions, %d in the history with one connected and one disconnected each, "+
		"%d opened and closed within the outage not recorded",
		outage.Round(100*time.Millisecond), tally.ok, tally.degraded, sources, degradedSnapshots, len(kept), len(before), took.Round(10*time.Millisecond),
		len(c.clients), len(c.clients)-unrecorded, unrecorded)
}

// persistentTimescale is a local TimescaleDB with its data in a directory, which a SIGKILL and
// a restart on the same port keep (the WebAssembly engine writes through to the files).
type persistentTimescale struct {
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startPersistentTimescale(t *testing.T) *persistentTimescale {
	t.Helper()
	ts := &persistentTimescale{port: storagetest.FreePort(t), dir: filepath.Join(t.TempDir(), "db")}
	ts.start(t)
	t.Cleanup(ts.kill)
	return ts
}

func (ts *persistentTimescale) dsn() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&pool_max_conns=1&default_query_exec_mode=cache_describe&connect_timeout=2", ts.port)
}

func (ts *persistentTimescale) start(t *testing.T) {
	t.Helper()
	script := filepath.Join(storagetest.RepoRoot(t), "dev", "tsdb", "server.mjs")
	ts.cmd = exec.Command("node", script, "--port", strconv.Itoa(ts.port), "--data-dir", ts.dir)
	ts.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	ts.cmd.Stderr = os.Stderr
	out, err := ts.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ts.done = make(chan struct{})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"ready":true`) {
				close(ready)
				break
			}
		}
		for sc.Scan() {
		}
	}()
	cmd, done := ts.cmd, ts.done
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-ready:
	case <-done:
		t.Fatal("TimescaleDB exited before it was ready")
	case <-time.After(3 * time.Minute): // seconds when idle; minutes on a loaded shared box
		t.Fatal("TimescaleDB not ready after 3 minutes")
	}
}

func (ts *persistentTimescale) kill() {
	if ts.cmd == nil {
		return
	}
	_ = ts.cmd.Process.Signal(syscall.SIGKILL)
	<-ts.done
	ts.cmd = nil
}

// The database (the local TimescaleDB, its data in a directory) killed with SIGKILL and
// restarted under load: two instances, joins and leaves going on. Users see nothing: counts stay
// exact and live (Redis has them), REST answers are not degraded; /readyz says 503 meanwhile. The
// events wait in the outbox and reach the database once it is back: the history is exact.
func TestDrillDatabaseRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs presenced")
	}
	storagetest.SkipOnServer(t, "it kills and restarts its database, the local engine")
	ts := startPersistentTimescale(t)
	pool := storagetest.Connect(t, ts.dsn(), true)
	c := newDrillCluster(t, 2, 2, pool, nil)
	users := c.seat(6, 12)

	ts.kill()
	down := time.Now()
	var tally restTally
	sources := map[string]int{}
	notReady := 0
	for time.Since(down) < 3*time.Second {
		c.churn(2, users, true)
		c.settle("the database away", 10*time.Second) // counts stay exact: Redis has them
		c.restSample(&tally, sources)
		if resp, err := http.Get(c.procs[0].base + "/readyz"); err == nil {
			if resp.StatusCode == http.StatusServiceUnavailable {
				notReady++
			}
			resp.Body.Close()
		}
	}
	outage := time.Since(down)
	ts.start(t)
	c.churn(6, users, true)
	c.settle("after the restart", 15*time.Second)
	for _, cl := range c.live() {
		cl.close()
	}
	verifyDrillHistory(t, c.pool, c.redisURL, c.prefix, c.rooms, c.clients, 90*time.Second)
	unrecorded := assertAllFinished(t, c.pool, c.rooms, c.clients)
	if tally.failed > 0 || tally.degraded > 0 {
		t.Errorf("REST with the database away: %d failed, %d degraded room answers, want none", tally.failed, tally.degraded)
	}
	if unrecorded != 0 {
		t.Errorf("%d sessions never reached Redis", unrecorded)
	}
	t.Logf("database down %s: counts exact throughout; REST %d answers 200, 0 degraded (sources %v); /readyz 503 in %d probes; "+
		"%d sessions, each one connected and one disconnected in the history after the restart",
		outage.Round(100*time.Millisecond), tally.ok, sources, notReady, len(c.clients))
}

// A client that never reads, in a room with heavy chat: it is cut (slow_consumer) when its send
// queue overflows; the other members get every message and the count drops by one; its session
// has one connected and one disconnected event.
func TestDrillClientNeverReads(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs presenced")
	}
	c := newDrillCluster(t, 2, 1, nil, map[string]string{
		// A chat rate the talker cannot reach: on an idle machine it sends faster than 1,000 a second,
		// and a rate-limited message (refused with rate_limited) is not relayed.
		"WS_SEND_BUFFER": "64", "CHAT_RATE": "1000000", "CHAT_BURST": "10000", "MAX_MESSAGE_BYTES": "4096",
	})
	room := c.rooms[0]
	reader := c.join(0, uuid.New(), room)
	talker := c.join(1, uuid.New(), room)
	slowUser := uuid.New()
	tok, _ := c.auth.Mint(slowUser, handlers.RoleUser, time.Hour)
	slow, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(c.procs[0].base, "http")+"/ws/rooms/"+room.String()+"?access_token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close() // never read
	c.settleCounts(reader, 3, 3)

	// The reader counts the chat it gets, on a connection of its own beside the drill client.
	var got atomic.Int64
	rtok, _ := c.auth.Mint(c.users[reader], handlers.RoleUser, time.Hour)
	rc, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(c.procs[0].base, "http")+"/ws/rooms/"+room.String()+"?access_token="+rtok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	go func() {
		for {
			_, b, err := rc.ReadMessage()
			if err != nil {
				return
			}
			if strings.Contains(string(b), `"type":"message"`) {
				got.Add(1)
			}
		}
	}()
	c.settleCounts(reader, 3, 4)

	text := strings.Repeat("x", 3900)
	sent := 0
	for ; sent < 20000; sent++ {
		if err := talker.conn.WriteJSON(handlers.ClientFrame{Type: handlers.TypeMessage, Text: text}); err != nil {
			t.Fatal(err)
		}
		if sent%50 == 49 {
			// The members that read keep up (they are not slow consumers): the talker waits for
			// the counting reader before the next burst.
			waitFor := time.Now().Add(15 * time.Second)
			for got.Load() < int64(sent+1) && time.Now().Before(waitFor) {
				time.Sleep(5 * time.Millisecond) // polling the reader's count
			}
			if c.sessionsNow(t, room) == 3 {
				break
			}
		}
	}
	c.settleCounts(reader, 2, 3) // the slow client is gone: the reader (two tabs) and the talker
	deadline := time.Now().Add(30 * time.Second)
	for got.Load() < int64(sent+1) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // polling the reader's count
	}
	if n := got.Load(); n != int64(sent+1) {
		t.Errorf("the reading member got %d of %d messages", n, sent+1)
	}
	var conn, disc int
	var reason string
	err = c.pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE event_type = 'connected'),
		count(*) FILTER (WHERE event_type = 'disconnected'), coalesce(max(reason), '')
		FROM presence_events WHERE room_id = $1 AND user_id = $2`, room, slowUser).Scan(&conn, &disc, &reason)
	for ; err == nil && disc == 0 && time.Now().Before(deadline); err = c.pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE event_type = 'connected'),
		count(*) FILTER (WHERE event_type = 'disconnected'), coalesce(max(reason), '')
		FROM presence_events WHERE room_id = $1 AND user_id = $2`, room, slowUser).Scan(&conn, &disc, &reason) {
		time.Sleep(100 * time.Millisecond) // polling the history
	}
	if err != nil || conn != 1 || disc != 1 || reason != "slow_consumer" {
		t.Errorf("history of the slow client: %d connected, %d disconnected, reason %q, %v; want 1, 1, slow_consumer", conn, disc, reason, err)
	}
	t.Logf("a client that never reads: cut as slow_consumer after %d messages of 3.9 KB; the reading member got all %d; counts 3 users/4 sessions -> 2/3",
		sent+1, got.Load())
}

// settleCounts waits until cl was last pushed users and sessions.
func (c *drillCluster) settleCounts(cl *drillClient, users, sessions int64) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		cl.mu.Lock()
		st := cl.last
		cl.mu.Unlock()
		if st.OnlineCount == users && st.SessionCount == sessions {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("counts %d/%d, want %d users, %d sessions", st.OnlineCount, st.SessionCount, users, sessions)
		}
		time.Sleep(20 * time.Millisecond) // polling the client's frames
	}
}

// sessionsNow asks instance 0 for the room's session count.
func (c *drillCluster) sessionsNow(t *testing.T, room uuid.UUID) int64 {
	tok, _ := c.auth.Mint(uuid.New(), handlers.RoleUser, time.Hour)
	req, _ := http.NewRequest(http.MethodGet, c.procs[0].base+"/api/rooms/"+room.String()+"/stats", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		SessionCount int64 `json:"session_count"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return st.SessionCount
}

// 10,000 connect/disconnect cycles as fast as 8 clients can make them, against two instances
// (the connect rate limit raised: one address makes them all). A member watching the room ends
// with its own count; every cycle is one connected and one disconnected event, none twice, and
// sum(online_delta) is the live count. DRILL_CYCLES changes the number.
func TestDrillRapidConnectCycles(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs presenced")
	}
	cycles := 10000
	if v, err := strconv.Atoi(os.Getenv("DRILL_CYCLES")); err == nil && v > 0 {
		cycles = v
	}
	c := newDrillCluster(t, 2, 1, nil, map[string]string{"CONNECT_RATE": "1000000", "CONNECT_BURST": "1000000"})
	room := c.rooms[0]
	watcher := c.join(0, uuid.New(), room)
	const workers = 8
	var degraded, failed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, _ := c.auth.Mint(uuid.New(), handlers.RoleUser, time.Hour)
			url := "ws" + strings.TrimPrefix(c.procs[w%2].base, "http") + "/ws/rooms/" + room.String() + "?access_token=" + tok
			for k := w; k < cycles; k += workers {
				conn, _, err := websocket.DefaultDialer.Dial(url, nil)
				if err != nil {
					failed.Add(1)
					continue
				}
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				for { // the welcome, then the snapshot: the join is done
					var f struct {
						Type string `json:"type"`
						Data struct {
							Degraded bool `json:"degraded"`
						} `json:"data"`
					}
					if err := conn.ReadJSON(&f); err != nil {
						failed.Add(1)
						break
					}
					if f.Type == handlers.TypeOnlineStats {
						if f.Data.Degraded {
							degraded.Add(1)
						}
						break
					}
				}
				_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
				conn.Close()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	c.settleCounts(watcher, 1, 1)
	if failed.Load() > 0 || degraded.Load() > 0 {
		t.Errorf("%d cycles failed, %d snapshots degraded", failed.Load(), degraded.Load())
	}
	// The history: every cycle's session one connected and one disconnected, and the watcher's
	// connected; nothing twice; the deltas sum to the live count, 1.
	var sessions, conns, discs, dup, sum int64
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := c.pool.QueryRow(context.Background(), `SELECT count(DISTINCT session_id),
			count(*) FILTER (WHERE event_type = 'connected'), count(*) FILTER (WHERE event_type = 'disconnected'),
			count(*) - count(DISTINCT event_id), coalesce(sum(online_delta), 0)
			FROM presence_events WHERE room_id = $1 AND event_type <> 'heartbeat'`, room).Scan(&sessions, &conns, &discs, &dup, &sum)
		if err != nil {
			t.Fatal(err)
		}
		if conns == int64(cycles)+1 && discs == int64(cycles) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // polling the history
	}
	if sessions != int64(cycles)+1 || conns != int64(cycles)+1 || discs != int64(cycles) || dup != 0 || sum != 1 {
		t.Errorf("history: %d sessions, %d connected, %d disconnected, %d twice, sum(online_delta) %d; want %d, %d, %d, 0, 1",
			sessions, conns, discs, dup, sum, cycles+1, cycles+1, cycles)
	}
	t.Logf("%d connect/disconnect cycles by %d clients on 2 instances in %s (%.0f/s); 0 failed, 0 degraded; the watcher ends at 1/1; "+
		"history: %d connected, %d disconnected, 0 twice, sum(online_delta) 1", cycles, workers, took.Round(100*time.Millisecond),
		float64(cycles)/took.Seconds(), conns, discs)
}
