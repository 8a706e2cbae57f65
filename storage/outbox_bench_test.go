package storage_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
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

// BenchmarkOutboxConsumer is the history's throughput from Redis to the database: b.N events
// (Join+Leave pairs of the presence scripts over 20 rooms, made beforehand by 8 goroutines and not
// timed) moved by one outbox consumer with the production defaults (EVENT_BATCH_SIZE 1000,
// EVENT_FLUSH_INTERVAL 1s) through the collector's INSERTs, timed from the consumer's start until
// every entry is acknowledged. The database then holds each event once.
//
//	dev/services.sh test go test -run '^$' -bench '^BenchmarkOutboxConsumer$' -benchtime 100000x ./storage/
func BenchmarkOutboxConsumer(b *testing.B) {
	ctx := context.Background()
	pool := storagetest.SharedDatabase(b) // fresh rooms keep this run's rows apart
	b.Logf("engine: %s", storagetest.Engine(ctx, pool))
	opt, err := redis.ParseURL(storagetest.RedisURL(b))
	if err != nil {
		b.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	prefix := storagetest.KeyPrefix(b)
	pairs := (b.N + 1) / 2
	events := int64(2 * pairs)
	p := storage.NewPresence(rdb, storage.PresenceOptions{KeyPrefix: prefix, TTL: time.Minute}) // unbounded: 20 rooms fill 20 shards, not 64
	rooms := make([]string, 20)
	for i := range rooms {
		rooms[i] = uuid.NewString()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < pairs; i += 8 {
				room, s := uuid.MustParse(rooms[i%len(rooms)]), uuid.New()
				if _, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: uuid.New(), ID: s, UserAgent: "Mozilla/5.0 (X11; Linux x86_64) bench"}, true); err != nil {
					errs <- err
					return
				}
				if _, _, err := p.Leave(ctx, room, s, presencestats.ReasonClosed); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c, err := storage.NewCollector(pool, storage.CollectorConfig{BatchSize: 1000, Registerer: reg})
	if err != nil {
		b.Fatal(err)
	}
	o, err := storage.NewOutbox(rdb, c, storage.OutboxConfig{KeyPrefix: prefix, Consumer: "bench", BatchSize: 1000})
	if err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	start := time.Now()
	go func() { _ = o.Run(ctx) }()
	waitFor(b, 10*time.Minute, "every event acknowledged", func() (bool, error) { return o.Counts().Acked >= events, nil })
	elapsed := time.Since(start)
	b.StopTimer()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := o.Close(cctx); err != nil {
		b.Fatal(err)
	}

	var stored int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM presence_events WHERE room_id = ANY($1::uuid[])`, rooms).Scan(&stored); err != nil {
		b.Fatal(err)
	}
	if stored != events || c.Counts().Dropped != 0 {
		b.Fatalf("history: %d events stored, %d dropped; want %d, none", stored, c.Counts().Dropped, events)
	}
	var inserts uint64
	families, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() == "presence_event_batch_size" {
			inserts = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	b.ReportMetric(float64(events)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(events)/float64(max(inserts, 1)), "events/insert")
}
