package storage_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"presencestats"
)

// A session a sweeper expired (its timeout event recorded) and then registered again by its
// instance without record (the re-registration after a Redis outage) comes back as a new
// connection: its connected event is recorded, so its later leave is the second disconnected of
// a second connected, never a second disconnected of one connection. A session Redis lost (no
// expiry) registered again records nothing, as before.
func TestPresenceExpiredThenRegisteredAgain(t *testing.T) {
	ctx := context.Background()
	p, rdb := newPresence(t, 100*time.Millisecond)
	w := &flakyWriter{}
	startOutbox(t, rdb, w, p.KeyPrefix(), time.Second)
	room, user, session := uuid.New(), uuid.New(), uuid.New()
	s := presencestats.Session{ID: session, RoomID: room, UserID: user}
	first, _, err := p.Join(ctx, s, true)
	if err != nil {
		t.Fatal(err)
	}
	// The deadline passes with nobody refreshing it (the outage); a sweeper expires it.
	waitUntil(t, 5*time.Second, "the session expired", func() bool {
		evs, _, err := p.Expire(ctx, room, 10)
		return err == nil && len(evs) == 1
	})
	s.ConnectedAt = first.TS // the instance knows its connection
	again, st, err := p.Join(ctx, s, false)
	if err != nil {
		t.Fatal(err)
	}
	if again.Type != presencestats.EventConnected || again.OnlineDelta != 1 || st.OnlineCount != 1 || !again.TS.After(first.TS) {
		t.Errorf("registered again after its expiry: %+v, %+v; want a new connected event", again, st)
	}
	if _, _, err := p.Leave(ctx, room, session, presencestats.ReasonClosed); err != nil {
		t.Fatal(err)
	}
	// Redis lost another session (no expiry): registered again, nothing is recorded.
	lost := presencestats.Session{ID: uuid.New(), RoomID: room, UserID: uuid.New(), ConnectedAt: time.Now()}
	if ev, _, err := p.Join(ctx, lost, false); err != nil || ev.Type != presencestats.EventHeartbeat {
		t.Errorf("a lost session registered again: %+v, %v; want nothing recorded", ev, err)
	}
	waitUntil(t, 5*time.Second, "4 events in the history", func() bool { return len(w.events()) >= 4 })
	var got []string
	var delta int
	for _, ev := range w.events() {
		if ev.SessionID == session {
			got = append(got, string(ev.Type)+"/"+ev.Reason)
			delta += ev.OnlineDelta
		}
	}
	want := []string{"connected/", "disconnected/timeout", "connected/", "disconnected/closed"}
	if len(got) != len(want) || delta != 0 {
		t.Fatalf("history of the session: %v (sum of deltas %d), want %v (0)", got, delta, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: %s, want %s", i, got[i], want[i])
		}
	}
	if n := len(w.events()); n != 4 {
		t.Errorf("%d events recorded, want 4 (nothing for the lost session)", n)
	}
}
