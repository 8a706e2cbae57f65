package storage_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"presencestats"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

// joinLeave makes pairs sessions join and leave in each room (2 x pairs x rooms events) and
// returns the rooms.
func joinLeave(tb testing.TB, p *storage.Presence, rooms, pairs int) []uuid.UUID {
	tb.Helper()
	ctx := context.Background()
	ids := make([]uuid.UUID, rooms)
	for r := range ids {
		ids[r] = uuid.New()
		for range pairs {
			s := presencestats.Session{RoomID: ids[r], UserID: uuid.New(), ID: uuid.New(), UserAgent: "outage/1.0"}
			if _, _, err := p.Join(ctx, s, true); err != nil {
				tb.Fatal(err)
			}
			if _, _, err := p.Leave(ctx, ids[r], s.ID, presencestats.ReasonClosed); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return ids
}

// outboxLength returns the entries of the rooms' streams (pending or not) and those pending.
func outboxLength(tb testing.TB, rdb redis.UniversalClient, prefix string, rooms []uuid.UUID) (length, pending int64) {
	tb.Helper()
	seen := map[string]bool{}
	for _, room := range rooms {
		if key := storage.OutboxStreamKey(prefix, room); !seen[key] {
			seen[key] = true
			n, p := streamState(tb, rdb, prefix, room)
			length, pending = length+n, pending+p
		}
	}
	return length, pending
}

// TestOutboxDatabaseOutage: events made while the database is down wait in the outbox streams
// (none written, none acknowledged, writes retried); when a fresh database is back on the same
// address and migrated, every one of them is stored exactly once and the streams are emptied. With
// restart, the instance is stopped during the outage and a new one (another consumer) takes over
// what the first had read and not acknowledged.
func TestOutboxDatabaseOutage(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			ctx := context.Background()
			ts := storagetest.StartTimescale(t, 0)
			pool := storagetest.Connect(t, ts.DSN(), true)
			p, rdb := newPresence(t, time.Minute)
			prefix := p.KeyPrefix()
			// The fresh database that comes back is migrated while the outbox writes into it: on
			// the local engine (one backend, under the race detector and other test packages) a
			// first write has taken longer than the tests' usual 5 s, and a write that always
			// times out is retried forever. 30 s is for a slow machine, not a bound of the product.
			slowFirstWrite := func(cfg *storage.CollectorConfig) { cfg.WriteTimeout = 30 * time.Second }
			c := newCollector(t, pool, slowFirstWrite)
			o := startOutbox(t, rdb, c, prefix, 500*time.Millisecond)
			ts.Stop()

			const rooms, pairs = 4, 250
			const n = 2 * rooms * pairs
			ids := joinLeave(t, p, rooms, pairs)
			waitUntil(t, 30*time.Second, "writes retried while the database is down", func() bool { return o.Counts().Retried >= 3 })
			if length, _ := outboxLength(t, rdb, prefix, ids); length != n {
				t.Fatalf("outbox during the outage: %d entries, want all %d", length, n)
			}
			if got := o.Counts().Acked; got != 0 {
				t.Fatalf("acknowledged during the outage: %d", got)
			}
			if restart {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := o.Close(cctx)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				if length, _ := outboxLength(t, rdb, prefix, ids); length != n {
					t.Fatalf("outbox after a shutdown during the outage: %d entries, want all %d", length, n)
				}
				c = newCollector(t, pool, slowFirstWrite)
				o = startOutbox(t, rdb, c, prefix, 500*time.Millisecond) // the new instance, still during the outage
			}

			// The database comes back (empty, as a fresh instance) and is migrated.
			ts2 := storagetest.StartTimescale(t, ts.Port)
			pool2 := storagetest.Connect(t, ts2.DSN(), true)
			waitUntil(t, 2*time.Minute, "the outbox emptied into the database", func() bool {
				length, pending := outboxLength(t, rdb, prefix, ids)
				return length == 0 && pending == 0
			})
			var total, distinct int
			roomIDs := make([]string, len(ids))
			for i, id := range ids {
				roomIDs[i] = id.String()
			}
			if err := pool2.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id) FROM presence_events WHERE room_id = ANY($1::uuid[])`, roomIDs).Scan(&total, &distinct); err != nil {
				t.Fatal(err)
			}
			if total != n || distinct != n {
				t.Fatalf("history: %d events (%d distinct), want %d", total, distinct, n)
			}
			if c.Counts().Dropped != 0 || o.Counts().Dropped != 0 {
				t.Fatalf("dropped: collector %d, outbox %d; want none", c.Counts().Dropped, o.Counts().Dropped)
			}
			if restart && o.Counts().Claimed == 0 {
				t.Error("the new instance took over nothing the stopped one had read")
			}
		})
	}
}

// TestOutboxCloseWithHungDatabase: a database that accepts connections and never answers cannot
// keep Close, or the consumer's goroutine, past Close's deadline: the write in flight is
// cancelled and its events wait in Redis, unacknowledged.
func TestOutboxCloseWithHungDatabase(t *testing.T) {
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
	c := newCollector(t, hung, func(cfg *storage.CollectorConfig) { cfg.WriteTimeout = time.Minute })
	p, rdb := newPresence(t, time.Minute)
	prefix := p.KeyPrefix()
	ids := joinLeave(t, p, 1, 10)
	o, err := storage.NewOutbox(rdb, c, storage.OutboxConfig{KeyPrefix: prefix, Consumer: "hung", PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = o.Run(context.Background()) }()
	waitUntil(t, 10*time.Second, "a batch read (its write hangs)", func() bool { return o.Counts().Read > 0 })

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_ = o.Close(ctx) // may report the missed deadline; what matters is that the write was cancelled
	select {
	case <-done:
	case <-time.After(20 * time.Second): // far less than the write's own timeout of a minute
		t.Fatal("the consumer still waits on the hung database after Close's deadline")
	}
	if length, _ := outboxLength(t, rdb, prefix, ids); length != 20 {
		t.Fatalf("outbox after Close: %d entries, want the 20 events kept", length)
	}
	if got := o.Counts().Acked; got != 0 {
		t.Fatalf("acknowledged: %d, want none", got)
	}
}
