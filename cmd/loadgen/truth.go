package main

// The ground truth of the churn and storm scenarios and the accounting against it, pure (no
// sockets): which connection is live in which room for which user, which online_stats each has
// seen, and which chat messages each should have and has. The client feeds it what happens; it
// answers latencies, counts that disagree with the truth, and messages lost or duplicated.

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
)

// conn is one connection as the truth knows it.
type conn struct {
	id     int
	room   *roomTruth
	user   uuid.UUID
	target int

	live    bool  // snapshot received, not ended
	seen    int64 // timestamp (Unix µs) of the newest online_stats it has
	online  int64 // the counts of that online_stats
	session int64
	frames  int // online_stats frames received
	idx     int // position in ledger.liveList while live
}

type pendingJoin struct {
	ts   int64
	dial time.Time
}

type pendingMsg struct {
	id      uint64
	sent    time.Time
	waiting map[*conn]struct{}
	got     map[*conn]struct{}
}

// roomTruth is one room: its live connections, the sessions per user the server should count,
// and what is waiting to reach every member.
type roomTruth struct {
	id    uuid.UUID
	index int
	users map[uuid.UUID]int
	live  map[*conn]struct{}

	joins  []pendingJoin // by ts; joins[0] is done when no live member has seen less
	behind int           // live members with seen < joins[0].ts
	msgs   map[uint64]*pendingMsg
}

// ledger is the accounting of a run; safe for concurrent use.
type ledger struct {
	mu       sync.Mutex
	now      func() time.Time
	grace    time.Duration // a message counts as lost for a member that stayed this long after it was sent
	rooms    []*roomTruth
	liveList []*conn

	joinLat    []time.Duration
	msgLat     []time.Duration
	sent       uint64
	delivered  int
	lost       int
	dups       int
	nConnected int // sessions that got their snapshot
	peakLive   int
	nEnded     [4]int
	errors     map[string]int
	lastJoin   time.Time // the last snapshot's arrival
	lastDone   time.Time // the last join known to every member
}

func newLedger(rooms []uuid.UUID, grace time.Duration, now func() time.Time) *ledger {
	l := &ledger{now: now, grace: grace, errors: map[string]int{}}
	for i, id := range rooms {
		l.rooms = append(l.rooms, &roomTruth{id: id, index: i, users: map[uuid.UUID]int{}, live: map[*conn]struct{}{}, msgs: map[uint64]*pendingMsg{}})
	}
	return l
}

// connected records c's snapshot (the online_stats the server sends right after the join, which
// counts c), dialled at dial: from then on c is live, and its join is done when every live
// member of the room has seen counts at least as new as the snapshot's.
func (l *ledger) connected(c *conn, dial time.Time, ts, online, sessions int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := c.room
	c.live, c.seen, c.online, c.session, c.frames = true, ts, online, sessions, 1
	r.live[c] = struct{}{}
	r.users[c.user]++
	c.idx = len(l.liveList)
	l.liveList = append(l.liveList, c)
	l.nConnected++
	l.peakLive = max(l.peakLive, len(l.liveList))
	l.lastJoin = l.now()
	i := len(r.joins)
	for i > 0 && r.joins[i-1].ts > ts {
		i--
	}
	r.joins = append(r.joins, pendingJoin{})
	copy(r.joins[i+1:], r.joins[i:])
	r.joins[i] = pendingJoin{ts: ts, dial: dial}
	if i == 0 {
		l.recount(r)
	}
	l.advance(r)
}

// stats records an online_stats frame of c after its snapshot.
func (l *ledger) stats(c *conn, ts, online, sessions int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c.frames++
	if !c.live || ts <= c.seen {
		return
	}
	r := c.room
	if len(r.joins) > 0 && c.seen < r.joins[0].ts && ts >= r.joins[0].ts {
		r.behind--
	}
	c.seen, c.online, c.session = ts, online, sessions
	l.advance(r)
}

// recount counts the live members behind the oldest pending join.
func (l *ledger) recount(r *roomTruth) {
	r.behind = 0
	if len(r.joins) == 0 {
		return
	}
	for c := range r.live {
		if c.seen < r.joins[0].ts {
			r.behind++
		}
	}
}

// advance completes the pending joins every live member has seen.
func (l *ledger) advance(r *roomTruth) {
	for len(r.joins) > 0 && r.behind == 0 {
		l.joinLat = append(l.joinLat, l.now().Sub(r.joins[0].dial))
		l.lastDone = l.now()
		r.joins = r.joins[1:]
		l.recount(r)
	}
}

// ended records that c is gone for the room: closed, reset, or gone silent (the server will
// expire it; the truth counts it out at once, and settling waits for the expiry). Messages it
// was waiting for count as lost when it stayed the grace period after they were sent.
func (l *ledger) ended(c *conn, how endMode) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nEnded[how]++
	if !c.live {
		return
	}
	c.live = false
	r := c.room
	delete(r.live, c)
	if r.users[c.user]--; r.users[c.user] == 0 {
		delete(r.users, c.user)
	}
	last := l.liveList[len(l.liveList)-1]
	l.liveList[c.idx], last.idx = last, c.idx
	l.liveList = l.liveList[:len(l.liveList)-1]
	if len(r.joins) > 0 && c.seen < r.joins[0].ts {
		r.behind--
	}
	l.advance(r)
	now := l.now()
	for _, m := range r.msgs {
		if _, ok := m.waiting[c]; ok {
			delete(m.waiting, c)
			if now.Sub(m.sent) >= l.grace {
				l.lost++
			}
			l.finishMsg(r, m, now)
		}
	}
}

// failed counts an error by kind (dial refused, error frame, connection cut...).
func (l *ledger) failed(kind string) {
	l.mu.Lock()
	l.errors[kind]++
	l.mu.Unlock()
}

// pick returns a random live connection, or nil.
func (l *ledger) pick(rng *rand.Rand) *conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.liveList) == 0 {
		return nil
	}
	return l.liveList[rng.IntN(len(l.liveList))]
}

// sending records chat message id about to be sent by c: every live member of c's room,
// c included, should get it. It returns false when c is no longer live.
func (l *ledger) sending(c *conn, id uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !c.live {
		return false
	}
	r := c.room
	m := &pendingMsg{id: id, sent: l.now(), waiting: make(map[*conn]struct{}, len(r.live)), got: map[*conn]struct{}{}}
	for o := range r.live {
		m.waiting[o] = struct{}{}
	}
	r.msgs[id] = m
	l.sent++
	return true
}

// unsent takes back a message whose write failed.
func (l *ledger) unsent(c *conn, id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(c.room.msgs, id)
	l.sent--
}

// message records that c received chat message id.
func (l *ledger) message(c *conn, id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := c.room.msgs[id]
	if m == nil {
		return // from before c joined (not owed), or finished and forgotten: see got below
	}
	if _, ok := m.got[c]; ok {
		l.dups++
		return
	}
	m.got[c] = struct{}{}
	if _, ok := m.waiting[c]; ok {
		delete(m.waiting, c)
		l.delivered++
	}
	l.finishMsg(c.room, m, l.now())
}

// finishMsg records a message's fan-out time once nobody waits for it; it is kept (for
// duplicates) until forget.
func (l *ledger) finishMsg(r *roomTruth, m *pendingMsg, now time.Time) {
	if len(m.waiting) == 0 && m.waiting != nil {
		l.msgLat = append(l.msgLat, now.Sub(m.sent))
		m.waiting = nil
	}
}

// settle counts, at the end, the messages still owed to live members as lost.
func (l *ledger) settle() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.rooms {
		for _, m := range r.msgs {
			l.lost += len(m.waiting)
			m.waiting = nil
		}
	}
}

// truth returns the counts the server should report for room r.
func (l *ledger) truth(r int) (online, sessions int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.rooms[r].users {
		online++
		sessions += int64(n)
	}
	return online, sessions
}

// disagreements compares every live member's last online_stats with the truth of its room, and
// returns how many disagree, and the largest online_stats frame count of any member.
func (l *ledger) disagreements() (wrong, maxFrames int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.rooms {
		online, sessions := int64(len(r.users)), int64(0)
		for _, n := range r.users {
			sessions += int64(n)
		}
		for c := range r.live {
			if c.online != online || c.session != sessions {
				wrong++
			}
			maxFrames = max(maxFrames, c.frames)
		}
	}
	return wrong, maxFrames
}

// pendingJoins is the number of joins not yet known to every member.
func (l *ledger) pendingJoins() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.rooms {
		n += len(r.joins)
	}
	return n
}

// counters is a snapshot for the progress line and the report.
type counters struct {
	live, connected, joinsDone, pendingJoins int
	ended                                    [4]int
	sent                                     uint64
	delivered, lost, dups, errors            int
}

func (l *ledger) counters() counters {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := counters{live: len(l.liveList), connected: l.nConnected, joinsDone: len(l.joinLat), ended: l.nEnded,
		sent: l.sent, delivered: l.delivered, lost: l.lost, dups: l.dups}
	for _, r := range l.rooms {
		c.pendingJoins += len(r.joins)
	}
	for _, n := range l.errors {
		c.errors += n
	}
	return c
}
