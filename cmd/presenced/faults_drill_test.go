package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

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
	tok, _ := c.auth.Mint(uuid.New(), handlers.RoleUser, time.Hour)
	q := make([]string, len(c.rooms))
	for i, r := range c.rooms {
		q[i] = "room_id=" + r.String()
	}
	for i, p := range c.procs {
		if !c.alive[i] {
			continue
		}
		req, _ := http.NewRequest(http.MethodGet, p.base+"/api/rooms/stats?"+strings.Join(q, "&"), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			tally.failed++
			continue
		}
		var body handlers.RoomsStats
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
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
	users := make([]uuid.UUID, 6)
	for i := range users {
		users[i] = uuid.New()
	}
	for k := range 12 {
		c.join(k%2, users[k%len(users)], c.rooms[k%2])
	}
	c.settle("start", 15*time.Second)
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
