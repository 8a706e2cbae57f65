package main

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newTestLedger(rooms int) (*ledger, *fakeClock) {
	clk := &fakeClock{t: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)}
	ids := make([]uuid.UUID, rooms)
	for i := range ids {
		ids[i] = uuid.New()
	}
	return newLedger(ids, 5*time.Second, clk.now), clk
}

func TestLedgerJoinKnownToAll(t *testing.T) {
	l, clk := newTestLedger(1)
	r := l.rooms[0]
	a := &conn{id: 1, room: r, user: uuid.New()}
	b := &conn{id: 2, room: r, user: uuid.New()}
	c := &conn{id: 3, room: r, user: uuid.New()}
	l.connected(a, clk.t, 10, 1, 1)
	if got := len(l.joinLat); got != 1 {
		t.Fatalf("a join into an empty room: %d done, want 1 (the joiner's snapshot is all)", got)
	}
	dialB := clk.t
	clk.add(30 * time.Millisecond)
	l.connected(b, dialB, 20, 2, 2)
	if l.pendingJoins() != 1 {
		t.Fatal("b's join done before a has seen it")
	}
	dialC := clk.t
	clk.add(10 * time.Millisecond)
	l.connected(c, dialC, 30, 3, 3) // c's snapshot is newer than b's join: c is not behind b's
	clk.add(60 * time.Millisecond)
	l.stats(a, 20, 2, 2)
	if l.pendingJoins() != 1 {
		t.Fatalf("%d pending, want c's join only", l.pendingJoins())
	}
	if got, want := l.joinLat[1], 100*time.Millisecond; got != want {
		t.Errorf("b's join -> all %s, want %s (dial to a's push)", got, want)
	}
	// b never sees c's join, but leaves: c's join is then known to every member left.
	l.stats(a, 30, 3, 3)
	if l.pendingJoins() != 1 {
		t.Fatal("c's join done while b has not seen it")
	}
	l.ended(b, endClose)
	if l.pendingJoins() != 0 {
		t.Fatal("c's join still pending after b, the only one behind, left")
	}
}

func TestLedgerSnapshotsOutOfOrder(t *testing.T) {
	l, clk := newTestLedger(1)
	r := l.rooms[0]
	a := &conn{room: r, user: uuid.New()}
	b := &conn{room: r, user: uuid.New()}
	c := &conn{room: r, user: uuid.New()}
	l.connected(a, clk.t, 10, 1, 1)
	l.connected(c, clk.t, 30, 3, 3) // c's snapshot arrives before b's, though b joined first
	l.connected(b, clk.t, 20, 3, 3)
	// a is behind both; b is behind c's join (30) only.
	if l.pendingJoins() != 2 {
		t.Fatalf("%d pending, want 2", l.pendingJoins())
	}
	l.stats(a, 30, 3, 3)
	if l.pendingJoins() != 1 {
		t.Fatalf("%d pending after a saw 30, want c's (b has not seen it)", l.pendingJoins())
	}
	l.stats(b, 30, 3, 3)
	if l.pendingJoins() != 0 {
		t.Fatalf("%d pending, want 0", l.pendingJoins())
	}
}

func TestLedgerTruthAndDisagreements(t *testing.T) {
	l, clk := newTestLedger(2)
	u := uuid.New()
	tab1 := &conn{room: l.rooms[0], user: u}
	tab2 := &conn{room: l.rooms[0], user: u}
	other := &conn{room: l.rooms[0], user: uuid.New()}
	elsewhere := &conn{room: l.rooms[1], user: u}
	l.connected(tab1, clk.t, 1, 1, 1)
	l.connected(tab2, clk.t, 2, 1, 2)
	l.connected(other, clk.t, 3, 2, 3)
	l.connected(elsewhere, clk.t, 1, 1, 1)
	if on, s := l.truth(0); on != 2 || s != 3 {
		t.Errorf("room 0: truth %d users %d sessions, want 2, 3", on, s)
	}
	if wrong, _ := l.disagreements(); wrong != 2 {
		t.Errorf("%d members disagree, want 2 (tab1 and tab2 saw older counts)", wrong)
	}
	l.stats(tab1, 3, 2, 3)
	l.stats(tab2, 3, 2, 3)
	l.ended(tab2, endVanish)
	if on, s := l.truth(0); on != 2 || s != 2 {
		t.Errorf("room 0 after a tab vanished: %d, %d; want 2, 2", on, s)
	}
	l.stats(tab1, 4, 2, 2)
	l.stats(other, 4, 2, 2)
	wrong, frames := l.disagreements()
	if wrong != 0 || frames != 3 {
		t.Errorf("%d disagree, at most %d frames; want 0 and 3", wrong, frames)
	}
	if l.counters().live != 3 || l.counters().ended[endVanish] != 1 {
		t.Errorf("counters %+v", l.counters())
	}
}

func TestLedgerMessages(t *testing.T) {
	l, clk := newTestLedger(1)
	r := l.rooms[0]
	a := &conn{room: r, user: uuid.New()}
	b := &conn{room: r, user: uuid.New()}
	c := &conn{room: r, user: uuid.New()}
	l.connected(a, clk.t, 1, 1, 1)
	l.connected(b, clk.t, 2, 2, 2)
	l.stats(a, 2, 2, 2)
	if !l.sending(a, 1) || !l.sending(a, 2) || !l.sending(a, 3) {
		t.Fatal("sending from a live member refused")
	}
	l.connected(c, clk.t, 3, 3, 3) // joined after: owed none of them
	clk.add(20 * time.Millisecond)
	for _, m := range []*conn{a, b, c} {
		l.message(m, 1)
	}
	l.message(b, 1) // a duplicate
	l.message(a, 2)
	l.message(a, 3)
	clk.add(time.Second)
	l.ended(b, endClose) // b leaves 1 s after 2 and 3 were sent: within the grace, not lost
	l.message(a, 2)      // a duplicate
	l.settle()
	got := l.counters()
	if got.sent != 3 || got.delivered != 4 || got.dups != 2 || got.lost != 0 {
		t.Errorf("counters %+v: want 3 sent, 4 delivered (a: 3, b: 1), 2 duplicated, 0 lost", got)
	}
	if len(l.msgLat) != 3 || l.msgLat[0] != 20*time.Millisecond {
		t.Errorf("fan-out times %v, want 20ms first", l.msgLat)
	}
	// A member that stays and never gets a message: lost, at settling or when it leaves late.
	l2, clk2 := newTestLedger(1)
	x := &conn{room: l2.rooms[0], user: uuid.New()}
	y := &conn{room: l2.rooms[0], user: uuid.New()}
	z := &conn{room: l2.rooms[0], user: uuid.New()}
	for i, m := range []*conn{x, y, z} {
		l2.connected(m, clk2.t, int64(i+1), int64(i+1), int64(i+1))
	}
	l2.sending(x, 7)
	l2.message(x, 7)
	clk2.add(6 * time.Second)
	l2.ended(y, endDrop) // left 6 s after, never got it: lost
	l2.settle()          // z is still there and never got it: lost
	if got := l2.counters().lost; got != 2 {
		t.Errorf("%d lost, want 2", got)
	}
	if l2.sending(y, 8) {
		t.Error("a member that left could send")
	}
}
