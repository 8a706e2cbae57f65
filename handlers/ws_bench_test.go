package handlers_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"presencestats"
	"presencestats/handlers"
)

// BenchmarkCachedStats is one read of a room's live count from the hub's in-process cache.
func BenchmarkCachedStats(b *testing.B) {
	s := newPresenceServer(b, presenceOpts{})
	room := uuid.New()
	c := dialWS(b, s, room, uuid.New())
	c.waitOnline(b, push, 1)
	// The first subscription marks the cache stale once; a REST read refills it.
	eventually(b, push, "a fresh cache entry", func() bool {
		s.hub.Stats(b.Context(), []uuid.UUID{room})
		_, ok := s.hub.CachedStats(room)
		return ok
	})
	misses := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, ok := s.hub.CachedStats(room); !ok {
			misses++ // STATS_CACHE_TTL passed without an update: REST would refetch
		}
	}
	b.ReportMetric(float64(misses), "misses")
}

// BenchmarkRoomStatsREST is GET /api/rooms/:room_id/stats on loopback with a keep-alive client,
// one request at a time; it reports the latency percentiles.
func BenchmarkRoomStatsREST(b *testing.B) {
	s := newPresenceServer(b, presenceOpts{})
	room := uuid.New()
	c := dialWS(b, s, room, uuid.New())
	c.waitOnline(b, push, 1)
	req, err := http.NewRequest(http.MethodGet, s.URL+"/api/rooms/"+room.String()+"/stats", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.token(b, uuid.New()))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	get := func() {
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	get() // warm the connection and the cache
	lat := make([]time.Duration, 0, 1<<16)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		get()
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkChatFanOut relays bursts of chat to a room of 100 members on one instance: per op, 8
// messages published on the room's channel back to back, done when every member has all 8. It
// reports the process's write system calls per frame relayed (/proc/self/io syscw: the server's
// writes to the clients, and the 8 publishes to Redis; the clients only read) and its CPU time
// per frame (server and clients).
func BenchmarkChatFanOut(b *testing.B) {
	const members, burst = 100, 8
	s := newPresenceServer(b, presenceOpts{})
	room := uuid.New()
	var got, target atomic.Int64
	done := make(chan struct{}, 1)
	for range members {
		conn, _, err := websocket.DefaultDialer.Dial(wsURL(s.URL, room.String())+"?access_token="+s.token(b, uuid.New()), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		go func() {
			for {
				_, p, err := conn.ReadMessage()
				if err != nil {
					return
				}
				if bytes.Contains(p, []byte(`"type":"message"`)) && got.Add(1) == target.Load() {
					done <- struct{}{}
				}
			}
		}()
	}
	relay := func(n int) bool {
		select {
		case <-done: // a late signal of an earlier relay
		default:
		}
		target.Store(got.Load() + int64(members*n))
		for range n {
			if err := s.store.Publish(b.Context(), room, []byte(`{"text":"hello, room"}`)); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-done:
			return true
		case <-time.After(5 * time.Second):
			return false
		}
	}
	// Every member is welcomed (gets chat) once its join is done: relay until all of them have it.
	eventually(b, 30*time.Second, "every member welcomed", func() bool { return relay(1) })
	before, cpu := syscw(b), cpuTime(b)
	b.ResetTimer()
	for b.Loop() {
		if !relay(burst) {
			b.Fatal("a burst did not reach every member within 5 s")
		}
	}
	b.StopTimer()
	frames := float64(b.N * members * burst)
	b.ReportMetric(float64(syscw(b)-before)/frames, "writes/frame")
	b.ReportMetric(float64((cpuTime(b)-cpu).Nanoseconds())/frames, "cpu-ns/frame")
}

// cpuTime is the process's user and system CPU time so far (server and clients: both are in it).
func cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// syscw is the process's count of write system calls so far.
func syscw(tb testing.TB) int64 {
	tb.Helper()
	io, err := os.ReadFile("/proc/self/io")
	if err != nil {
		tb.Skip("no /proc/self/io:", err)
	}
	for line := range strings.Lines(string(io)) {
		if v, ok := strings.CutPrefix(line, "syscw:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatal("no syscw in /proc/self/io")
	return 0
}

// BenchmarkStatsStorm is a storm in a room of 200 members on one instance: per op, 500 sessions
// join (8 at a time), then leave again, done when every member has the room's counts after the
// last leave. It reports the online_stats frames each member got per op, and the process's
// CPU time per op (the hub, its 200 clients, the 1,000 presence-store calls), for three settings
// of the push window: a fixed 100 ms and a fixed 5 ms (STATS_PUSH_ROOM_RATE 0), 5 ms widened at
// 10,000 frames a second (20 to 70 ms in this room), the defaults (STATS_PUSH_INTERVAL 1 ms,
// STATS_PUSH_ROOM_RATE 25,000: 8 to 28 ms) and 1 ms widened at 50,000 (4 to 14 ms).
func BenchmarkStatsStorm(b *testing.B) {
	for _, c := range []struct {
		name     string
		interval time.Duration
		roomRate int
	}{
		{"fixed=100ms", 100 * time.Millisecond, 0},
		{"fixed=5ms", 5 * time.Millisecond, 0},
		{"5ms-10000", 5 * time.Millisecond, 10000},
		{"default", time.Millisecond, 25000},
		{"1ms-50000", time.Millisecond, 50000},
	} {
		b.Run(c.name, func(b *testing.B) { benchmarkStatsStorm(b, c.interval, c.roomRate) })
	}
}

func benchmarkStatsStorm(b *testing.B, interval time.Duration, roomRate int) {
	const members, storm, parallel = 200, 500, 8
	s := newPresenceServer(b, presenceOpts{pushInterval: interval, roomRate: roomRate})
	room := uuid.New()
	var frames atomic.Int64
	latest := make([]atomic.Int64, members) // per member, the newest pushed counts' time (ns)
	for i := range members {
		conn, _, err := websocket.DefaultDialer.Dial(wsURL(s.URL, room.String())+"?access_token="+s.token(b, uuid.New()), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		go func() {
			var f struct {
				Type string                    `json:"type"`
				Data presencestats.OnlineStats `json:"data"`
			}
			for {
				_, p, err := conn.ReadMessage()
				if err != nil {
					return
				}
				if json.Unmarshal(p, &f) != nil || f.Type != handlers.TypeOnlineStats {
					continue
				}
				frames.Add(1)
				latest[i].Store(f.Data.Timestamp.UnixNano())
			}
		}()
	}
	eventually(b, 30*time.Second, "every member joined", func() bool {
		st, err := s.store.Counts(b.Context(), room)
		return err == nil && st[0].SessionCount == members
	})
	ctx := b.Context()
	// each runs f for storm sessions, parallel at a time, and returns the newest counts' time.
	each := func(sessions []presencestats.Session, f func(presencestats.Session) (presencestats.OnlineStats, error)) time.Time {
		var mu sync.Mutex
		var last time.Time
		var wg sync.WaitGroup
		for g := range parallel {
			wg.Go(func() {
				for i := g; i < len(sessions); i += parallel {
					st, err := f(sessions[i])
					if err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					if st.Timestamp.After(last) {
						last = st.Timestamp
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return last
	}
	var perMember float64
	cpu := cpuTime(b)
	b.ResetTimer()
	for b.Loop() {
		before := frames.Load()
		sessions := make([]presencestats.Session, storm)
		for i := range sessions {
			sessions[i] = presencestats.Session{RoomID: room, UserID: uuid.New(), ID: uuid.New()}
		}
		each(sessions, func(sess presencestats.Session) (presencestats.OnlineStats, error) {
			_, st, err := s.store.Join(ctx, sess, false)
			return st, err
		})
		last := each(sessions, func(sess presencestats.Session) (presencestats.OnlineStats, error) {
			_, st, err := s.store.Leave(ctx, room, sess.ID, presencestats.ReasonClosed)
			return st, err
		})
		eventually(b, 10*time.Second, "every member has the counts after the storm", func() bool {
			for i := range latest {
				if latest[i].Load() < last.UnixNano() {
					return false
				}
			}
			return true
		})
		perMember += float64(frames.Load()-before) / members
	}
	b.StopTimer()
	b.ReportMetric(perMember/float64(b.N), "frames/member/op")
	b.ReportMetric(float64((cpuTime(b)-cpu).Milliseconds())/float64(b.N), "cpu-ms/op")
}
