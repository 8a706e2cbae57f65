package storage_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"presencestats"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

// startCollector starts a collector on pool with small, test-friendly settings changed by edit,
// and closes it at cleanup.
func startCollector(tb testing.TB, pool *pgxpool.Pool, edit func(*storage.CollectorConfig)) *storage.Collector {
	tb.Helper()
	cfg := storage.CollectorConfig{
		BatchSize:     500,
		FlushInterval: 20 * time.Millisecond,
		Buffer:        5000,
		MinBackoff:    20 * time.Millisecond,
		MaxBackoff:    300 * time.Millisecond,
		WriteTimeout:  5 * time.Second,
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := storage.NewCollector(pool, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(context.Background()) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = c.Close(ctx)
		<-done
	})
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("waiting for %s: timed out after %v (last error: %v)", what, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func countRoomEvents(ctx context.Context, pool *pgxpool.Pool, room uuid.UUID) (int, error) {
	var n int
	err := pool.QueryRow(ctx, `SELECT count(*) FROM presence_events WHERE room_id = $1`, room).Scan(&n)
	return n, err
}

func waitRoomEvents(tb testing.TB, pool *pgxpool.Pool, room uuid.UUID, want int, timeout time.Duration) {
	tb.Helper()
	ctx := context.Background()
	var got int
	waitFor(tb, timeout, fmt.Sprintf("%d events in room %s", want, room), func() (bool, error) {
		var err error
		got, err = countRoomEvents(ctx, pool, room)
		return got >= want, err
	})
	if got != want {
		tb.Fatalf("events in room: got %d, want %d", got, want)
	}
}

// sessionEvents returns a connect, heartbeats every 5 minutes and a disconnect for one session
// of one user alone in room from start for d.
func sessionEvents(room, user uuid.UUID, start time.Time, d time.Duration) []presencestats.PresenceEvent {
	session := uuid.New()
	evs := []presencestats.PresenceEvent{{
		EventID: uuid.New(), TS: start, RoomID: room, UserID: user, SessionID: session,
		Type: presencestats.EventConnected, OnlineAfter: 1, OnlineDelta: 1,
	}}
	for t := start.Add(5 * time.Minute); t.Before(start.Add(d)); t = t.Add(5 * time.Minute) {
		evs = append(evs, presencestats.PresenceEvent{
			EventID: uuid.New(), TS: t, RoomID: room, UserID: user, SessionID: session,
			Type: presencestats.EventHeartbeat, OnlineAfter: 1,
		})
	}
	return append(evs, presencestats.PresenceEvent{
		EventID: uuid.New(), TS: start.Add(d), RoomID: room, UserID: user, SessionID: session,
		Type: presencestats.EventDisconnected, OnlineAfter: 0, OnlineDelta: -1,
		SessionSeconds: d.Seconds(), Reason: presencestats.ReasonClosed,
	})
}

func TestCollectorPersistsEventOnce(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.SharedDatabase(t)
	c := startCollector(t, pool, nil)
	room := uuid.New()
	want := presencestats.PresenceEvent{
		EventID: uuid.New(), TS: time.Now().UTC().Truncate(time.Microsecond), RoomID: room,
		UserID: uuid.New(), SessionID: uuid.New(), Type: presencestats.EventDisconnected,
		OnlineAfter: 3, OnlineDelta: -1, SessionSeconds: 12.5, Reason: presencestats.ReasonTimeout,
		UserIP: netip.MustParseAddr("192.0.2.7"), UserAgent: "test-agent/1.0",
	}
	if err := c.Record(want); err != nil {
		t.Fatal(err)
	}
	waitRoomEvents(t, pool, room, 1, 10*time.Second)
	// The same event again (a retried or replayed batch) is a no-op.
	if err := c.Record(want); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "second batch written", func() (bool, error) { return c.Counts().Written >= 2, nil })

	var got presencestats.PresenceEvent
	var typ, ip string
	var seconds float64
	err := pool.QueryRow(ctx, `
		SELECT event_id, ts, room_id, user_id, session_id, event_type, online_after, online_delta,
		       session_seconds, reason, host(user_ip), user_agent
		FROM presence_events WHERE room_id = $1`, room).Scan(
		&got.EventID, &got.TS, &got.RoomID, &got.UserID, &got.SessionID, &typ, &got.OnlineAfter,
		&got.OnlineDelta, &seconds, &got.Reason, &ip, &got.UserAgent)
	if err != nil {
		t.Fatal(err)
	}
	got.Type, got.SessionSeconds, got.UserIP = presencestats.EventType(typ), seconds, netip.MustParseAddr(ip)
	got.TS = got.TS.UTC()
	if got != want {
		t.Fatalf("stored event:\n got  %+v\n want %+v", got, want)
	}
	if n, _ := countRoomEvents(ctx, pool, room); n != 1 {
		t.Fatalf("rows after a replay: got %d, want 1", n)
	}
}

func TestCollectorRejectsMalformedEvents(t *testing.T) {
	pool := storagetest.SharedDatabase(t)
	c := startCollector(t, pool, nil)
	good := presencestats.PresenceEvent{
		EventID: uuid.New(), TS: time.Now(), RoomID: uuid.New(), UserID: uuid.New(), SessionID: uuid.New(),
		Type: presencestats.EventConnected, OnlineAfter: 1, OnlineDelta: 1,
	}
	for _, tc := range []struct {
		name string
		edit func(*presencestats.PresenceEvent)
	}{
		{"unknown type", func(e *presencestats.PresenceEvent) { e.Type = "joined" }},
		{"zero room", func(e *presencestats.PresenceEvent) { e.RoomID = uuid.Nil }},
		{"zero event id", func(e *presencestats.PresenceEvent) { e.EventID = uuid.Nil }},
		{"no time", func(e *presencestats.PresenceEvent) { e.TS = time.Time{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := good
			tc.edit(&ev)
			err := c.Record(ev)
			if got, want := presencestats.ErrorCode(err), presencestats.EINVALID; got != want {
				t.Fatalf("Record: got code %q (%v), want %q", got, err, want)
			}
		})
	}
	if got := c.Counts().Recorded; got != 0 {
		t.Fatalf("recorded: got %d, want 0", got)
	}
}

func TestCollectorConcurrentRecords(t *testing.T) {
	pool := storagetest.SharedDatabase(t)
	c := startCollector(t, pool, nil)
	room := uuid.New()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- c.Record(presencestats.PresenceEvent{
				EventID: uuid.New(), TS: time.Now(), RoomID: room, UserID: uuid.New(), SessionID: uuid.New(),
				Type: presencestats.EventConnected, OnlineAfter: i + 1, OnlineDelta: 1,
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	waitRoomEvents(t, pool, room, 100, 10*time.Second)
}

func TestCollectorRecordAfterClose(t *testing.T) {
	pool := storagetest.SharedDatabase(t)
	c, err := storage.NewCollector(pool, storage.CollectorConfig{})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Run(context.Background()) }()
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	err = c.Record(presencestats.PresenceEvent{
		EventID: uuid.New(), TS: time.Now(), RoomID: uuid.New(), UserID: uuid.New(), SessionID: uuid.New(),
		Type: presencestats.EventHeartbeat,
	})
	if got, want := presencestats.ErrorCode(err), presencestats.EUNAVAILABLE; got != want {
		t.Fatalf("Record after Close: got %q (%v), want %q", got, err, want)
	}
}

// outageEvents returns n heartbeat events in one room.
func outageEvents(room uuid.UUID, n int) []presencestats.PresenceEvent {
	base := time.Now().UTC()
	evs := make([]presencestats.PresenceEvent, n)
	for i := range evs {
		evs[i] = presencestats.PresenceEvent{
			EventID: uuid.New(), TS: base.Add(time.Duration(i) * time.Millisecond), RoomID: room,
			UserID: uuid.New(), SessionID: uuid.New(), Type: presencestats.EventHeartbeat, OnlineAfter: 1,
		}
	}
	return evs
}

// TestCollectorOutage: 20,000 events recorded while the database is down (four times the memory
// buffer) are all stored exactly once when it is back; with the service restarted during the
// outage too (the second collector replays the first one's spool at start).
func TestCollectorOutage(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			ctx := context.Background()
			ts := storagetest.StartTimescale(t, 0)
			pool := storagetest.Connect(t, ts.DSN(), true)
			spoolDir := t.TempDir()
			edit := func(cfg *storage.CollectorConfig) { cfg.SpoolDir = spoolDir }
			c := startCollector(t, pool, edit)
			ts.Stop()

			room := uuid.New()
			const n = 20000
			for _, ev := range outageEvents(room, n) {
				if err := c.Record(ev); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, 30*time.Second, "overflow spooled", func() (bool, error) { return c.Counts().Spooled >= n-5000-500, nil })
			if restart {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				if err := c.Close(cctx); err != nil {
					t.Fatal(err)
				}
				if got := c.Counts().Spooled; got != n {
					t.Fatalf("spooled after close during the outage: got %d, want %d", got, n)
				}
				c = startCollector(t, pool, edit) // the service restarted, still during the outage
			}
			// The database comes back (empty, as a fresh instance) and is migrated.
			ts2 := storagetest.StartTimescale(t, ts.Port)
			pool2 := storagetest.Connect(t, ts2.DSN(), true)
			waitRoomEvents(t, pool2, room, n, 60*time.Second)
			waitFor(t, 10*time.Second, "spool replayed", func() (bool, error) { return c.Counts().Replayed > 0, nil })
			var distinct int
			if err := pool2.QueryRow(ctx, `SELECT count(DISTINCT event_id) FROM presence_events WHERE room_id = $1`, room).Scan(&distinct); err != nil {
				t.Fatal(err)
			}
			if distinct != n {
				t.Fatalf("distinct events: got %d, want %d", distinct, n)
			}
			if got := c.Counts().Dropped; got != 0 {
				t.Fatalf("dropped: got %d, want 0", got)
			}
		})
	}
}

// TestCollectorOutageSpoolsAtOnce: while the database is down, every event goes to the spool as
// it comes (the batch the writer held included), not only what memory cannot hold, so that a
// crash during an outage loses only its last moments. Then the spool is replayed.
func TestCollectorOutageSpoolsAtOnce(t *testing.T) {
	ts := storagetest.StartTimescale(t, 0)
	pool := storagetest.Connect(t, ts.DSN(), true)
	c := startCollector(t, pool, func(cfg *storage.CollectorConfig) {
		cfg.SpoolDir, cfg.Buffer, cfg.BatchSize, cfg.WriteTimeout = t.TempDir(), 5000, 10, time.Second
	})
	ts.Stop()
	room := uuid.New()
	events := outageEvents(room, 60)
	for _, ev := range events[:25] {
		if err := c.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	// Far fewer than Buffer, yet all spooled once the writer has found the database down.
	waitFor(t, 30*time.Second, "the first 25 events spooled", func() (bool, error) { return c.Counts().Spooled == 25, nil })
	for _, ev := range events[25:] {
		if err := c.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "events recorded during the outage spooled", func() (bool, error) { return c.Counts().Spooled == 60, nil })
	ts2 := storagetest.StartTimescale(t, ts.Port)
	pool2 := storagetest.Connect(t, ts2.DSN(), true)
	waitRoomEvents(t, pool2, room, 60, 60*time.Second)
	if got := c.Counts(); got.Dropped != 0 || got.Replayed != 60 {
		t.Fatalf("counts %+v: want 60 replayed, none dropped", got)
	}
}

func TestCollectorDropsOldestWithoutSpool(t *testing.T) {
	ts := storagetest.StartTimescale(t, 0)
	pool := storagetest.Connect(t, ts.DSN(), false)
	ts.Stop()
	c := startCollector(t, pool, func(cfg *storage.CollectorConfig) { cfg.Buffer = 1000 })
	for _, ev := range outageEvents(uuid.New(), 3000) {
		if err := c.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	// The writer holds one batch while it retries; memory keeps Buffer; the rest is dropped.
	if got := c.Counts().Dropped; got < 1000 || got > 2000 {
		t.Fatalf("dropped: got %d, want between 1000 and 2000", got)
	}
}

// TestCollectorSpoolTornTail: a spool whose last frame was cut by a crash is replayed up to the
// damage; the damaged tail, never acknowledged, is dropped.
func TestCollectorSpoolTornTail(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.NewDatabase(t)
	spoolDir := t.TempDir()
	down := storagetest.Connect(t, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&pool_max_conns=1&connect_timeout=1", storagetest.FreePort(t)), false)
	c, err := storage.NewCollector(down, storage.CollectorConfig{BatchSize: 100, SpoolDir: spoolDir, MinBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Run(ctx) }()
	room := uuid.New()
	for _, ev := range outageEvents(room, 250) {
		if err := c.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Close(cctx); err != nil { // the database is unreachable: everything is spooled
		t.Fatal(err)
	}
	if got := c.Counts().Spooled; got != 250 {
		t.Fatalf("spooled: got %d, want 250", got)
	}
	// A crash in the middle of appending one more frame.
	f, err := os.OpenFile(filepath.Join(spoolDir, "presence-events.spool"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{0, 0, 1, 0, 0xde, 0xad, '[', '{'}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c2 := startCollector(t, pool, func(cfg *storage.CollectorConfig) { cfg.SpoolDir = spoolDir })
	waitRoomEvents(t, pool, room, 250, 30*time.Second)
	waitFor(t, 10*time.Second, "spool replayed", func() (bool, error) { return c2.Counts().Replayed == 250, nil })
}

// TestCollectorSpoolFull: past SPOOL_MAX_BYTES the oldest events are dropped and counted.
func TestCollectorSpoolFull(t *testing.T) {
	down := storagetest.Connect(t, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&pool_max_conns=1&connect_timeout=1", storagetest.FreePort(t)), false)
	c := startCollector(t, down, func(cfg *storage.CollectorConfig) {
		cfg.Buffer, cfg.BatchSize, cfg.SpoolDir, cfg.SpoolMaxBytes = 100, 100, t.TempDir(), 64<<10
	})
	for _, ev := range outageEvents(uuid.New(), 2000) {
		if err := c.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "overflow spooled or dropped", func() (bool, error) {
		n := c.Counts()
		return n.Spooled+n.Dropped >= 2000-200, nil
	})
	if n := c.Counts(); n.Spooled == 0 || n.Dropped == 0 {
		t.Fatalf("spool of 64 KiB: spooled %d, dropped %d; want some of each", n.Spooled, n.Dropped)
	}
}

// TestCollectorCloseWithHungDatabase: a database that accepts connections and never answers
// cannot keep the buffered events from being spooled at shutdown.
func TestCollectorCloseWithHungDatabase(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close() // hold it open, say nothing
		}
	}()
	hung := storagetest.Connect(t, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable&pool_max_conns=1", l.Addr()), false)
	c, err := storage.NewCollector(hung, storage.CollectorConfig{BatchSize: 10, SpoolDir: t.TempDir(), WriteTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Run(context.Background()) }()
	for _, ev := range outageEvents(uuid.New(), 50) {
		if err := c.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_ = c.Close(ctx) // may report the missed deadline; what matters is that nothing is lost
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if n := c.Counts(); n.Spooled != 50 || n.Dropped != 0 {
		t.Fatalf("after Close: spooled %d, dropped %d; want 50, 0", n.Spooled, n.Dropped)
	}
}

// TestCollectorStoresAnyText: a User-Agent that is not valid UTF-8, cut inside a character or
// holding a NUL byte (text PostgreSQL refuses) is stored with U+FFFD in place of the bad bytes,
// and the other events of its batch are stored with it.
func TestCollectorStoresAnyText(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.SharedDatabase(t)
	c := startCollector(t, pool, func(cfg *storage.CollectorConfig) { cfg.FlushInterval = time.Hour; cfg.BatchSize = 4 })
	room := uuid.New()
	agents := map[string]string{
		"curl \xff\xfe":       "curl \uFFFD", // a run of bad bytes becomes one U+FFFD
		"Mozilla \xc3":        "Mozilla \uFFFD",
		"nul\x00byte":         "nul\uFFFDbyte",
		"plain agent/1.0 (é)": "plain agent/1.0 (é)",
	}
	want := map[uuid.UUID]string{}
	for sent, stored := range agents {
		ev := presencestats.PresenceEvent{
			EventID: uuid.New(), TS: time.Now(), RoomID: room, UserID: uuid.New(), SessionID: uuid.New(),
			Type: presencestats.EventConnected, OnlineAfter: 1, OnlineDelta: 1, UserAgent: sent,
		}
		want[ev.EventID] = stored
		if err := c.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	waitRoomEvents(t, pool, room, len(agents), 10*time.Second)
	rows, err := pool.Query(ctx, `SELECT event_id, user_agent FROM presence_events WHERE room_id = $1`, room)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var agent string
		if err := rows.Scan(&id, &agent); err != nil {
			t.Fatal(err)
		}
		if agent != want[id] {
			t.Errorf("user_agent of %s: got %q, want %q", id, agent, want[id])
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if got := c.Counts().Dropped; got != 0 {
		t.Fatalf("dropped: got %d, want 0", got)
	}
}

// TestCollectorDropsOnlyRejectedEvents: when the database refuses some events of a batch as
// invalid data (here a trigger refuses one user agent), those alone are dropped and counted;
// the rest of the batch is stored.
func TestCollectorDropsOnlyRejectedEvents(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.NewDatabase(t) // its own: the trigger must not reach other tests
	if _, err := pool.Exec(ctx, `
CREATE FUNCTION test_refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.user_agent = 'poison' THEN
        RAISE EXCEPTION 'poisoned event' USING ERRCODE = '22023';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_refuse_poison BEFORE INSERT ON presence_events
    FOR EACH ROW EXECUTE FUNCTION test_refuse_poison();`); err != nil {
		t.Fatal(err)
	}
	const n = 37
	c := startCollector(t, pool, func(cfg *storage.CollectorConfig) { cfg.FlushInterval = time.Hour; cfg.BatchSize = n })
	room := uuid.New()
	for i := range n {
		agent := "fine"
		if i == 5 || i == 30 {
			agent = "poison"
		}
		if err := c.Record(presencestats.PresenceEvent{
			EventID: uuid.New(), TS: time.Now(), RoomID: room, UserID: uuid.New(), SessionID: uuid.New(),
			Type: presencestats.EventHeartbeat, OnlineAfter: 1, UserAgent: agent,
		}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "the batch sorted", func() (bool, error) { return c.Counts().Dropped == 2, nil })
	waitRoomEvents(t, pool, room, n-2, 10*time.Second)
	var poisoned int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM presence_events WHERE user_agent = 'poison'`).Scan(&poisoned); err != nil {
		t.Fatal(err)
	}
	if poisoned != 0 {
		t.Fatalf("poisoned events stored: %d", poisoned)
	}
	if got := c.Counts().Written; got != n-2 {
		t.Fatalf("written: got %d, want %d", got, n-2)
	}
}
