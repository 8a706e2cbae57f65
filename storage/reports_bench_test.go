package storage_test

import (
	"context"
	"crypto/md5"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"presencestats"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

// Report query benchmark: a year of presence for 100 rooms, generated in SQL (not through the
// collector), the continuous aggregates refreshed and the retention and columnstore policies
// run (as a year in production would have left it), then the report queries the admin API runs
// (Stats for every room + Totals + PeakHours) timed per granularity over its typical range.
//
//	make bench                                                   (runs every benchmark)
//	dev/services.sh test go test -run '^$' -bench BenchmarkReportQueries -benchtime 20x -timeout 60m ./storage/
//
// It never runs in `make test` (go test runs benchmarks only with -bench). Setting:
// BENCH_REPORT_ROOMS (default 100) and BENCH_REPORT_DAYS (default 365) size the data;
// BENCH_REPORT_DENSE_DAYS (default: all) gives only the last days full activity (seedYear);
// BENCH_REPORT_ENGINE_PID adds the local engine's CPU time per report (below);
// BENCH_REPORT_NO_POLICIES measures a kept seed whose policies have not run yet;
// BENCH_REPORT_DSN reuses a database seeded by an earlier run (see below).
// Each sub-benchmark reports p50-ms and p95-ms of a whole report (Reports.Report, what the JSON
// API waits for: stats, totals and peak hours) and, timed apart, Stats, Totals and PeakHours.

// seedYear inserts `days` days of sessions ending at end for `rooms` rooms: 20 user slots per
// room, each slot one user whose sessions follow each other without overlapping (a session every
// 18-29 hours, 5 minutes to 60% of that long), users shared between rooms. online_after is the
// running sum of online_delta per room, as the collector would have written it; sessions still
// open at end have no disconnect.
//
// dense: only the last `dense` days have that activity (0 or >= days: all of them); before them
// each slot has a session every 5 periods (90-145 hours), ending before the dense part begins.
// That keeps, per room, a row in every day, week, month and year of the room aggregates, all 20
// users in every week, month and year of the per-user aggregates, and the dense part covers
// what is read at hour and day grain (the month and week in progress, the raw events' 30 days,
// 7-day hour reports); what it thins out is the hours of the older days (about 7 rooms' hours a
// day with events instead of 20) and the per-user days and hours there, and with them 70% of
// the events to insert and refresh (BENCH_REPORT_DENSE_DAYS; docs/benchmarks.md).
// Each batch of rooms is one statement, and a batch whose first room has events is skipped, so an
// interrupted seed of a kept database (BENCH_REPORT_DSN) goes on where it stopped.
func seedYear(ctx context.Context, tb testing.TB, pool *pgxpool.Pool, rooms, days, dense int, end time.Time) int64 {
	tb.Helper()
	const batchRooms = 10
	start := end.AddDate(0, 0, -days)
	if dense <= 0 || dense > days {
		dense = days
	}
	split := end.AddDate(0, 0, -dense) // where the dense part begins
	var total int64
	for r0 := 0; r0 < rooms; r0 += batchRooms {
		var have bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM presence_events WHERE room_id = md5('bench-room-' || $1::int)::uuid)`, r0).Scan(&have); err != nil {
			tb.Fatalf("seed rooms %d..: %v", r0, err)
		}
		if have {
			continue
		}
		t0 := time.Now()
		tag, err := pool.Exec(ctx, `
WITH slots AS (
    SELECT r, k,
           md5('bench-room-' || r)::uuid                        AS room_id,
           md5('bench-user-' || ((r * 7 + k * 13) % 1000))::uuid AS user_id,
           (18 + abs(hashtext(r || ':' || k)) % 12) * 3600      AS period_s,
           abs(hashtext(k || ':' || r)) % 86400                 AS phase_s
    FROM generate_series($1::int, $2::int - 1) AS r, generate_series(0, 19) AS k
), sparse AS (
    SELECT s.room_id, s.user_id,
           md5('bench-session-sparse-' || s.r || ':' || s.k || ':' || i)::uuid AS session_id,
           $3::timestamptz + make_interval(secs => s.phase_s + i * s.period_s * 5) AS started,
           300 + abs(hashtext('sparse:' || s.r || ':' || s.k || ':' || i)) % (s.period_s * 5 * 6 / 10) AS dur_s
    FROM slots s, generate_series(0, (extract(epoch FROM $5::timestamptz - $3::timestamptz)::bigint) / (s.period_s * 5)) AS i
), sessions AS (
    SELECT room_id, user_id, session_id, started,
           least(dur_s, extract(epoch FROM $5::timestamptz - started)::int) AS dur_s -- ends before the dense part
    FROM sparse WHERE started < $5::timestamptz
    UNION ALL
    SELECT s.room_id, s.user_id,
           md5('bench-session-' || s.r || ':' || s.k || ':' || i)::uuid,
           $5::timestamptz + make_interval(secs => s.phase_s + i * s.period_s),
           300 + abs(hashtext(s.r || ':' || s.k || ':' || i)) % (s.period_s * 6 / 10)
    FROM slots s, generate_series(0, (extract(epoch FROM $4::timestamptz - $5::timestamptz)::bigint) / s.period_s) AS i
), events AS (
    SELECT room_id, user_id, session_id, started AS ts, 'connected' AS event_type, 1 AS delta, NULL::float8 AS secs
    FROM sessions WHERE started < $4
    UNION ALL
    SELECT room_id, user_id, session_id, started + make_interval(secs => dur_s), 'disconnected', -1, dur_s::float8
    FROM sessions WHERE started + make_interval(secs => dur_s) < $4 AND dur_s > 0
)
INSERT INTO presence_events (event_id, ts, room_id, user_id, session_id, event_type, online_after, online_delta, session_seconds, reason)
SELECT gen_random_uuid(), ts, room_id, user_id, session_id, event_type,
       sum(delta) OVER (PARTITION BY room_id ORDER BY ts, delta, session_id ROWS UNBOUNDED PRECEDING),
       delta, secs, CASE WHEN event_type = 'disconnected' THEN 'closed' END
FROM events`, r0, min(r0+batchRooms, rooms), start, end, split)
		if err != nil {
			tb.Fatalf("seed rooms %d..: %v", r0, err)
		}
		total += tag.RowsAffected()
		benchProgress("seeded rooms %d-%d: %d events in %v (%d so far)", r0, min(r0+batchRooms, rooms)-1,
			tag.RowsAffected(), time.Since(t0).Round(time.Millisecond), total)
	}
	return total
}

// benchProgress writes a timestamped line to stderr when BENCH_REPORT_PROGRESS is set: go test
// drops the log of a benchmark with sub-benchmarks, and a 1,000-room seed runs for an hour.
func benchProgress(format string, args ...any) {
	if os.Getenv("BENCH_REPORT_PROGRESS") != "" {
		fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().UTC().Format(time.TimeOnly), fmt.Sprintf(format, args...))
	}
}

// refreshAggregates materialises the continuous aggregates up to `to` (zero: all time), each
// after the aggregates it reads (hierarchical ones read the level below, unique-user counts read
// the user rows of their level), as the refresh policies would have: those include accepts and
// what they read (include nil: every one).
func refreshAggregates(ctx context.Context, tb testing.TB, pool *pgxpool.Pool, to time.Time, include func(view string) bool) {
	tb.Helper()
	refreshWindow(ctx, tb, pool, time.Time{}, to, include)
}

// refreshWindow is refreshAggregates over [from, to) (zero from: from the start).
func refreshWindow(ctx context.Context, tb testing.TB, pool *pgxpool.Pool, from, to time.Time, include func(view string) bool) {
	tb.Helper()
	rows, err := pool.Query(ctx, `SELECT view_name, view_definition FROM timescaledb_information.continuous_aggregates`)
	if err != nil {
		tb.Fatal(err)
	}
	defs := map[string]string{}
	for rows.Next() {
		var v, def string
		if err := rows.Scan(&v, &def); err != nil {
			tb.Fatal(err)
		}
		defs[v] = def
	}
	rows.Close()
	if len(defs) == 0 {
		tb.Fatal("no continuous aggregates: the report migrations are missing")
	}
	done := map[string]bool{}
	var refresh func(v string)
	refresh = func(v string) {
		if done[v] {
			return
		}
		done[v] = true
		for src := range defs {
			if src != v && regexp.MustCompile(`\b`+src+`\b`).MatchString(defs[v]) {
				refresh(src)
			}
		}
		t0 := time.Now()
		var since, until *time.Time
		if !from.IsZero() {
			since = &from
		}
		if !to.IsZero() {
			until = &to
		}
		if err := storagetest.RefreshAggregate(ctx, pool, v, since, until); err != nil {
			tb.Fatal(err)
		}
		tb.Logf("refresh %s: %v", v, time.Since(t0).Round(time.Millisecond))
		benchProgress("refresh %s: %v", v, time.Since(t0).Round(time.Millisecond))
	}
	names := slices.Sorted(maps.Keys(defs))
	for _, v := range names {
		if include == nil || include(v) {
			refresh(v)
		}
	}
}

// runStoragePolicies runs every retention and columnstore job once, so that the data has the
// shape a year of production gives it: raw events for 30 days (compressed after 2), hourly
// aggregates for 6 months (compressed after 7 days).
func runStoragePolicies(ctx context.Context, tb testing.TB, pool *pgxpool.Pool) {
	tb.Helper()
	rows, err := pool.Query(ctx, `SELECT job_id FROM timescaledb_information.jobs
		WHERE proc_name IN ('policy_retention', 'policy_compression') ORDER BY job_id`)
	if err != nil {
		tb.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		tb.Fatal(err)
	}
	for _, id := range ids {
		if err := storagetest.RunJob(ctx, pool, int(id)); err != nil {
			tb.Fatal(err)
		}
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func BenchmarkReportQueries(b *testing.B) {
	ctx := context.Background()
	rooms, days := envInt("BENCH_REPORT_ROOMS", 100), envInt("BENCH_REPORT_DAYS", 365)
	// BENCH_REPORT_DSN: a database to keep between runs (seeded on the first, reused after),
	// e.g. node dev/tsdb/server.mjs --port 55490 --data-dir /tmp/benchdata.
	var pool *pgxpool.Pool
	dsn := os.Getenv("BENCH_REPORT_DSN")
	if dsn != "" {
		pool = storagetest.Connect(b, dsn, true)
	} else {
		pool = storagetest.NewDatabase(b)
	}
	// Logged by each sub-benchmark: go test drops the output of a benchmark that has sub-benchmarks.
	engine := storagetest.Engine(ctx, pool)
	// BENCH_REPORT_EXPLAIN=DIR (with BENCH_REPORT_DSN): before timing each case, write the
	// EXPLAIN (ANALYZE, BUFFERS) of every query one Stats, Totals and PeakHours run sends to
	// DIR/<case>.txt (docs/benchmarks.md, "Reports at 1,000 rooms: the plans").
	explainDir := os.Getenv("BENCH_REPORT_EXPLAIN")
	var tracer *queryRecorder
	var traced *pgxpool.Pool
	if explainDir != "" && dsn != "" {
		tracer = &queryRecorder{}
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			b.Fatal(err)
		}
		cfg.ConnConfig.Tracer = tracer
		if traced, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(traced.Close)
	}
	end, rooms := seedReportBench(ctx, b, pool, rooms, days, envInt("BENCH_REPORT_DENSE_DAYS", 0))
	// BENCH_REPORT_PLAN_CACHE=force_generic_plan: plan every query without its parameters' values,
	// as a server does for pgx's default statement cache after five runs of a prepared statement.
	// The local engine otherwise plans each query for its values (cache_describe: the unnamed
	// statement), where a room filter that only a custom plan can use looks fine. Set in the one
	// session of the local engine (which every client of it shares) and reset after.
	if mode := os.Getenv("BENCH_REPORT_PLAN_CACHE"); mode != "" {
		if !slices.Contains([]string{"auto", "force_generic_plan", "force_custom_plan"}, mode) {
			b.Fatalf("BENCH_REPORT_PLAN_CACHE=%q: want auto, force_generic_plan or force_custom_plan", mode)
		}
		if _, err := pool.Exec(ctx, "SET plan_cache_mode = "+mode); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _, _ = pool.Exec(context.Background(), "RESET plan_cache_mode") })
	}
	start := end.AddDate(0, 0, -days)

	// BENCH_REPORT_ENGINE_PID: the pid of the local engine (dev/tsdb/server.mjs, which runs the
	// database on its main thread): each case also reports the CPU time that thread spent on one
	// Report (engine-cpu-*-ms), which, unlike the time waited, hardly depends on what else the
	// machine runs.
	enginePID := os.Getenv("BENCH_REPORT_ENGINE_PID")
	if enginePID != "" {
		cpuOf(b, enginePID)
	}
	reports := storage.NewReports(pool, time.UTC)
	// Every room (no room_ids) over each granularity's typical range, named by the granularity,
	// and every room's hours over one day; then a few rooms picked out of the hundred, named by
	// granularity, rooms and range. The first of those is the seed design's own acceptance test:
	// one room's hourly report over 24 hours.
	for _, tc := range []struct {
		name  string
		g     presencestats.Granularity
		start time.Time
		rooms int // 0: every room
	}{
		{"hour", presencestats.Hour, end.AddDate(0, 0, -7), 0},
		{"day", presencestats.Day, end.AddDate(0, 0, -90), 0},
		{"week", presencestats.Week, end.AddDate(-1, 0, 0), 0},
		{"month", presencestats.Month, start, 0},
		{"year", presencestats.Year, start, 0},
		{"hour-24h", presencestats.Hour, end.AddDate(0, 0, -1), 0},
		{"hour-1room-24h", presencestats.Hour, end.AddDate(0, 0, -1), 1},
		{"hour-1room-7d", presencestats.Hour, end.AddDate(0, 0, -7), 1},
		{"hour-10rooms-7d", presencestats.Hour, end.AddDate(0, 0, -7), 10},
		{"day-1room-90d", presencestats.Day, end.AddDate(0, 0, -90), 1},
		{"month-1room-all", presencestats.Month, start, 1},
		{"year-1room-all", presencestats.Year, start, 1},
	} {
		q := presencestats.ReportQuery{Start: tc.start, End: end, Granularity: tc.g, Metrics: presencestats.Metrics}
		for i := range tc.rooms {
			q.RoomIDs = append(q.RoomIDs, benchRoom(i))
		}
		if traced != nil {
			explainReport(ctx, b, traced, tracer, q, filepath.Join(explainDir, tc.name+".txt"))
		}
		b.Run(tc.name, func(b *testing.B) {
			b.Logf("engine: %s", engine)
			var whole, stats, totals, peaks, engineCPU []time.Duration
			rows := 0
			for b.Loop() {
				// The whole report as the JSON API asks for it, then each part on its own.
				cpu0 := cpuOf(b, enginePID)
				t0 := time.Now()
				rows = 0
				if _, _, err := reports.Report(ctx, q, func(presencestats.ReportRow) error { rows++; return nil }); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if enginePID != "" {
					engineCPU = append(engineCPU, cpuOf(b, enginePID)-cpu0)
				}
				if err := reports.Stats(ctx, q, func(presencestats.ReportRow) error { return nil }); err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				if _, err := reports.Totals(ctx, q); err != nil {
					b.Fatal(err)
				}
				t3 := time.Now()
				if _, err := reports.PeakHours(ctx, q); err != nil {
					b.Fatal(err)
				}
				t4 := time.Now()
				whole = append(whole, t1.Sub(t0))
				stats, totals, peaks = append(stats, t2.Sub(t1)), append(totals, t3.Sub(t2)), append(peaks, t4.Sub(t3))
			}
			b.ReportMetric(float64(rows), "rows")
			b.ReportMetric(float64(rooms), "rooms") // the size seeded (BENCH_REPORT_ROOMS): run at 100 and 1,000 to compare
			b.ReportMetric(percentileMS(whole, 50), "p50-ms")
			b.ReportMetric(percentileMS(whole, 95), "p95-ms")
			b.ReportMetric(percentileMS(stats, 50), "stats-p50-ms")
			b.ReportMetric(percentileMS(stats, 95), "stats-p95-ms")
			b.ReportMetric(percentileMS(totals, 95), "totals-p95-ms")
			b.ReportMetric(percentileMS(peaks, 95), "peakhours-p95-ms")
			if enginePID != "" {
				b.ReportMetric(percentileMS(engineCPU, 50), "engine-cpu-p50-ms")
				b.ReportMetric(percentileMS(engineCPU, 95), "engine-cpu-p95-ms")
			}
		})
	}
}

// seedReportBench seeds pool for BenchmarkReportQueries, or finishes an interrupted seed, and
// returns the end of the seeded data and its number of rooms. Each step (events, refresh,
// policies) is recorded as done in bench_report_seed, a table of the benchmark's own (not a
// migration), so that a kept database (BENCH_REPORT_DSN) is seeded once, can be stopped and
// resumed, and is then reused whatever BENCH_REPORT_ROOMS says.
func seedReportBench(ctx context.Context, b *testing.B, pool *pgxpool.Pool, rooms, days, dense int) (time.Time, int) {
	b.Helper()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bench_report_seed (
		end_ts timestamptz NOT NULL, rooms int NOT NULL, days int NOT NULL, dense int NOT NULL,
		seeded bool NOT NULL DEFAULT false, refreshed bool NOT NULL DEFAULT false, policies bool NOT NULL DEFAULT false)`); err != nil {
		b.Fatal(err)
	}
	var end time.Time
	var seeded, refreshed, policies bool
	err := pool.QueryRow(ctx, `SELECT end_ts, rooms, days, dense, seeded, refreshed, policies FROM bench_report_seed`).
		Scan(&end, &rooms, &days, &dense, &seeded, &refreshed, &policies)
	switch {
	case err == pgx.ErrNoRows:
		// A database seeded before bench_report_seed existed: its data ends where room 0's does.
		var last *time.Time
		if err := pool.QueryRow(ctx, `SELECT max(ts) FROM presence_events WHERE room_id = md5('bench-room-0')::uuid`).Scan(&last); err != nil {
			b.Fatal(err)
		}
		end = time.Now().UTC().Truncate(time.Hour)
		if last != nil {
			end = last.UTC().Truncate(time.Hour).Add(time.Hour)
			if err := pool.QueryRow(ctx, `SELECT count(DISTINCT room_id) FROM presence_room_yearly`).Scan(&rooms); err != nil {
				b.Fatal(err)
			}
			seeded, refreshed, policies = true, true, true
		}
		if _, err := pool.Exec(ctx, `INSERT INTO bench_report_seed VALUES ($1, $2, $3, $4, $5, $5, $5)`, end, rooms, days, dense, seeded); err != nil {
			b.Fatal(err)
		}
	case err != nil:
		b.Fatal(err)
	}
	mark := func(step string) {
		if _, err := pool.Exec(ctx, `UPDATE bench_report_seed SET `+step+` = true`); err != nil {
			b.Fatal(err)
		}
	}
	if !seeded {
		t0 := time.Now()
		n := seedYear(ctx, b, pool, rooms, days, dense, end)
		b.Logf("seeded %d events for %d rooms over %d days (dense: %d) in %v", n, rooms, days, dense, time.Since(t0).Round(time.Millisecond))
		benchProgress("seeded %d events for %d rooms over %d days (dense: %d) in %v", n, rooms, days, dense, time.Since(t0).Round(time.Millisecond))
		mark("seeded")
	}
	if !refreshed {
		t0 := time.Now()
		refreshAggregates(ctx, b, pool, end, nil)
		b.Logf("refreshed every aggregate in %v", time.Since(t0).Round(time.Millisecond))
		benchProgress("refreshed every aggregate in %v", time.Since(t0).Round(time.Millisecond))
		mark("refreshed")
	}
	if !policies && os.Getenv("BENCH_REPORT_NO_POLICIES") != "" {
		// Measure before the retention and columnstore policies have run (a seed still going on):
		// the rows read are the same, not compressed, and the raw events are not dropped yet.
		b.Logf("BENCH_REPORT_NO_POLICIES: the retention and columnstore policies have not run on this data")
		policies = true
	}
	if !policies {
		t0 := time.Now()
		runStoragePolicies(ctx, b, pool)
		b.Logf("ran the retention and columnstore policies in %v", time.Since(t0).Round(time.Millisecond))
		benchProgress("ran the retention and columnstore policies in %v", time.Since(t0).Round(time.Millisecond))
		mark("policies")
	}
	b.Logf("seeded data: %d rooms, %d days (the last %d dense; 0: all) ending at %s", rooms, days, dense, end)
	return end, rooms
}

// cpuOf returns the CPU time the main thread of process pid has run, from
// /proc/<pid>/task/<pid>/schedstat (nanoseconds); 0 for no pid.
func cpuOf(tb testing.TB, pid string) time.Duration {
	tb.Helper()
	if pid == "" {
		return 0
	}
	b, err := os.ReadFile("/proc/" + pid + "/task/" + pid + "/schedstat")
	if err != nil {
		tb.Fatalf("BENCH_REPORT_ENGINE_PID: %v", err)
	}
	ns, err := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
	if err != nil {
		tb.Fatalf("BENCH_REPORT_ENGINE_PID: %s: %v", b, err)
	}
	return time.Duration(ns)
}

// benchRoom is the id seedYear gives room i: md5('bench-room-i')::uuid.
func benchRoom(i int) uuid.UUID {
	return uuid.UUID(md5.Sum([]byte(fmt.Sprintf("bench-room-%d", i))))
}

// percentileMS returns the p-th percentile of ds in milliseconds (nearest rank).
func percentileMS(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return float64(s[max(i, 1)-1].Microseconds()) / 1000
}

// queryRecorder is a pgx tracer that keeps the queries sent while on, for explainReport.
type queryRecorder struct {
	mu      sync.Mutex
	on      bool
	part    string
	queries []recordedQuery
}

type recordedQuery struct {
	part, sql string
	args      []any
}

func (r *queryRecorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.on {
		r.queries = append(r.queries, recordedQuery{r.part, d.SQL, d.Args})
	}
	return ctx
}

func (r *queryRecorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *queryRecorder) record(part string, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.part, r.on = part, on
}

// explainReport runs Stats, Totals and PeakHours of q once over traced, then writes to path the
// EXPLAIN (ANALYZE, BUFFERS) of each query they sent, under its part's name.
func explainReport(ctx context.Context, tb testing.TB, traced *pgxpool.Pool, rec *queryRecorder, q presencestats.ReportQuery, path string) {
	tb.Helper()
	reports := storage.NewReports(traced, time.UTC)
	rec.mu.Lock()
	rec.queries = nil
	rec.mu.Unlock()
	if _, err := reports.Rooms(ctx); err != nil { // the materialized tables' names, read once, not part of a report
		tb.Fatal(err)
	}
	if _, err := reports.PeakHours(ctx, q); err != nil {
		tb.Fatal(err)
	}
	for _, part := range []string{"stats", "totals", "peak hours"} {
		rec.record(part, true)
		var err error
		switch part {
		case "stats":
			err = reports.Stats(ctx, q, func(presencestats.ReportRow) error { return nil })
		case "totals":
			_, err = reports.Totals(ctx, q)
		default:
			_, err = reports.PeakHours(ctx, q)
		}
		rec.record("", false)
		if err != nil {
			tb.Fatal(err)
		}
	}
	var out strings.Builder
	for i, rq := range rec.queries {
		rows, err := traced.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+rq.sql, rq.args...)
		if err != nil {
			tb.Fatalf("explain %s query %d: %v", rq.part, i, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			tb.Fatalf("explain %s query %d: %v", rq.part, i, err)
		}
		first := strings.SplitN(strings.TrimSpace(rq.sql), "\n", 2)[0]
		fmt.Fprintf(&out, "=== %s, query %d: %s\n%s\n\n", rq.part, i, first, strings.Join(lines, "\n"))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
}
