package storage_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"presencestats"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

// BenchmarkPresenceJoinLeave measures script calls per second through the Lua scripts: every
// iteration is one Join and one Leave (two round trips) of a fresh session in one of 20 rooms,
// from 50 goroutines (as redis-benchmark -c 50 in dev/bench/presence-vs-redis-benchmark.sh).
func BenchmarkPresenceJoinLeave(b *testing.B) {
	opt, err := redis.ParseURL(storagetest.RedisURL(b))
	if err != nil {
		b.Fatal(err)
	}
	opt.PoolSize = 64
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	p := storage.NewPresence(rdb, storage.PresenceOptions{KeyPrefix: storagetest.KeyPrefix(b), TTL: time.Minute})
	rooms := make([]uuid.UUID, 20)
	for i := range rooms {
		rooms[i] = uuid.New()
	}
	ctx := context.Background()
	var next atomic.Int64
	b.SetParallelism(25) // x GOMAXPROCS (2) = 50 goroutines
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			room := rooms[next.Add(1)%int64(len(rooms))]
			s := uuid.New()
			if _, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: uuid.New(), ID: s}, true); err != nil {
				b.Error(err)
				return
			}
			if _, _, err := p.Leave(ctx, room, s, presencestats.ReasonClosed); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(2*b.N)/time.Since(start).Seconds(), "scripts/s")
}
