package storage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"presencestats"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

// flakyWriter is an EventWriter that fails while fail > 0 (counting down), optionally after
// writing through to next (a commit whose answer was lost).
type flakyWriter struct {
	next        storage.EventWriter
	fail        atomic.Int32
	afterCommit bool
	mu          sync.Mutex
	seen        []presencestats.PresenceEvent
	calls       atomic.Int32
}

func (w *flakyWriter) WriteEvents(ctx context.Context, evs []presencestats.PresenceEvent) error {
	w.calls.Add(1)
	if w.fail.Load() > 0 {
		w.fail.Add(-1)
		if w.afterCommit && w.next != nil {
			if err := w.next.WriteEvents(ctx, evs); err != nil {
				return err
			}
		}
		return errors.New("database away")
	}
	if w.next != nil {
		if err := w.next.WriteEvents(ctx, evs); err != nil {
			return err
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, evs...)
	return nil
}

func (w *flakyWriter) events() []presencestats.PresenceEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]presencestats.PresenceEvent(nil), w.seen...)
}

func startOutbox(tb testing.TB, rdb redis.UniversalClient, w storage.EventWriter, prefix string, claimIdle time.Duration) *storage.Outbox {
	tb.Helper()
	o, err := storage.NewOutbox(rdb, w, storage.OutboxConfig{
		KeyPrefix: prefix, Consumer: "test-" + uuid.NewString(), PollInterval: 10 * time.Millisecond,
		ClaimIdle: claimIdle, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = o.Run(context.Background()) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = o.Close(ctx)
		<-done
	})
	return o
}

func waitUntil(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	waitFor(tb, within, what, func() (bool, error) { return cond(), nil })
}

// streamState returns the entries left in the room's shard stream and those pending in the group.
func streamState(tb testing.TB, rdb redis.UniversalClient, prefix string, room uuid.UUID) (length, pending int64) {
	tb.Helper()
	key := storage.OutboxStreamKey(prefix, room)
	ctx := context.Background()
	length, err := rdb.XLen(ctx, key).Result()
	if err != nil {
		tb.Fatal(err)
	}
	p, err := rdb.XPending(ctx, key, "history").Result()
	if err != nil && !redis.HasErrorPrefix(err, "NOGROUP") {
		tb.Fatal(err)
	}
	if p != nil {
		pending = p.Count
	}
	return length, pending
}

// The scripts' events reach the writer complete (client data, reason, session time, ids as the
// store returned them), and an entry is acknowledged and deleted only after its write
// succeeded: while the writer fails, they stay in Redis.
func TestOutboxAcksAfterCommit(t *testing.T) {
	ctx := context.Background()
	p, rdb := newPresence(t, time.Minute)
	prefix := p.KeyPrefix()
	w := &flakyWriter{}
	w.fail.Store(5)
	room, user := uuid.New(), uuid.New()
	sess := presencestats.Session{RoomID: room, UserID: user, ID: uuid.New(), UserAgent: "drill|agent/1.0"}
	joined, _, err := p.Join(ctx, sess, true)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // a session that lasts a moment: session_seconds > 0
	left, _, err := p.Leave(ctx, room, sess.ID, presencestats.ReasonClosed)
	if err != nil {
		t.Fatal(err)
	}
	startOutbox(t, rdb, w, prefix, time.Minute)
	waitUntil(t, 10*time.Second, "failed writes", func() bool { return w.calls.Load() >= 3 })
	if n, pending := streamState(t, rdb, prefix, room); n != 2 || pending != 2 {
		t.Fatalf("while the writer fails: %d entries, %d pending; want both kept", n, pending)
	}
	waitUntil(t, 10*time.Second, "the events written", func() bool { return len(w.events()) == 2 })
	waitUntil(t, 5*time.Second, "the entries acknowledged and deleted", func() bool {
		n, pending := streamState(t, rdb, prefix, room)
		return n == 0 && pending == 0
	})
	got := w.events()
	if got[0].EventID != joined.EventID || got[0].Type != presencestats.EventConnected || !got[0].TS.Equal(joined.TS) ||
		got[0].OnlineDelta != 1 || got[0].UserAgent != "drill|agent/1.0" {
		t.Errorf("connected: got %+v, want %+v", got[0], joined)
	}
	if got[1].EventID != left.EventID || got[1].Reason != presencestats.ReasonClosed || got[1].OnlineDelta != -1 ||
		got[1].SessionSeconds <= 0 || got[1].SessionSeconds != left.SessionSeconds {
		t.Errorf("disconnected: got %+v, want %+v", got[1], left)
	}
}

// A batch committed whose acknowledgement never came (the writer failed after the commit, as an
// instance killed between the two would) is written again, and the database holds each event
// once; so do entries a consumer read and never acknowledged (it died), taken over by another
// after the claim idle time.
func TestOutboxRedeliveryAndClaimDoNotDouble(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.SharedDatabase(t)
	c := newCollector(t, pool, nil)
	p, rdb := newPresence(t, time.Minute)
	prefix := p.KeyPrefix()
	room := uuid.New()
	var sessions []uuid.UUID
	for range 10 {
		s := uuid.New()
		sessions = append(sessions, s)
		if _, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: uuid.New(), ID: s}, true); err != nil {
			t.Fatal(err)
		}
	}
	// A consumer that reads the first entries and dies.
	key := storage.OutboxStreamKey(prefix, room)
	if err := rdb.XGroupCreateMkStream(ctx, key, "history", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "history", Consumer: "dead", Streams: []string{key, ">"}, Count: 4, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	for _, s := range sessions[:5] {
		if _, _, err := p.Leave(ctx, room, s, presencestats.ReasonClosed); err != nil {
			t.Fatal(err)
		}
	}
	w := &flakyWriter{next: c, afterCommit: true}
	w.fail.Store(2) // two commits whose answer is lost
	o := startOutbox(t, rdb, w, prefix, 300*time.Millisecond)
	waitUntil(t, 20*time.Second, "every entry written and acknowledged", func() bool {
		n, pending := streamState(t, rdb, prefix, room)
		return n == 0 && pending == 0
	})
	if got := o.Counts().Claimed; got < 4 {
		t.Errorf("claimed %d entries, want the dead consumer's 4", got)
	}
	var total, distinct, sum int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id), coalesce(sum(online_delta), 0)
		FROM presence_events WHERE room_id = $1`, room).Scan(&total, &distinct, &sum); err != nil {
		t.Fatal(err)
	}
	if total != 15 || distinct != 15 || sum != 5 {
		t.Fatalf("history: %d events (%d distinct), sum(online_delta) %d; want 15, 15, 5", total, distinct, sum)
	}
}

// Past OUTBOX_MAX_EVENTS (here 64: one entry per shard) with no collector running, the oldest
// entries are trimmed and counted: what stays plus what was dropped is every event made.
func TestOutboxBoundDropsAreCounted(t *testing.T) {
	ctx := context.Background()
	rdb, err := storage.OpenRedis(ctx, storagetest.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	prefix := storagetest.KeyPrefix(t)
	p := storage.NewPresence(rdb, storage.PresenceOptions{KeyPrefix: prefix, TTL: time.Minute, OutboxMaxEvents: storage.Shards})
	room := uuid.New()
	const n = 500
	for range n {
		if _, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: uuid.New(), ID: uuid.New()}, true); err != nil {
			t.Fatal(err)
		}
	}
	left, _ := streamState(t, rdb, prefix, room)
	dropped, err := rdb.Get(ctx, storage.OutboxDroppedKey(prefix, room)).Int64()
	if err != nil {
		t.Fatal(err)
	}
	if dropped == 0 || left+dropped != n {
		t.Fatalf("%d entries left, %d dropped: want some dropped and %d in all", left, dropped, n)
	}
	w := &flakyWriter{}
	o := startOutbox(t, rdb, w, prefix, time.Minute)
	waitUntil(t, 10*time.Second, "the entries left written", func() bool { return int64(len(w.events())) == left })
	if got := o.Counts().Dropped; got != dropped {
		t.Errorf("outbox counts %d dropped, want %d", got, dropped)
	}
}

// Entries that cannot be read as events (not the format, a field that does not parse, an event
// that could never be stored) are acknowledged and counted, never written, and do not hold up the
// events around them.
func TestOutboxSkipsUnreadableEntries(t *testing.T) {
	ctx := context.Background()
	p, rdb := newPresence(t, time.Minute)
	prefix := p.KeyPrefix()
	room := uuid.New()
	key := storage.OutboxStreamKey(prefix, room)
	entry := func(roomID, base string) string {
		us := time.Now().UnixMicro()
		return fmt.Sprintf("1|connected|%s|0|%d|%s|%s|%s|1|1|%d||test||agent", base, us, roomID, uuid.NewString(), uuid.NewString(), us)
	}
	bad := []map[string]any{
		{"e": "garbage"},
		{"x": entry(room.String(), uuid.NewString())},     // no "e" field
		{"e": entry(room.String(), "not-a-uuid")},         // a field that does not parse
		{"e": entry(uuid.Nil.String(), uuid.NewString())}, // no room: could never be stored
	}
	for i := range 3 {
		if _, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: uuid.New(), ID: uuid.New()}, true); err != nil {
			t.Fatal(err)
		}
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: bad[i]}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: bad[3]}).Err(); err != nil {
		t.Fatal(err)
	}
	w := &flakyWriter{}
	o := startOutbox(t, rdb, w, prefix, time.Minute)
	waitUntil(t, 10*time.Second, "every entry acknowledged and deleted", func() bool {
		n, pending := streamState(t, rdb, prefix, room)
		return n == 0 && pending == 0
	})
	if got := len(w.events()); got != 3 {
		t.Errorf("events written: got %d, want the 3 joins", got)
	}
	if got := o.Counts().Bad; got != int64(len(bad)) {
		t.Errorf("unreadable entries counted: got %d, want %d", got, len(bad))
	}
}

// Events the database rejects as invalid data (here a trigger refuses one user agent) are
// dropped and counted alone: the rest of their read is stored and every entry is acknowledged,
// so a bad event never blocks the outbox.
func TestOutboxRejectedEventsDoNotBlock(t *testing.T) {
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
	p, rdb := newPresence(t, time.Minute)
	prefix := p.KeyPrefix()
	room := uuid.New()
	const n = 37
	for i := range n {
		agent := "fine"
		if i == 5 || i == 30 {
			agent = "poison"
		}
		if _, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: uuid.New(), ID: uuid.New(), UserAgent: agent}, true); err != nil {
			t.Fatal(err)
		}
	}
	c := newCollector(t, pool, nil)
	startOutbox(t, rdb, c, prefix, time.Minute)
	waitUntil(t, 30*time.Second, "every entry acknowledged and deleted", func() bool {
		n, pending := streamState(t, rdb, prefix, room)
		return n == 0 && pending == 0
	})
	if got := c.Counts().Dropped; got != 2 {
		t.Fatalf("dropped: got %d, want the 2 poisoned events", got)
	}
	var stored, poisoned int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE user_agent = 'poison') FROM presence_events WHERE room_id = $1`, room).Scan(&stored, &poisoned); err != nil {
		t.Fatal(err)
	}
	if stored != n-2 || poisoned != 0 {
		t.Fatalf("stored %d events (%d poisoned), want %d and none", stored, poisoned, n-2)
	}
}
