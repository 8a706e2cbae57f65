package storage_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"presencestats"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

// newCollector returns a collector on pool with small, test-friendly settings changed by edit.
func newCollector(tb testing.TB, pool *pgxpool.Pool, edit func(*storage.CollectorConfig)) *storage.Collector {
	tb.Helper()
	cfg := storage.CollectorConfig{
		BatchSize:    500,
		MinBackoff:   20 * time.Millisecond,
		MaxBackoff:   300 * time.Millisecond,
		WriteTimeout: 5 * time.Second,
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := storage.NewCollector(pool, cfg)
	if err != nil {
		tb.Fatal(err)
	}
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

// heartbeatEvents returns n heartbeat events in one room.
func heartbeatEvents(room uuid.UUID, n int) []presencestats.PresenceEvent {
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

// TestCollectorWritesEventOnce: an event is stored with every field, and writing it again (a
// redelivered or claimed outbox entry, a spool frame replayed twice) is a no-op.
func TestCollectorWritesEventOnce(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.SharedDatabase(t)
	c := newCollector(t, pool, nil)
	room := uuid.New()
	want := presencestats.PresenceEvent{
		EventID: uuid.New(), TS: time.Now().UTC().Truncate(time.Microsecond), RoomID: room,
		UserID: uuid.New(), SessionID: uuid.New(), Type: presencestats.EventDisconnected,
		OnlineAfter: 3, OnlineDelta: -1, SessionSeconds: 12.5, Reason: presencestats.ReasonTimeout,
		UserIP: netip.MustParseAddr("192.0.2.7"), UserAgent: "test-agent/1.0",
	}
	for range 2 {
		if err := c.WriteEvents(ctx, []presencestats.PresenceEvent{want}); err != nil {
			t.Fatal(err)
		}
	}
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
		t.Fatalf("rows after writing the event twice: got %d, want 1", n)
	}
	if got := c.Counts(); got.Written != 2 || got.Dropped != 0 {
		t.Fatalf("counts %+v: want 2 written (one a no-op), none dropped", got)
	}
}

// TestCollectorWritesInBatches: one WriteEvents call of more than EVENT_BATCH_SIZE events (the
// outbox hands over what one read of every shard returned) is sent as INSERTs of at most
// EVENT_BATCH_SIZE each, so that no statement grows with the number of busy shards.
func TestCollectorWritesInBatches(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.SharedDatabase(t)
	reg := prometheus.NewRegistry()
	c := newCollector(t, pool, func(cfg *storage.CollectorConfig) { cfg.BatchSize, cfg.Registerer = 100, reg })
	room := uuid.New()
	if err := c.WriteEvents(ctx, heartbeatEvents(room, 250)); err != nil {
		t.Fatal(err)
	}
	if n, err := countRoomEvents(ctx, pool, room); err != nil || n != 250 {
		t.Fatalf("events stored: %d (%v), want 250", n, err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != "presence_event_batch_size" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() != 3 || h.GetSampleSum() != 250 {
			t.Fatalf("INSERTs: %d of %v events in all, want 3 (100, 100, 50)", h.GetSampleCount(), h.GetSampleSum())
		}
		return
	}
	t.Fatal("presence_event_batch_size is not exported")
}

// TestCollectorStoresAnyText: a User-Agent that is not valid UTF-8, cut inside a character or
// holding a NUL byte (text PostgreSQL refuses) is stored with U+FFFD in place of the bad bytes,
// and the other events of its batch are stored with it.
func TestCollectorStoresAnyText(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.SharedDatabase(t)
	c := newCollector(t, pool, nil)
	room := uuid.New()
	agents := map[string]string{
		"curl \xff\xfe":       "curl \uFFFD", // a run of bad bytes becomes one U+FFFD
		"Mozilla \xc3":        "Mozilla \uFFFD",
		"nul\x00byte":         "nul\uFFFDbyte",
		"plain agent/1.0 (é)": "plain agent/1.0 (é)",
	}
	want := map[uuid.UUID]string{}
	var events []presencestats.PresenceEvent
	for sent, stored := range agents {
		ev := presencestats.PresenceEvent{
			EventID: uuid.New(), TS: time.Now(), RoomID: room, UserID: uuid.New(), SessionID: uuid.New(),
			Type: presencestats.EventConnected, OnlineAfter: 1, OnlineDelta: 1, UserAgent: sent,
		}
		want[ev.EventID] = stored
		events = append(events, ev)
	}
	if err := c.WriteEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT event_id, user_agent FROM presence_events WHERE room_id = $1`, room)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id uuid.UUID
		var agent string
		if err := rows.Scan(&id, &agent); err != nil {
			t.Fatal(err)
		}
		n++
		if agent != want[id] {
			t.Errorf("user_agent of %s: got %q, want %q", id, agent, want[id])
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(agents) {
		t.Fatalf("events stored: got %d, want %d", n, len(agents))
	}
	if got := c.Counts().Dropped; got != 0 {
		t.Fatalf("dropped: got %d, want 0", got)
	}
}

// TestCollectorReplaysOldSpool: a spool an earlier version left (three frames and a tail torn by
// a crash while appending) waits while the database is unreachable and stays on disk when the
// replay is stopped (a shutdown); at the next start it is replayed into the database up to the
// damage, each event once although some were written before (a replay cut short after a write),
// and the file is emptied, so a third start replays nothing.
func TestCollectorReplaysOldSpool(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.SharedDatabase(t)
	dir := t.TempDir()
	room := uuid.New()
	events := heartbeatEvents(room, 250)
	if err := storage.WriteSpool(dir, events[:100], events[100:200], events[200:]); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "presence-events.spool")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{0, 0, 1, 0, 0xde, 0xad, '[', '{'}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	whole, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}

	down := storagetest.Connect(t, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&pool_max_conns=1&connect_timeout=1", storagetest.FreePort(t)), false)
	c := newCollector(t, down, func(cfg *storage.CollectorConfig) { cfg.SpoolDir = dir; cfg.MinBackoff = 10 * time.Millisecond })
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	err = c.ReplaySpool(sctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("replay with the database unreachable: got %v, want the context's deadline", err)
	}
	if fi, err := os.Stat(path); err != nil {
		t.Fatal(err)
	} else if fi.Size() != whole.Size()-8 {
		t.Fatalf("spool after a replay that could not write: %d bytes, want the three whole frames (%d)", fi.Size(), whole.Size()-8)
	}

	c = newCollector(t, pool, func(cfg *storage.CollectorConfig) { cfg.SpoolDir = dir; cfg.BatchSize = 64 })
	if err := c.WriteEvents(ctx, events[:30]); err != nil { // replayed before a crash that kept the frame
		t.Fatal(err)
	}
	if err := c.ReplaySpool(ctx); err != nil {
		t.Fatal(err)
	}
	var total, distinct int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id) FROM presence_events WHERE room_id = $1`, room).Scan(&total, &distinct); err != nil {
		t.Fatal(err)
	}
	if total != 250 || distinct != 250 {
		t.Fatalf("history after the replay: %d events (%d distinct), want 250", total, distinct)
	}
	if got := c.Counts(); got.Replayed != 250 || got.Dropped != 0 {
		t.Fatalf("counts %+v: want 250 replayed, none dropped", got)
	}
	if fi, err := os.Stat(path); err != nil {
		t.Fatal(err)
	} else if fi.Size() != 0 {
		t.Fatalf("spool after the replay: %d bytes, want empty", fi.Size())
	}
	if err := c.ReplaySpool(ctx); err != nil || c.Counts().Replayed != 250 {
		t.Fatalf("a second replay: %v, %d replayed; want nothing more", err, c.Counts().Replayed)
	}
}

// TestCollectorWithoutSpool: without a spool file (a fresh install, or SPOOL_DIR empty) the
// replay is a no-op that creates nothing.
func TestCollectorWithoutSpool(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	for _, d := range []string{dir, ""} {
		c, err := storage.NewCollector(nil, storage.CollectorConfig{SpoolDir: d})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.ReplaySpool(context.Background()); err != nil {
			t.Fatalf("SPOOL_DIR %q: %v", d, err)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("SPOOL_DIR without a spool: %v, want nothing created", err)
	}
}
