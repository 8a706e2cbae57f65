package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"presencestats"
	"presencestats/handlers"
	"presencestats/storage/storagetest"
)

// The rolling-restart drill of issue 12: clients spread over three `presenced` processes that
// share Redis and the database; each instance in turn is stopped with SIGTERM and started again,
// and its clients reconnect to another instance with ?resume=<session_id>. Every client measures
// the online_count it is shown (the room's size never changes, so any lower count is a dip), the
// pushes it gets and whether each reconnect resumed; the history must hold, per session, exactly
// the connected of its start and the disconnected of its end (no fake session end, no new
// session), with session_seconds spanning the whole stay. A few clients do not come back after
// the first stop: their sessions end once, after RESUME_WINDOW, with reason server_shutdown.
//
// ROLLING_RESTART_CLIENTS sets the number of clients (default 300; docs/realtime.md, "Rolling
// restarts", has the figures and the command).
func TestRollingRestartDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs presenced")
	}
	clients := 300
	if v := os.Getenv("ROLLING_RESTART_CLIENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 3 {
			t.Fatalf("ROLLING_RESTART_CLIENTS=%q: want a number of at least 3", v)
		}
		clients = n
	}
	const (
		instances = 3
		rooms     = 10
		quitters  = 3 // clients of instance 0 that do not come back after its stop
	)
	dsn := storagetest.FreshDatabase(t)
	pool := storagetest.Connect(t, dsn, true)
	env := map[string]string{
		"JWT_SECRET": killTestSecret, "REDIS_URL": storagetest.RedisURL(t), "REDIS_KEY_PREFIX": storagetest.KeyPrefix(t),
		"DATABASE_URL": dsn, "PRESENCE_TTL": "20s", "SWEEP_INTERVAL": "500ms", "STATS_PUSH_INTERVAL": "100ms",
		"EVENT_FLUSH_INTERVAL": "200ms", "CONNECT_BURST": "100000", "CONNECT_RATE": "100000",
		// RESUME_WINDOW: its default, 10 s.
	}
	bin := buildPresenced(t)
	d := &restartDrill{t: t, up: make([]bool, instances), bases: make([]string, instances)}
	procs := make([]*presencedProcess, instances)
	for i := range procs {
		procs[i] = startPresenced(t, bin, env)
		d.setInstance(i, procs[i].base, true)
	}
	auth := handlers.NewTokenAuthority(killTestSecret)
	roomIDs := make([]uuid.UUID, rooms)
	for i := range roomIDs {
		roomIDs[i] = uuid.New()
	}
	quitRoom := uuid.New()
	var all []*restartClient
	for i := range clients + quitters {
		room, expect, inst := roomIDs[i%rooms], int64(clients/rooms), i%instances
		if i%rooms < clients%rooms {
			expect++
		}
		quit := i >= clients
		if quit {
			room, expect, inst = quitRoom, quitters, 0
		}
		tok, err := auth.Mint(uuid.New(), handlers.RoleUser, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c := &restartClient{d: d, room: room, token: tok, expect: expect, quit: quit, done: make(chan struct{})}
		all = append(all, c)
		go c.run(inst)
	}
	t.Cleanup(func() {
		for _, c := range all {
			c.stop()
		}
	})
	d.eventually("every client shown its room's full count", 60*time.Second, func() bool {
		for _, c := range all {
			if id, inst, last := c.state(); id == uuid.Nil || inst < 0 || last != c.expect {
				return false
			}
		}
		return true
	})
	start := time.Now()
	d.phase.Store(phaseRestarts)
	for k := range instances {
		d.setInstance(k, "", false) // reconnects go elsewhere
		if err := procs[k].cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-procs[k].done:
		case <-time.After(30 * time.Second):
			t.Fatalf("instance %d did not stop within 30 s of SIGTERM", k)
		}
		d.eventually(fmt.Sprintf("instance %d's clients back on the others", k), 30*time.Second, func() bool {
			for _, c := range all {
				if _, inst, last := c.state(); !c.quit && (inst < 0 || inst == k || last != c.expect) {
					return false
				}
			}
			return true
		})
		procs[k] = startPresenced(t, bin, env)
		d.setInstance(k, procs[k].base, true)
	}
	took := time.Since(start)
	// The baseline: as long again with no restart. Every instance confirms its rooms' unchanged
	// counts to its members after each heartbeat round (PRESENCE_TTL/3): those pushes happen with
	// or without restarts.
	d.phase.Store(phaseQuiet)
	time.Sleep(took) // a measurement window, not a wait for an effect
	d.phase.Store(phaseNone)

	// Figures.
	var maxDip, pushes, maxPushes, quiet, changes, resumes, fresh int64
	for _, c := range all {
		c.mu.Lock()
		if !c.quit {
			maxDip = max(maxDip, c.dip)
			pushes += c.pushes
			maxPushes = max(maxPushes, c.pushes)
			quiet += c.quietPushes
			changes += c.changes
		}
		resumes += c.resumed
		fresh += c.fresh
		c.mu.Unlock()
	}
	if maxDip != 0 {
		t.Errorf("maximum dip of online_count seen by a client: %d, want 0", maxDip)
	}
	if changes != 0 {
		t.Errorf("clients were shown %d changes of their room's count, want none (the rooms did not change)", changes)
	}
	if fresh != 0 {
		t.Errorf("%d reconnects were new sessions, want every one resumed", fresh)
	}
	if resumes < int64(clients) {
		t.Errorf("%d resumes, want at least one per client (%d)", resumes, clients)
	}

	// The history: close every client (one disconnected, reason closed, each), wait for the
	// quitters' expiry, and check every session's events.
	for _, c := range all {
		c.stop()
	}
	sessions := make(map[uuid.UUID]*restartClient, len(all))
	for _, c := range all {
		id, _, _ := c.state()
		sessions[id] = c
	}
	var evs map[uuid.UUID][]drillEvent
	d.eventually("every session's end in the history", 60*time.Second, func() bool {
		evs = restartHistory(t, pool, append(roomIDs, quitRoom))
		for id := range sessions {
			if n := len(evs[id]); n < 2 {
				return false
			}
		}
		return true
	})
	var written = map[string]int{}
	for id, list := range evs {
		c := sessions[id]
		for _, ev := range list {
			written[ev.typ]++
		}
		if c == nil {
			t.Errorf("session %s in the history is no client's first session: %+v", id, list)
			continue
		}
		want := presencestats.ReasonClosed
		if c.quit {
			want = presencestats.ReasonServerShutdown
		}
		var conn, disc []drillEvent
		for _, ev := range list {
			switch ev.typ {
			case "connected":
				conn = append(conn, ev)
			case "disconnected":
				disc = append(disc, ev)
			}
		}
		if len(conn) != 1 || len(disc) != 1 || disc[0].reason != want {
			t.Errorf("session %s (quitter %v): %+v, want one connected and one disconnected (%s)", id, c.quit, list, want)
			continue
		}
		if span := disc[0].ts.Sub(conn[0].ts).Seconds(); disc[0].seconds < span-0.001 || disc[0].seconds > span+0.001 {
			t.Errorf("session %s: session_seconds %.3f, want %.3f (the whole stay)", id, disc[0].seconds, span)
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("rolling restart of %d instances, %d clients in %d rooms (+%d that do not come back): "+
		"took %s; max online_count dip seen by any client %d; online_stats pushes per client during the restarts %.2f (max %d), "+
		"of them changing the count shown %d, and %.2f per client in as long without restarts; "+
		"resumes %d, new sessions on reconnect %d; events in the history for the drill's rooms: %v "+
		"(connected and disconnected: one per session, from its own start and end); load average %s",
		instances, clients, rooms, quitters, took.Round(time.Millisecond), maxDip, float64(pushes)/float64(clients), maxPushes,
		changes, float64(quiet)/float64(clients), resumes, fresh, written, strings.TrimSpace(string(load)))
}

// restartDrill is the drill's view of the instances: which are up, at which address.
type restartDrill struct {
	t     *testing.T
	mu    sync.Mutex
	up    []bool
	bases []string
	phase atomic.Int32 // what the clients measure now
}

const (
	phaseNone     = iota
	phaseRestarts // the rolling restart: dips, pushes, changes
	phaseQuiet    // the baseline after it: pushes
)

func (d *restartDrill) setInstance(i int, base string, up bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.up[i] = up
	if base != "" {
		d.bases[i] = base
	}
}

// pick returns an instance that is up, other than not (-1: any), at random.
func (d *restartDrill) pick(not int) (int, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ok []int
	for i, up := range d.up {
		if up && i != not {
			ok = append(ok, i)
		}
	}
	if len(ok) == 0 {
		return -1, ""
	}
	i := ok[rand.IntN(len(ok))]
	return i, d.bases[i]
}

func (d *restartDrill) base(i int) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.bases[i]
}

func (d *restartDrill) eventually(what string, within time.Duration, cond func() bool) {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			d.t.Fatalf("no %s within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond) // polling the clients
	}
}

// restartClient is one user's WebSocket: after a 1012 close it reconnects to another instance
// with ?resume=, with jittered exponential backoff while no instance answers.
type restartClient struct {
	d      *restartDrill
	room   uuid.UUID
	token  string
	expect int64 // the room's online_count: it never changes during the drill
	quit   bool  // does not come back after a restart

	mu       sync.Mutex
	id       uuid.UUID // the session, from the first welcome
	inst     int       // instance of the current connection once welcomed, -1 between connections
	last     int64     // the last online_count shown
	snapshot bool      // the next online_stats is the snapshot after a welcome
	dip      int64     // during the restarts: the largest expect - online_count shown
	pushes   int64     // during the restarts: online_stats other than snapshots
	changes  int64     // during the restarts: online_stats (snapshots too) with another count than the last
	// quietPushes: online_stats other than snapshots during the baseline
	quietPushes int64
	resumed     int64 // reconnects that resumed
	fresh       int64 // reconnects that made a new session
	conn        *websocket.Conn
	stopped     bool
	done        chan struct{}
}

func (c *restartClient) state() (uuid.UUID, int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id, c.inst, c.last
}

func (c *restartClient) run(inst int) {
	defer close(c.done)
	base := c.d.base(inst)
	backoff := 50 * time.Millisecond
	for {
		c.mu.Lock()
		if c.stopped {
			c.mu.Unlock()
			return
		}
		url := "ws" + strings.TrimPrefix(base, "http") + "/ws/rooms/" + c.room.String() + "?access_token=" + c.token
		if c.id != uuid.Nil {
			url += "&resume=" + c.id.String()
		}
		c.mu.Unlock()
		conn, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			// Jittered exponential backoff, then another instance.
			time.Sleep(backoff/2 + rand.N(backoff/2)) // the client's backoff, not a wait for an effect
			backoff = min(2*backoff, time.Second)
			if inst, base = c.d.pick(inst); inst < 0 {
				inst, base = c.d.pick(-1)
			}
			continue
		}
		backoff = 50 * time.Millisecond
		c.mu.Lock()
		if c.stopped {
			c.mu.Unlock()
			conn.Close()
			return
		}
		c.conn = conn
		c.mu.Unlock()
		code := c.read(conn, inst)
		c.mu.Lock()
		c.inst, c.conn = -1, nil
		stop := c.stopped || c.quit
		c.mu.Unlock()
		if stop {
			return
		}
		if code != handlers.CloseServiceRestart {
			c.d.t.Errorf("client closed with %d, want %d (service restart)", code, handlers.CloseServiceRestart)
		}
		if inst, base = c.d.pick(inst); inst < 0 {
			inst, base = c.d.pick(-1)
		}
	}
}

// read reads frames until the connection ends and returns its close code (-1: no close frame).
func (c *restartClient) read(conn *websocket.Conn, inst int) int {
	for {
		_, b, err := conn.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return ce.Code
			}
			return -1
		}
		var f struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		if json.Unmarshal(b, &f) != nil {
			continue
		}
		c.mu.Lock()
		switch f.Type {
		case handlers.TypeWelcome:
			var w handlers.WelcomeData
			if json.Unmarshal(f.Data, &w) == nil {
				switch {
				case c.id == uuid.Nil:
					c.id = w.SessionID
				case w.Resumed && w.SessionID == c.id:
					c.resumed++
				default:
					c.fresh++
					c.id = w.SessionID
				}
				c.inst, c.snapshot = inst, true
			}
		case handlers.TypeOnlineStats:
			var st presencestats.OnlineStats
			if json.Unmarshal(f.Data, &st) == nil {
				switch c.d.phase.Load() {
				case phaseRestarts:
					c.dip = max(c.dip, c.expect-st.OnlineCount)
					if !c.snapshot {
						c.pushes++
					}
					if st.OnlineCount != c.last {
						c.changes++
					}
				case phaseQuiet:
					if !c.snapshot {
						c.quietPushes++
					}
				}
				c.last = st.OnlineCount
				c.snapshot = false
			}
		}
		c.mu.Unlock()
	}
}

// stop closes the client's connection normally (a leave) and waits for its loop to end.
func (c *restartClient) stop() {
	c.mu.Lock()
	c.stopped = true
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		_ = conn.Close()
	}
	<-c.done
}

type drillEvent struct {
	typ, reason string
	ts          time.Time
	seconds     float64
}

// restartHistory returns the events of rooms by session.
func restartHistory(t *testing.T, pool *pgxpool.Pool, rooms []uuid.UUID) map[uuid.UUID][]drillEvent {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT session_id, event_type, coalesce(reason, ''), ts, coalesce(session_seconds, 0)
		FROM presence_events WHERE room_id = ANY($1) ORDER BY ts`, rooms)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[uuid.UUID][]drillEvent{}
	for rows.Next() {
		var id uuid.UUID
		var ev drillEvent
		if err := rows.Scan(&id, &ev.typ, &ev.reason, &ev.ts, &ev.seconds); err != nil {
			t.Fatal(err)
		}
		out[id] = append(out[id], ev)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
