package handlers_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"presencestats"
	"presencestats/handlers"
	"presencestats/storage/storagetest"
)

// fakeClock is the hub's Now and AfterFunc in the coalescing tests: its time moves only when the
// test advances it, and a coalescing window ends only then. The tests so assert the order and the
// number of frames, never how long anything took.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	f  func()
}

// newFakeClock starts a minute after the zero time: the hub's heartbeat (due every 20 minutes with
// the settings of these tests) never comes due, so that its touches, changes of their own, stay out.
func newFakeClock() *fakeClock { return &fakeClock{now: time.Time{}.Add(time.Minute)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), f: f})
}

// Advance moves the time by d and runs the timers that came due, in the order of their times.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due, rest []fakeTimer
	for _, t := range c.timers {
		if t.at.After(c.now) {
			rest = append(rest, t)
		} else {
			due = append(due, t)
		}
	}
	c.timers = rest
	c.mu.Unlock()
	slices.SortStableFunc(due, func(a, b fakeTimer) int { return a.at.Compare(b.at) })
	for _, t := range due {
		t.f()
	}
}

// window is STATS_PUSH_INTERVAL of the coalescing tests but one (the example: 10 s);
// STATS_PUSH_ROOM_RATE is its default, 25,000 a second, which widens no window of 10 s.
const (
	window   = 10 * time.Second
	roomRate = 25000
)

// coalesceRig is a room served by two instances on one Redis, with the same fake clock.
type coalesceRig struct {
	clock   *fakeClock
	window  time.Duration // STATS_PUSH_INTERVAL
	a, b    *presenceServer
	room    uuid.UUID
	fences  int
	members []*wsClient // every member dialled by member, in order
}

func newCoalesceRig(t *testing.T, interval time.Duration) *coalesceRig {
	clock := newFakeClock()
	url, prefix := storagetest.RedisURL(t), storagetest.KeyPrefix(t)
	o := presenceOpts{redisURL: url, prefix: prefix, ttl: time.Hour, hbEvents: time.Hour, pushInterval: interval, roomRate: roomRate, clock: clock}
	return &coalesceRig{clock: clock, window: interval, a: newPresenceServer(t, o), b: newPresenceServer(t, o), room: uuid.New()}
}

// member dials a member of the room on srv, waits for its snapshot (online_count online) and for
// both instances to have taken its join (a fence through every member so far), and lets the
// window its join opened end: the room is quiet again. Without the fence, an instance that took
// the join's update from the channel only after the clock moved would open its window then.
func (r *coalesceRig) member(t *testing.T, srv *presenceServer, online int64) *wsClient {
	t.Helper()
	w := dialWS(t, srv, r.room, uuid.New())
	w.waitOnline(t, push, online)
	r.members = append(r.members, w)
	r.fence(t, r.members...)
	r.clock.Advance(r.window)
	return w
}

// fence publishes a chat message on the room's channel and returns the online_stats each of ws
// got before it. Every instance handles the channel's messages in order, so when a member has
// the fence, its instance has taken every change published before it, and every push made
// before the fence reached the member first.
func (r *coalesceRig) fence(t *testing.T, ws ...*wsClient) [][]frame {
	t.Helper()
	r.fences++
	text := fmt.Sprintf("fence %d", r.fences)
	if err := r.a.store.Publish(context.Background(), r.room, []byte(`{"text":"`+text+`"}`)); err != nil {
		t.Fatal(err)
	}
	out := make([][]frame, len(ws))
	for i, w := range ws {
		w.waitFrame(t, push, text, func(f frame) bool {
			if f.Type == handlers.TypeOnlineStats {
				out[i] = append(out[i], f)
			}
			return f.Type == handlers.TypeMessage && string(f.Data) == `{"text":"`+text+`"}`
		})
	}
	return out
}

// join registers a session that is not a WebSocket member (a change of the room's counts).
func (r *coalesceRig) join(t *testing.T) {
	t.Helper()
	if _, _, err := r.a.store.Join(context.Background(), presencestats.Session{RoomID: r.room, UserID: uuid.New(), ID: uuid.New()}, true); err != nil {
		t.Error(err)
	}
}

// With STATS_PUSH_INTERVAL 10 s, a join in a quiet room reaches every member at once, on this
// instance and on the other one (while no window has ended: the clock has not moved), and three
// more changes inside that window reach each member as exactly one frame, when the window ends,
// with the final counts.
func TestWSStatsLeadingAndTrailingEdge(t *testing.T) {
	r := newCoalesceRig(t, window)
	a1 := r.member(t, r.a, 1)
	b1 := r.member(t, r.b, 2)
	members := []*wsClient{a1, b1}
	r.fence(t, members...)

	a2 := dialWS(t, r.a, r.room, uuid.New())
	a2.waitOnline(t, push, 3) // its snapshot
	members = append(members, a2)
	for i, got := range r.fence(t, members...)[:2] {
		if len(got) != 1 || got[0].stats(t).OnlineCount != 3 {
			t.Fatalf("member %d: %s after a join in a quiet room, want one online_stats with online_count 3 before any window ended", i, describe(t, got))
		}
	}

	for range 3 {
		r.join(t)
	}
	for i, got := range r.fence(t, members...) {
		if len(got) != 0 {
			t.Fatalf("member %d: %s within the window, want none until it ends", i, describe(t, got))
		}
	}
	r.clock.Advance(window - time.Millisecond)
	for i, got := range r.fence(t, members...) {
		if len(got) != 0 {
			t.Fatalf("member %d: %s a millisecond before the window ends, want none until it ends", i, describe(t, got))
		}
	}
	r.clock.Advance(time.Millisecond)
	for i, got := range r.fence(t, members...) {
		if len(got) != 1 || got[0].stats(t).OnlineCount != 6 || got[0].stats(t).SessionCount != 6 {
			t.Fatalf("member %d: %s at the end of the window, want exactly one online_stats with 6 online, 6 sessions", i, describe(t, got))
		}
	}

	// The trailing push opened a window of its own: a change right after it waits for its end.
	r.join(t)
	for i, got := range r.fence(t, members...) {
		if len(got) != 0 {
			t.Fatalf("member %d: %s right after the trailing push, want none until its window ends", i, describe(t, got))
		}
	}
	r.clock.Advance(window)
	for i, got := range r.fence(t, members...) {
		if len(got) != 1 || got[0].stats(t).OnlineCount != 7 {
			t.Fatalf("member %d: %s, want one online_stats with 7 online", i, describe(t, got))
		}
	}
}

// A storm of 1,000 joins, during which the clock moves by 60 s, gives each member, on either
// instance, online_stats in order, the last with the exact final count, no two of them closer
// than the window (10 s), and so at most one per window plus one. The test fences after every
// batch of joins and every move of the clock, so that it knows at which (fake) time each frame
// was pushed.
func TestWSStatsStormBounded(t *testing.T) {
	r := newCoalesceRig(t, window)
	members := []*wsClient{r.member(t, r.a, 1), r.member(t, r.b, 2), r.member(t, r.a, 3)}
	r.fence(t, members...)

	type pushed struct {
		at time.Time
		st presencestats.OnlineStats
	}
	got := make([][]pushed, len(members))
	collect := func() {
		for i, fs := range r.fence(t, members...) {
			for _, f := range fs {
				got[i] = append(got[i], pushed{at: r.clock.Now(), st: f.stats(t)})
			}
		}
	}
	const storm, batches = 1000, 10
	start := r.clock.Now()
	for range batches {
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range storm / batches / 4 {
					r.join(t)
				}
			})
		}
		wg.Wait()
		collect() // every instance has taken the batch
		r.clock.Advance(window / 2)
		collect()
	}
	r.clock.Advance(window)
	collect()
	advanced := r.clock.Now().Sub(start)
	bound := int(advanced/window) + 1
	for i, fs := range got {
		if len(fs) == 0 || len(fs) > bound {
			t.Fatalf("member %d: %d online_stats for %d joins over %s, want 1 to %d", i, len(fs), storm, advanced, bound)
		}
		for j := 1; j < len(fs); j++ {
			prev, cur := fs[j-1], fs[j]
			if cur.st.OnlineCount <= prev.st.OnlineCount {
				t.Fatalf("member %d: counts out of order: frame %d has %d online after %d", i, j, cur.st.OnlineCount, prev.st.OnlineCount)
			}
			if gap := cur.at.Sub(prev.at); gap < window {
				t.Fatalf("member %d: frame %d came %s after the one before, want at least %s", i, j, gap, window)
			}
		}
		if last := fs[len(fs)-1].st; last.OnlineCount != storm+3 || last.SessionCount != storm+3 {
			t.Fatalf("member %d: last online_stats %+v, want %d online and sessions", i, last, storm+3)
		}
		counts := make([]int64, len(fs))
		for j, f := range fs {
			counts[j] = f.st.OnlineCount
		}
		t.Logf("member %d: %d joins over %s -> %d frames %v", i, storm, advanced, len(fs), counts)
	}
}

// With the defaults (STATS_PUSH_INTERVAL 1 ms, STATS_PUSH_ROOM_RATE 25,000), a small room's
// window is the interval, so joins that come one after another reach the members that soon, and
// a room of 1,005 sessions pushes at most every 40.2 ms (its 1,005 frames a push, 25,000 a second).
func TestWSStatsWindowGrowsWithRoom(t *testing.T) {
	const small = time.Millisecond
	r := newCoalesceRig(t, small)
	members := []*wsClient{r.member(t, r.a, 1), r.member(t, r.b, 2)}
	r.fence(t, members...)
	expect := func(what string, online ...int64) {
		t.Helper()
		for i, fs := range r.fence(t, members...) {
			if len(fs) != len(online) {
				t.Fatalf("member %d: %s %s, want online counts %v", i, what, describe(t, fs), online)
			}
			for j, f := range fs {
				if f.stats(t).OnlineCount != online[j] {
					t.Fatalf("member %d: %s %s, want online counts %v", i, what, describe(t, fs), online)
				}
			}
		}
	}
	r.join(t)
	expect("a join in a quiet room of 3:", 3)
	r.join(t)
	expect("a join right after the push:")
	r.clock.Advance(small - time.Microsecond)
	expect("before the small room's window ended:")
	r.clock.Advance(time.Microsecond)
	expect("when the small room's window ended:", 4)
	r.clock.Advance(small)
	r.join(t)
	expect("a join a window after the last push:", 5)

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 250 {
				r.join(t)
			}
		})
	}
	wg.Wait()
	expect("1,000 joins within the window:")
	r.clock.Advance(small)
	expect("after 1,000 joins, at the end of the small window:", 1005)
	large := 40200 * time.Microsecond // 1,005 sessions / 25,000 a second
	r.join(t)
	expect("a join right after the push in a room of 1,005:")
	r.clock.Advance(large - time.Millisecond)
	expect("a millisecond before the large window ends:")
	r.clock.Advance(time.Millisecond)
	expect("at the end of the large window:", 1006)
}

func describe(t *testing.T, fs []frame) string {
	counts := make([]int64, len(fs))
	for i, f := range fs {
		counts[i] = f.stats(t).OnlineCount
	}
	return fmt.Sprintf("%d online_stats %v", len(fs), counts)
}
