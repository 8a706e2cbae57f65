package main

// The steps scenario (the default, and what dev/bench/peer.sh and dev/bench/loadgen.sh run):
// clients join their room one after another, rooms in parallel, each join timed until every
// member knows of it; then chat, one message at a time per room. It speaks to presenced and to
// Centrifugo through the protocol interface.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
)

// runSteps runs the steps scenario with proto against c.base.
func runSteps(ctx context.Context, c config, proto protocol) error {
	res := result{Target: c.target, Rooms: c.rooms}
	var before procSample
	var heapBefore map[string]float64
	var err error
	if c.pid > 0 {
		if before, err = readProc(c.pid); err != nil {
			return err
		}
	} else if c.target == "presenced" {
		if heapBefore, err = liveHeap(ctx, c.base); err != nil {
			return err
		}
	}
	rooms := make([]*roomState, c.rooms)
	for r := range rooms {
		n := c.clients / c.rooms
		if r < c.clients%c.rooms {
			n++
		}
		rooms[r] = newRoom(n)
	}
	defer func() {
		for _, room := range rooms {
			room.closeAll()
		}
	}()
	start := time.Now()
	joins, err := eachRoom(rooms, func(room *roomState) ([]time.Duration, error) { return fillRoom(ctx, c, proto, room) })
	res.Ramp = time.Since(start)
	if err != nil {
		return err
	}
	res.Clients = len(joins)
	res.JoinP50, res.JoinP99, res.JoinMax = percentiles(joins)
	if c.pid > 0 {
		after, err := readProc(c.pid)
		if err != nil {
			return err
		}
		res.RSSPerConnKiB = float64(after.rss-before.rss) / float64(res.Clients) / 1024
		res.CPUPer1000Joins = (after.cpu - before.cpu).Seconds() / float64(res.Clients) * 1000
		res.CPUJoins = (after.cpu - before.cpu).Seconds()
	} else if heapBefore != nil {
		after, err := liveHeap(ctx, c.base)
		if err != nil {
			return err
		}
		n := float64(res.Clients)
		heap := after["live_heap"] - heapBefore["live_heap"]
		stack := after["go_memstats_stack_inuse_bytes"] - heapBefore["go_memstats_stack_inuse_bytes"]
		res.HeapStackPerConnKiB = (heap + stack) / n / 1024
		res.HeapPerConnKiB, res.StackPerConnKiB = heap/n/1024, stack/n/1024
		res.GoroutinesPerConn = (after["go_goroutines"] - heapBefore["go_goroutines"]) / n
		res.RSSPerConnKiB = (after["process_resident_memory_bytes"] - heapBefore["process_resident_memory_bytes"]) / n / 1024
	}
	if c.chat > 0 {
		sleepUntil(ctx, time.Now().Add(c.chatWait))
		msgs, err := eachRoom(rooms, func(room *roomState) ([]time.Duration, error) { return chatRoom(ctx, c, proto, room) })
		if err != nil {
			return err
		}
		res.Messages = len(msgs)
		res.ChatP50, res.ChatP99, res.ChatMax = percentiles(msgs)
	}
	if err := res.print(c.json); err != nil {
		return err
	}
	sleepUntil(ctx, time.Now().Add(c.linger)) // connections open while the server is profiled
	return nil
}

// eachRoom runs f for every room in parallel and returns every duration it measured.
func eachRoom(rooms []*roomState, f func(*roomState) ([]time.Duration, error)) ([]time.Duration, error) {
	var (
		mu       sync.Mutex
		all      []time.Duration
		wg       sync.WaitGroup
		firstErr error
	)
	for _, room := range rooms {
		wg.Go(func() {
			d, err := f(room)
			mu.Lock()
			defer mu.Unlock()
			all = append(all, d...)
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	return all, firstErr
}

func percentiles(ds []time.Duration) (p50, p99, most time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	pct := func(p float64) time.Duration { return ds[min(len(ds)-1, int(float64(len(ds))*p))] }
	return pct(0.50), pct(0.99), ds[len(ds)-1]
}

// roomState is one room of the workload. Joins and messages in a room are numbered 1, 2, ... in
// the order they are made; a member knows of join (message) k when its joins (msgs) is k or more,
// and each comes only after the previous one reached every member.
type roomState struct {
	id   uuid.UUID
	size int

	mu      sync.Mutex
	cond    *sync.Cond
	members []*member
	index   map[string]int // user id -> its join's number (Centrifugo's join pushes name the user)
	failed  error          // a member's connection ended
}

type member struct {
	conn    *websocket.Conn
	writeMu sync.Mutex
	user    uuid.UUID
	k       int // its join's number
	joins   int // highest join number it knows of (guarded by the room's mu)
	msgs    int // highest message number it has
}

func newRoom(size int) *roomState {
	r := &roomState{id: uuid.New(), size: size, index: map[string]int{}}
	r.cond = sync.NewCond(&r.mu)
	return r
}

func (r *roomState) closeAll() {
	r.mu.Lock()
	ms := slices.Clone(r.members)
	r.mu.Unlock()
	for _, m := range ms {
		m.conn.Close()
	}
}

// knowsJoin records that m knows of join k.
func (r *roomState) knowsJoin(m *member, k int) { r.raise(&m.joins, k) }

// hasMessage records that m has message k.
func (r *roomState) hasMessage(m *member, k int) { r.raise(&m.msgs, k) }

// raise sets *n, a member's counter, to k if k is higher, and wakes the waiters.
func (r *roomState) raise(n *int, k int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if k > *n {
		*n = k
		r.cond.Broadcast()
	}
}

// waitAll waits until done holds for every member (room.mu held while it runs), or the room
// failed, or max passed since t0.
func (r *roomState) waitAll(t0 time.Time, max time.Duration, done func(*member) bool) (bool, error) {
	timer := time.AfterFunc(max-time.Since(t0), func() { r.mu.Lock(); r.cond.Broadcast(); r.mu.Unlock() })
	defer timer.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	all := func() bool {
		for _, m := range r.members {
			if !done(m) {
				return false
			}
		}
		return true
	}
	for !all() && r.failed == nil && time.Since(t0) < max {
		r.cond.Wait()
	}
	return all(), r.failed
}

// fillRoom joins the room's clients one after the other; for each join it waits until every
// member knows of it and records how long that took from the dial.
func fillRoom(ctx context.Context, c config, proto protocol, room *roomState) ([]time.Duration, error) {
	return steps(ctx, c, room, room.size, "join", func(k int) error {
		m := &member{user: uuid.New(), k: k}
		room.mu.Lock()
		room.index[m.user.String()] = k
		room.mu.Unlock()
		if err := proto.dial(ctx, room, m, m.user); err != nil {
			return err
		}
		room.mu.Lock()
		room.members = append(room.members, m)
		room.mu.Unlock()
		go readLoop(proto, room, m)
		return nil
	}, func(m *member, k int) bool { return m.joins >= k })
}

// chatRoom sends c.chat messages, each from a random member once the previous one reached every
// member, and records for each the time until every member has it.
func chatRoom(ctx context.Context, c config, proto protocol, room *roomState) ([]time.Duration, error) {
	return steps(ctx, c, room, c.chat, "message", func(k int) error {
		room.mu.Lock()
		from := room.members[rand.IntN(len(room.members))]
		room.mu.Unlock()
		return proto.chat(room, from, chatText(k))
	}, func(m *member, k int) bool { return m.msgs >= k })
}

// steps makes n numbered steps (joins, messages) in room one after the other: step k is started,
// then timed until done(member, k) holds for every member.
func steps(ctx context.Context, c config, room *roomState, n int, what string, start func(k int) error, done func(m *member, k int) bool) ([]time.Duration, error) {
	var lats []time.Duration
	for k := 1; k <= n; k++ {
		if ctx.Err() != nil {
			return lats, ctx.Err()
		}
		t0 := time.Now()
		if err := start(k); err != nil {
			return lats, fmt.Errorf("room %s, %s %d: %w", room.id, what, k, err)
		}
		ok, err := room.waitAll(t0, c.joinMax, func(m *member) bool { return done(m, k) })
		if err != nil {
			return lats, err
		}
		if !ok {
			return lats, fmt.Errorf("room %s: not every member knew of %s %d within %s", room.id, what, k, c.joinMax)
		}
		lats = append(lats, time.Since(t0))
	}
	return lats, nil
}

func chatText(k int) string { return fmt.Sprintf("loadgen message %d", k) }

// chatNumber returns k of chatText(k).
func chatNumber(text string) (int, bool) {
	var k int
	if _, err := fmt.Sscanf(text, "loadgen message %d", &k); err != nil {
		return 0, false
	}
	return k, true
}

func readLoop(proto protocol, room *roomState, m *member) {
	for {
		_, b, err := m.conn.ReadMessage()
		if err == nil {
			err = proto.read(room, m, b)
		}
		if err != nil {
			room.mu.Lock()
			if room.failed == nil && !errors.Is(err, net.ErrClosed) {
				room.failed = fmt.Errorf("room %s, member %d: %w", room.id, m.k, err)
			}
			room.cond.Broadcast()
			room.mu.Unlock()
			return
		}
	}
}

func (m *member) write(b []byte) error {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	return m.conn.WriteMessage(websocket.TextMessage, b)
}

// result is what a run measured.
type result struct {
	Target              string        `json:"target"`
	Clients             int           `json:"clients"`
	Rooms               int           `json:"rooms"`
	Ramp                time.Duration `json:"-"`
	RampS               float64       `json:"ramp_s"`
	JoinP50             time.Duration `json:"-"`
	JoinP99             time.Duration `json:"-"`
	JoinMax             time.Duration `json:"-"`
	JoinP50MS           float64       `json:"join_p50_ms"`
	JoinP99MS           float64       `json:"join_p99_ms"`
	Messages            int           `json:"messages"`
	ChatP50             time.Duration `json:"-"`
	ChatP99             time.Duration `json:"-"`
	ChatMax             time.Duration `json:"-"`
	ChatP50MS           float64       `json:"chat_p50_ms"`
	ChatP99MS           float64       `json:"chat_p99_ms"`
	RSSPerConnKiB       float64       `json:"rss_per_conn_kib"`
	HeapStackPerConnKiB float64       `json:"heap_stack_per_conn_kib,omitempty"`
	HeapPerConnKiB      float64       `json:"heap_per_conn_kib,omitempty"`
	StackPerConnKiB     float64       `json:"stack_per_conn_kib,omitempty"`
	GoroutinesPerConn   float64       `json:"goroutines_per_conn,omitempty"`
	CPUJoins            float64       `json:"cpu_s_joins,omitempty"`
	CPUPer1000Joins     float64       `json:"cpu_s_per_1000_joins,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (r result) print(asJSON bool) error {
	if asJSON {
		r.RampS = r.Ramp.Seconds()
		r.JoinP50MS, r.JoinP99MS = ms(r.JoinP50), ms(r.JoinP99)
		r.ChatP50MS, r.ChatP99MS = ms(r.ChatP50), ms(r.ChatP99)
		return json.NewEncoder(os.Stdout).Encode(r)
	}
	round := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	fmt.Printf("%s: %d clients in %d rooms, ramp %s\n", r.Target, r.Clients, r.Rooms, r.Ramp.Round(time.Millisecond))
	fmt.Printf("join -> every member knows of it: p50 %s  p99 %s  max %s  (%d joins)\n",
		round(r.JoinP50), round(r.JoinP99), round(r.JoinMax), r.Clients)
	if r.Messages > 0 {
		fmt.Printf("chat fan-out, message -> every member has it: p50 %s  p99 %s  max %s  (%d messages)\n",
			round(r.ChatP50), round(r.ChatP99), round(r.ChatMax), r.Messages)
	}
	if r.HeapStackPerConnKiB > 0 {
		fmt.Printf("server memory per connection: live heap + stacks %.1f KiB (heap %.1f, stacks %.1f; %.2f goroutines); RSS %.1f KiB (includes garbage not yet collected)\n",
			r.HeapStackPerConnKiB, r.HeapPerConnKiB, r.StackPerConnKiB, r.GoroutinesPerConn, r.RSSPerConnKiB)
	}
	if r.CPUPer1000Joins > 0 {
		fmt.Printf("server RSS growth per connection %.1f KiB; CPU %.2f s for the joins, %.2f s per 1,000 joins\n",
			r.RSSPerConnKiB, r.CPUJoins, r.CPUPer1000Joins)
	}
	return nil
}
