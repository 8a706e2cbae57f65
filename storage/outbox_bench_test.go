package storage_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"presencestats"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

type discardWriter struct{ n atomic.Int64 }

func (w *discardWriter) WriteEvents(_ context.Context, evs []presencestats.PresenceEvent) error {
	w.n.Add(int64(len(evs)))
	return nil
}

// BenchmarkPresenceScripts is the cost of recording a presence event on the real-time path now
// that the event is written by the presence script itself (XADD to the outbox): each iteration
// is one Join and one Leave (two events) of a fresh session in one of 20 rooms, timed one by one
// from one goroutine (p50/p99 per script), while this instance's outbox consumer drains the
// streams (to a writer that discards). docs/history.md gives the side-by-side run with the same
// loop on the code before the outbox (merge base c6b82b5), where Record put the event in the
// collector's memory instead.
func BenchmarkPresenceScripts(b *testing.B) {
	opt, err := redis.ParseURL(storagetest.RedisURL(b))
	if err != nil {
		b.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	prefix := storagetest.KeyPrefix(b)
	p := storage.NewPresence(rdb, storage.PresenceOptions{KeyPrefix: prefix, TTL: time.Minute, OutboxMaxEvents: 2000000})
	w := &discardWriter{}
	o, err := storage.NewOutbox(rdb, w, storage.OutboxConfig{KeyPrefix: prefix, Consumer: "bench", PollInterval: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = o.Run(context.Background()) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = o.Close(ctx)
	}()
	rooms := make([]uuid.UUID, 20)
	for i := range rooms {
		rooms[i] = uuid.New()
	}
	ctx := context.Background()
	lat := make([]time.Duration, 0, 2*b.N)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		room, s := rooms[i%len(rooms)], uuid.New()
		t0 := time.Now()
		if _, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: uuid.New(), ID: s, UserAgent: "Mozilla/5.0 (X11; Linux x86_64) bench"}, true); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, _, err := p.Leave(ctx, room, s, presencestats.ReasonClosed); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, t1.Sub(t0), time.Since(t1))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
	b.ReportMetric(float64(2*b.N)/elapsed.Seconds(), "events/s")
}
