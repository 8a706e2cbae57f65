package storage_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"presencestats"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

func newPresence(tb testing.TB, ttl time.Duration) (*storage.Presence, redis.UniversalClient) {
	tb.Helper()
	rdb, err := storage.OpenRedis(context.Background(), storagetest.RedisURL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rdb.Close() })
	return storage.NewPresence(rdb, storage.PresenceOptions{KeyPrefix: storagetest.KeyPrefix(tb), TTL: ttl}), rdb
}

func TestPresenceJoinLeaveCounts(t *testing.T) {
	ctx := context.Background()
	p, _ := newPresence(t, time.Minute)
	room := uuid.New()
	sessions := make([]uuid.UUID, 5)
	for i := range sessions {
		sessions[i] = uuid.New()
		ev, st, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: uuid.New(), ID: sessions[i]}, true)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := ev.OnlineAfter, i+1; got != want {
			t.Errorf("join %d: online_after %d, want %d", i, got, want)
		}
		if ev.OnlineDelta != 1 || ev.Type != presencestats.EventConnected || ev.TS.IsZero() {
			t.Errorf("join %d: event %+v", i, ev)
		}
		if st.OnlineCount != int64(i+1) || st.SessionCount != int64(i+1) {
			t.Errorf("join %d: stats %+v", i, st)
		}
	}
	ev, st, err := p.Leave(ctx, room, sessions[2], presencestats.ReasonClosed)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.OnlineCount, int64(4); got != want {
		t.Errorf("online after leave = %d, want %d", got, want)
	}
	if ev.OnlineDelta != -1 || ev.OnlineAfter != 4 || ev.Type != presencestats.EventDisconnected || ev.SessionSeconds < 0 || ev.UserID == uuid.Nil {
		t.Errorf("leave event %+v", ev)
	}
	if _, _, err := p.Leave(ctx, room, sessions[2], presencestats.ReasonClosed); presencestats.ErrorCode(err) != presencestats.ENOTFOUND {
		t.Errorf("second leave: err %v, want ENOTFOUND", err)
	}
	got, err := p.Counts(ctx, room, uuid.New())
	if err != nil {
		t.Fatal(err)
	}
	if got[0].OnlineCount != 4 || got[0].SessionCount != 4 || got[1].OnlineCount != 0 {
		t.Errorf("counts %+v", got)
	}
}

func TestPresenceTabsOfOneUser(t *testing.T) {
	ctx := context.Background()
	p, _ := newPresence(t, time.Minute)
	room, user := uuid.New(), uuid.New()
	tab1, tab2 := uuid.New(), uuid.New()
	steps := []struct {
		name                  string
		do                    func() (presencestats.PresenceEvent, presencestats.OnlineStats, error)
		delta                 int
		online, sessionsCount int64
	}{
		{"first tab", func() (presencestats.PresenceEvent, presencestats.OnlineStats, error) {
			return p.Join(ctx, presencestats.Session{RoomID: room, UserID: user, ID: tab1}, true)
		}, 1, 1, 1},
		{"second tab", func() (presencestats.PresenceEvent, presencestats.OnlineStats, error) {
			return p.Join(ctx, presencestats.Session{RoomID: room, UserID: user, ID: tab2}, true)
		}, 0, 1, 2},
		{"first tab closes", func() (presencestats.PresenceEvent, presencestats.OnlineStats, error) {
			return p.Leave(ctx, room, tab1, presencestats.ReasonClosed)
		}, 0, 1, 1},
		{"last tab closes", func() (presencestats.PresenceEvent, presencestats.OnlineStats, error) {
			return p.Leave(ctx, room, tab2, presencestats.ReasonClosed)
		}, -1, 0, 0},
	}
	for _, s := range steps {
		ev, st, err := s.do()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if ev.OnlineDelta != s.delta || st.OnlineCount != s.online || st.SessionCount != s.sessionsCount || int64(ev.OnlineAfter) != s.online {
			t.Errorf("%s: delta %d online %d sessions %d, want %d %d %d", s.name, ev.OnlineDelta, st.OnlineCount, st.SessionCount, s.delta, s.online, s.sessionsCount)
		}
	}
}

// A join of a session already there is a heartbeat for a caller that recorded its connection
// (it passes the connected-at time); a caller that did not (the reply to its first join was lost
// after Redis applied it) gets that join's connected event as it happened, to record now.
func TestPresenceRejoinIsHeartbeat(t *testing.T) {
	ctx := context.Background()
	p, _ := newPresence(t, time.Minute)
	room, user, s := uuid.New(), uuid.New(), uuid.New()
	if _, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: uuid.New(), ID: uuid.New()}, true); err != nil { // someone else first
		t.Fatal(err)
	}
	first, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: user, ID: s}, true)
	if err != nil {
		t.Fatal(err)
	}
	ev, st, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: user, ID: s, ConnectedAt: first.TS}, true)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != presencestats.EventHeartbeat || ev.OnlineDelta != 0 || st.SessionCount != 2 {
		t.Errorf("rejoin: %+v %+v", ev, st)
	}
	if _, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: uuid.New(), ID: uuid.New()}, true); err != nil { // the count moves on
		t.Fatal(err)
	}
	lost, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: user, ID: s}, true)
	if err != nil {
		t.Fatal(err)
	}
	if lost.Type != presencestats.EventConnected || !lost.TS.Equal(first.TS) || lost.OnlineDelta != 1 || lost.OnlineAfter != 2 {
		t.Errorf("join after a lost reply: %+v, want the first join's connected event %+v", lost, first)
	}
}

// Sessions without heartbeat expire once, however many sweepers race, with one timeout event
// each; touched sessions stay.
func TestPresenceSweepConcurrentSweepers(t *testing.T) {
	ctx := context.Background()
	p, _ := newPresence(t, 300*time.Millisecond)
	room := uuid.New()
	users := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	var zombies []uuid.UUID
	for i := 0; i < 20; i++ {
		s := uuid.New()
		zombies = append(zombies, s)
		if _, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: users[i%3], ID: s}, true); err != nil {
			t.Fatal(err)
		}
	}
	alive := uuid.New()
	if _, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: uuid.New(), ID: alive}, true); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	expired := map[uuid.UUID]int{}
	deadline := time.Now().Add(5 * time.Second)
	for len(expired) < len(zombies) && time.Now().Before(deadline) {
		if _, missing, err := p.Touch(ctx, room, []uuid.UUID{alive}, nil); err != nil || len(missing) > 0 {
			t.Fatalf("touch: %v missing %v", err, missing)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				evs, err := p.Sweep(ctx, 1000)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				defer mu.Unlock()
				for _, ev := range evs {
					expired[ev.SessionID]++
					if ev.Reason != presencestats.ReasonTimeout || ev.Type != presencestats.EventDisconnected {
						t.Errorf("expiry event %+v", ev)
					}
				}
			}()
		}
		wg.Wait()
	}
	for _, s := range zombies {
		if expired[s] != 1 {
			t.Errorf("session %s expired %d times, want 1", s, expired[s])
		}
	}
	if expired[alive] != 0 {
		t.Errorf("touched session expired")
	}
	st, err := p.Counts(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].OnlineCount != 1 || st[0].SessionCount != 1 {
		t.Errorf("after sweep: %+v", st[0])
	}
	// The expired ones are reported missing by Touch, to be joined again.
	_, missing, err := p.Touch(ctx, room, []uuid.UUID{alive, zombies[0]}, nil)
	if err != nil || len(missing) != 1 || missing[0] != zombies[0] {
		t.Errorf("touch after expiry: missing %v err %v", missing, err)
	}
}

// Every change is published on the room's channel, in order, with the counts after it.
func TestPresenceListen(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, _ := newPresence(t, time.Minute)
	room := uuid.New()
	stats := make(chan presencestats.OnlineStats, 10)
	msgs := make(chan string, 10)
	up := make(chan bool, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.Listen(ctx, func(s presencestats.OnlineStats) {
			if s.RoomID == room {
				stats <- s
			}
		}, func(r uuid.UUID, b []byte) { msgs <- string(b) }, func(u bool) { up <- u })
	}()
	select {
	case u := <-up:
		if !u {
			t.Fatal("subscription down")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no subscription")
	}
	s1, s2 := uuid.New(), uuid.New()
	for _, s := range []uuid.UUID{s1, s2} {
		if _, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: uuid.New(), ID: s}, true); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := p.Leave(ctx, room, s1, presencestats.ReasonClosed); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, room, []byte(`{"text":"hi"}`)); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int64{1, 2, 1} {
		select {
		case s := <-stats:
			if s.OnlineCount != want {
				t.Errorf("update %d: online %d, want %d", i, s.OnlineCount, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("update %d missing", i)
		}
	}
	select {
	case m := <-msgs:
		if m != `{"text":"hi"}` {
			t.Errorf("message %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("message missing")
	}
	cancel()
	<-done
}

// TestPresenceEventTimesIncrease: every presence event of a room has a time of its own, later
// than the room's previous event (the room clock), even when one sweep expires many sessions at
// once or changes follow each other within a microsecond. The aggregates keep
// last(online_after, ts) as a bucket's closing count: with tied times that would be any of them.
func TestPresenceEventTimesIncrease(t *testing.T) {
	ctx := context.Background()
	p, _ := newPresence(t, 200*time.Millisecond)
	room := uuid.New()
	var events []presencestats.PresenceEvent
	var sessions []uuid.UUID
	for i := range 30 {
		s, u := uuid.New(), uuid.New()
		sessions = append(sessions, s)
		ev, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: u, ID: s}, true)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
		if i%3 == 0 { // a heartbeat (touch) and a rejoin (heartbeat event) between joins
			st, _, err := p.Touch(ctx, room, []uuid.UUID{s}, nil)
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, presencestats.PresenceEvent{TS: st.Timestamp, OnlineAfter: int(st.OnlineCount)})
			if ev, _, err = p.Join(ctx, presencestats.Session{RoomID: room, UserID: u, ID: s, ConnectedAt: ev.TS}, true); err != nil {
				t.Fatal(err)
			}
			events = append(events, ev)
		}
	}
	ev, _, err := p.Leave(ctx, room, sessions[0], presencestats.ReasonClosed)
	if err != nil {
		t.Fatal(err)
	}
	events = append(events, ev)
	time.Sleep(300 * time.Millisecond)
	expired, st, err := p.Expire(ctx, room, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(expired) != len(sessions)-1 || st.OnlineCount != 0 {
		t.Fatalf("expired %d sessions, counts %+v: want %d and 0", len(expired), st, len(sessions)-1)
	}
	events = append(events, expired...)
	for i := 1; i < len(events); i++ {
		if !events[i].TS.After(events[i-1].TS) {
			t.Fatalf("event %d at %s is not after event %d at %s", i, events[i].TS.Format(time.RFC3339Nano), i-1,
				events[i-1].TS.Format(time.RFC3339Nano))
		}
	}
	if last := expired[len(expired)-1]; last.OnlineAfter != 0 {
		t.Fatalf("the last expiry leaves %d online, want 0", last.OnlineAfter)
	}
}

// A session a sweeper expired (timeout recorded) that its instance registers again without
// asking for a record (after an outage longer than PRESENCE_TTL the instance cannot tell it from
// a session Redis lost) is recorded as a new connection: the history stays balanced. A session
// Redis merely does not have (lost with its data) is registered without a record, as before.
func TestPresenceExpiredSessionRejoinIsRecorded(t *testing.T) {
	ctx := context.Background()
	p, rdb := newPresence(t, 100*time.Millisecond)
	room := uuid.New()
	sess := presencestats.Session{RoomID: room, UserID: uuid.New(), ID: uuid.New()}
	if _, _, err := p.Join(ctx, sess, true); err != nil {
		t.Fatal(err)
	}
	var expired []presencestats.PresenceEvent
	waitUntil(t, 10*time.Second, "the session expired", func() bool {
		evs, _, err := p.Expire(ctx, room, 10)
		expired = append(expired, evs...)
		return err == nil && len(expired) == 1
	})
	sess.ConnectedAt = time.Now()
	ev, st, err := p.Join(ctx, sess, false)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != presencestats.EventConnected || ev.OnlineDelta != 1 || st.OnlineCount != 1 {
		t.Fatalf("rejoin after expiry: %+v, %+v", ev, st)
	}
	if n, _ := streamState(t, rdb, p.KeyPrefix(), room); n != 3 {
		t.Fatalf("outbox holds %d events, want 3 (connected, disconnected timeout, connected)", n)
	}
	// Once only: leaving and joining again without a record records nothing new.
	if _, _, err := p.Leave(ctx, room, sess.ID, presencestats.ReasonClosed); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Join(ctx, sess, false); err != nil {
		t.Fatal(err)
	}
	if n, _ := streamState(t, rdb, p.KeyPrefix(), room); n != 4 {
		t.Fatalf("outbox holds %d events, want 4 (the leave's, and no connected for the unrecorded join)", n)
	}
}
