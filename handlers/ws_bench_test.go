package handlers_test

import (
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
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
