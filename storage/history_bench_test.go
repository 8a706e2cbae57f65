package storage_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"presencestats"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

// History benchmarks (no timed assertions; figures in docs/benchmarks.md):
//
//	dev/services.sh test go test -run '^$' -bench 'BenchmarkHistory' -benchtime 1x -timeout 30m ./storage/
//
// The outbox consumer's throughput (stream to database) is BenchmarkOutboxConsumer.

func benchEvents(n int, rooms int, start time.Time) []presencestats.PresenceEvent {
	roomIDs := make([]uuid.UUID, rooms)
	for i := range roomIDs {
		roomIDs[i] = uuid.New()
	}
	evs := make([]presencestats.PresenceEvent, n)
	for i := range evs {
		evs[i] = presencestats.PresenceEvent{
			EventID: uuid.New(), TS: start.Add(time.Duration(i) * time.Millisecond), RoomID: roomIDs[i%rooms],
			UserID: uuid.New(), SessionID: uuid.New(), Type: presencestats.EventHeartbeat, OnlineAfter: 3,
			UserAgent: "Mozilla/5.0 (X11; Linux x86_64) bench",
		}
	}
	return evs
}

// BenchmarkHistoryInsert: the same kind of events written one row per INSERT and in batches of
// 1000 (the collector's EVENT_BATCH_SIZE) in the same run.
func BenchmarkHistoryInsert(b *testing.B) {
	ctx := context.Background()
	pool := storagetest.NewDatabase(b)
	single := newCollector(b, pool, func(cfg *storage.CollectorConfig) { cfg.BatchSize = 1 })
	batches := newCollector(b, pool, func(cfg *storage.CollectorConfig) { cfg.BatchSize = 1000 })
	b.Logf("engine: %s", storagetest.Engine(ctx, pool))
	const oneRowEvents, batchedEvents = 2000, 20000
	for range b.N {
		evs := benchEvents(oneRowEvents, 100, time.Now().Add(-time.Hour))
		t0 := time.Now()
		if err := single.WriteEvents(ctx, evs); err != nil {
			b.Fatal(err)
		}
		oneRow := time.Since(t0) / oneRowEvents

		evs = benchEvents(batchedEvents, 100, time.Now().Add(-2*time.Hour))
		t0 = time.Now()
		if err := batches.WriteEvents(ctx, evs); err != nil {
			b.Fatal(err)
		}
		perBatched := time.Since(t0) / batchedEvents

		b.ReportMetric(float64(oneRow.Microseconds()), "one-row-us/event")
		b.ReportMetric(float64(perBatched.Nanoseconds())/1000, "batched-us/event")
		b.ReportMetric(float64(oneRow)/float64(perBatched), "batch-speedup-x")
	}
}

// BenchmarkHistoryStorage: a month of generated events (sessions with heartbeats every 5
// minutes) for BENCH_MONTH_ROOMS rooms (default 10), then the columnstore and refresh policies
// run: compression of the raw events and the size of the aggregates against the raw.
func BenchmarkHistoryStorage(b *testing.B) {
	ctx := context.Background()
	pool := storagetest.NewDatabase(b)
	rooms := envInt("BENCH_MONTH_ROOMS", 10)
	b.Logf("engine: %s", storagetest.Engine(ctx, pool))
	end := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -3) // every chunk past the 2-day columnstore delay
	start := end.AddDate(0, 0, -30)
	for range b.N {
		t0 := time.Now()
		n := seedMonth(ctx, b, pool, rooms, start, end)
		b.Logf("seeded %d events (%d rooms, 30 days) in %v", n, rooms, time.Since(t0).Round(time.Millisecond))
		rawBefore := tableBytes(ctx, b, pool, "presence_events")
		t0 = time.Now()
		refreshAggregates(ctx, b, pool, time.Time{}, nil)
		b.Logf("refreshed the aggregates in %v", time.Since(t0).Round(time.Millisecond))
		t0 = time.Now()
		for _, table := range []string{"presence_events", "presence_room_hourly", "presence_user_hourly",
			"presence_room_hours_daily", "presence_room_users_hours_daily"} {
			if err := storagetest.RunJob(ctx, pool, jobID(ctx, b, pool, "policy_compression", table)); err != nil {
				b.Fatal(err)
			}
		}
		b.Logf("columnstore policies ran in %v", time.Since(t0).Round(time.Millisecond))
		rawAfter := tableBytes(ctx, b, pool, "presence_events")
		var aggs int64
		rows, err := pool.Query(ctx, `SELECT view_name, format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name)
			FROM timescaledb_information.continuous_aggregates ORDER BY 1`)
		if err != nil {
			b.Fatal(err)
		}
		var names [][2]string
		for rows.Next() {
			var v, m string
			if err := rows.Scan(&v, &m); err != nil {
				b.Fatal(err)
			}
			names = append(names, [2]string{v, m})
		}
		rows.Close()
		for _, nm := range names {
			sz := tableBytes(ctx, b, pool, nm[1])
			b.Logf("%-24s %8.2f MiB", nm[0], float64(sz)/(1<<20))
			aggs += sz
		}
		b.Logf("raw %d events: %.2f MiB before, %.2f MiB after columnstore; aggregates %.2f MiB",
			n, float64(rawBefore)/(1<<20), float64(rawAfter)/(1<<20), float64(aggs)/(1<<20))
		b.ReportMetric(float64(n), "events")
		b.ReportMetric(float64(rawBefore)/(1<<20), "raw-MiB")
		b.ReportMetric(float64(rawAfter)/(1<<20), "raw-columnstore-MiB")
		b.ReportMetric(100*(1-float64(rawAfter)/float64(rawBefore)), "saved-%")
		b.ReportMetric(float64(aggs)/(1<<20), "aggregates-MiB")
		b.ReportMetric(100*float64(aggs)/float64(rawBefore), "aggregates/raw-%")
	}
}

func tableBytes(ctx context.Context, tb testing.TB, pool *pgxpool.Pool, table string) int64 {
	tb.Helper()
	var n int64
	if err := pool.QueryRow(ctx, `SELECT total_bytes FROM hypertable_detailed_size($1::regclass)`, table).Scan(&n); err != nil {
		tb.Fatalf("size of %s: %v", table, err)
	}
	return n
}

// seedMonth inserts, per room, 12 user slots whose sessions follow each other (a session every
// 2-6 hours, 10 minutes to 80% of that long), with a heartbeat every 5 minutes, and online_after
// as the running sum of online_delta per room. Realistic columns: ip, user agent, reason.
func seedMonth(ctx context.Context, tb testing.TB, pool *pgxpool.Pool, rooms int, start, end time.Time) int64 {
	tb.Helper()
	var total int64
	for r0 := 0; r0 < rooms; r0++ {
		tag, err := pool.Exec(ctx, `
WITH slots AS (
    SELECT k, md5('month-room-' || $1::int)::uuid AS room_id,
           md5('month-user-' || (($1::int * 7 + k * 13) % 500))::uuid AS user_id,
           (2 + abs(hashtext($1::int || ':' || k)) % 5) * 3600 AS period_s
    FROM generate_series(0, 11) AS k
), sessions AS (
    SELECT s.room_id, s.user_id, md5('month-session-' || $1::int || ':' || s.k || ':' || i)::uuid AS session_id,
           $2::timestamptz + make_interval(secs => i * s.period_s + abs(hashtext(s.k || ':' || i)) % 600) AS started,
           600 + abs(hashtext($1::int || ':' || s.k || ':' || i)) % (s.period_s * 8 / 10 - 600) AS dur_s,
           ('10.' || (s.k % 250) || '.' || ($1::int % 250) || '.7')::inet AS ip
    FROM slots s, generate_series(0, (extract(epoch FROM $3::timestamptz - $2::timestamptz) / s.period_s)::int) AS i
), events AS (
    SELECT room_id, user_id, session_id, ip, started AS ts, 'connected' AS event_type, 1 AS delta, NULL::float8 AS secs
    FROM sessions WHERE started < $3
    UNION ALL
    SELECT room_id, user_id, session_id, ip, started + make_interval(secs => h * 300), 'heartbeat', 0, NULL
    FROM sessions, generate_series(1, dur_s / 300) AS h
    WHERE started + make_interval(secs => h * 300) < least($3::timestamptz, started + make_interval(secs => dur_s))
    UNION ALL
    SELECT room_id, user_id, session_id, ip, started + make_interval(secs => dur_s), 'disconnected', -1, dur_s::float8
    FROM sessions WHERE started + make_interval(secs => dur_s) < $3
)
INSERT INTO presence_events (event_id, ts, room_id, user_id, session_id, event_type, online_after, online_delta,
                             session_seconds, reason, user_ip, user_agent)
SELECT gen_random_uuid(), ts, room_id, user_id, session_id, event_type,
       sum(delta) OVER (PARTITION BY room_id ORDER BY ts, delta, session_id ROWS UNBOUNDED PRECEDING),
       delta, secs, CASE WHEN event_type = 'disconnected' THEN 'closed' END, ip,
       'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36'
FROM events`, r0, start, end)
		if err != nil {
			tb.Fatalf("seed room %d: %v", r0, err)
		}
		total += tag.RowsAffected()
	}
	return total
}
