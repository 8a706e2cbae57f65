package storage_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"presencestats"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

// instanceStores returns stores of two instances, a and b, on one Redis and key prefix.
func instanceStores(t *testing.T, ttl time.Duration) (a, b *storage.Presence, rdb redis.UniversalClient, prefix string) {
	t.Helper()
	rdb, err := storage.OpenRedis(context.Background(), storagetest.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	prefix = storagetest.KeyPrefix(t)
	a = storage.NewPresence(rdb, storage.PresenceOptions{KeyPrefix: prefix, TTL: ttl, InstanceID: "instance-a"})
	b = storage.NewPresence(rdb, storage.PresenceOptions{KeyPrefix: prefix, TTL: ttl, InstanceID: "instance-b"})
	return a, b, rdb, prefix
}

// outboxEvents returns "type session reason" of room's events in the outbox, in order.
func outboxEvents(t *testing.T, rdb redis.UniversalClient, prefix string, room uuid.UUID) []string {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), storage.OutboxStreamKey(prefix, room), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		f := strings.Split(m.Values["e"].(string), "|")
		if f[5] == room.String() {
			out = append(out, f[1]+" "+f[7]+" "+f[11])
		}
	}
	return out
}

func TestPresenceDetachResume(t *testing.T) {
	ctx := context.Background()
	a, b, rdb, prefix := instanceStores(t, time.Minute)
	room, user, other := uuid.New(), uuid.New(), uuid.New()
	s := presencestats.Session{ID: uuid.New(), RoomID: room, UserID: user}
	joined, _, err := a.Join(ctx, s, true)
	if err != nil {
		t.Fatal(err)
	}
	m := presencestats.Session{ID: uuid.New(), RoomID: room, UserID: other}
	if _, _, err := b.Join(ctx, m, true); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Detach(ctx, room, s.ID, 5*time.Second, presencestats.ReasonServerShutdown); err != nil || ok {
		t.Fatalf("detach by an instance that does not hold it: %v, %v; want false", ok, err)
	}
	if _, _, ok, err := b.Resume(ctx, presencestats.Session{ID: s.ID, RoomID: room, UserID: user}); err != nil || ok {
		t.Fatalf("resume of an attached session: %v, %v; want false", ok, err)
	}
	if ok, err := a.Detach(ctx, room, s.ID, 5*time.Second, presencestats.ReasonServerShutdown); err != nil || !ok {
		t.Fatalf("detach by its instance: %v, %v; want true", ok, err)
	}
	wantCounts := func(step string) {
		t.Helper()
		st, err := a.Counts(ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		if st[0].OnlineCount != 2 || st[0].SessionCount != 2 {
			t.Fatalf("%s: counts %+v, want 2 users, 2 sessions", step, st[0])
		}
	}
	wantCounts("detached")
	for name, bad := range map[string]presencestats.Session{
		"another user":    {ID: s.ID, RoomID: room, UserID: other},
		"another room":    {ID: s.ID, RoomID: uuid.New(), UserID: user},
		"unknown session": {ID: uuid.New(), RoomID: room, UserID: user},
	} {
		if _, _, ok, err := b.Resume(ctx, bad); err != nil || ok {
			t.Fatalf("resume by %s: %v, %v; want false", name, ok, err)
		}
	}
	at, st, ok, err := b.Resume(ctx, presencestats.Session{ID: s.ID, RoomID: room, UserID: user})
	if err != nil || !ok {
		t.Fatalf("resume: %v, %v; want true", ok, err)
	}
	if !at.Equal(joined.TS) || st.OnlineCount != 2 || st.SessionCount != 2 {
		t.Fatalf("resume: connected at %s (joined %s), counts %+v", at, joined.TS, st)
	}
	if _, _, ok, _ := a.Resume(ctx, presencestats.Session{ID: s.ID, RoomID: room, UserID: user}); ok {
		t.Fatal("a second resume of the session succeeded")
	}
	if ok, _ := a.Detach(ctx, room, s.ID, 5*time.Second, presencestats.ReasonServerShutdown); ok {
		t.Fatal("the old instance detached a session resumed elsewhere")
	}
	wantCounts("resumed")
	ev, _, err := b.Leave(ctx, room, s.ID, presencestats.ReasonClosed)
	if err != nil {
		t.Fatal(err)
	}
	if want := ev.TS.Sub(joined.TS).Seconds(); ev.SessionSeconds != want || ev.OnlineDelta != -1 {
		t.Errorf("leave after resume: session_seconds %v (want %v, since the first join), delta %d", ev.SessionSeconds, want, ev.OnlineDelta)
	}
	got := outboxEvents(t, rdb, prefix, room)
	want := []string{"connected " + s.ID.String() + " ", "connected " + m.ID.String() + " ", "disconnected " + s.ID.String() + " closed"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("outbox:\n%s\nwant (detach and resume record nothing):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A detached session nobody resumes ends at the end of its window with the reason it was
// detached with, once.
func TestPresenceDetachedExpires(t *testing.T) {
	ctx := context.Background()
	a, b, rdb, prefix := instanceStores(t, time.Minute)
	room, user := uuid.New(), uuid.New()
	s := presencestats.Session{ID: uuid.New(), RoomID: room, UserID: user}
	joined, _, err := a.Join(ctx, s, true)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := a.Detach(ctx, room, s.ID, 100*time.Millisecond, presencestats.ReasonServerShutdown); err != nil || !ok {
		t.Fatalf("detach: %v, %v", ok, err)
	}
	var evs []presencestats.PresenceEvent
	deadline := time.Now().Add(5 * time.Second)
	for len(evs) == 0 && time.Now().Before(deadline) {
		// The sweep (its rooms index was lowered to the window's end, not PRESENCE_TTL's).
		if evs, err = b.Sweep(ctx, 100); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // polling for the deadline
	}
	if len(evs) != 1 {
		t.Fatalf("sweep: %d events, want 1", len(evs))
	}
	ev := evs[0]
	if ev.Reason != presencestats.ReasonServerShutdown || ev.SessionID != s.ID || ev.OnlineDelta != -1 || ev.OnlineAfter != 0 ||
		ev.SessionSeconds != ev.TS.Sub(joined.TS).Seconds() {
		t.Errorf("expired: %+v", ev)
	}
	if _, _, ok, _ := b.Resume(ctx, s); ok {
		t.Error("resumed after the window")
	}
	got := outboxEvents(t, rdb, prefix, room)
	if len(got) != 2 || got[1] != "disconnected "+s.ID.String()+" server_shutdown" {
		t.Errorf("outbox: %q", got)
	}
}
