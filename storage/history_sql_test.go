package storage_test

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"presencestats"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

// recordHourOfUsers records n users in a fresh room during the hour starting at h: user i
// connects at h+2i minutes and leaves at h+50+i minutes, with heartbeats; online_after and
// online_delta as the live service computes them. It returns the room.
func recordHourOfUsers(tb testing.TB, pool *pgxpool.Pool, h time.Time, n int) uuid.UUID {
	tb.Helper()
	room := uuid.New()
	var events []presencestats.PresenceEvent
	for i := range n {
		start := h.Add(time.Duration(2*i) * time.Minute)
		evs := sessionEvents(room, uuid.New(), start, time.Duration(50-i)*time.Minute)
		events = append(events, evs...)
	}
	// online_after/online_delta in time order: each user has one session.
	sortEvents(events)
	online := 0
	for i := range events {
		switch events[i].Type {
		case presencestats.EventConnected:
			online++
		case presencestats.EventDisconnected:
			online--
		}
		events[i].OnlineAfter = online
	}
	if err := newCollector(tb, pool, nil).WriteEvents(context.Background(), events); err != nil {
		tb.Fatal(err)
	}
	waitRoomEvents(tb, pool, room, len(events), 10*time.Second)
	return room
}

func sortEvents(evs []presencestats.PresenceEvent) {
	for i := 1; i < len(evs); i++ {
		for j := i; j > 0 && evs[j].TS.Before(evs[j-1].TS); j-- {
			evs[j], evs[j-1] = evs[j-1], evs[j]
		}
	}
}

func hourRow(ctx context.Context, tb testing.TB, reports *storage.Reports, room uuid.UUID, g presencestats.Granularity, h time.Time) presencestats.ReportRow {
	tb.Helper()
	var rows []presencestats.ReportRow
	q := presencestats.ReportQuery{RoomIDs: []uuid.UUID{room}, Start: h, End: h.Add(time.Minute), Granularity: g}
	if err := reports.Stats(ctx, q, func(r presencestats.ReportRow) error { rows = append(rows, r); return nil }); err != nil {
		tb.Fatal(err)
	}
	if len(rows) != 1 {
		tb.Fatalf("rows: got %d, want 1", len(rows))
	}
	return rows[0]
}

// TestHistoryHourOfTenUsers is the seed's test, also read through the analysts' view.
func TestHistoryHourOfTenUsers(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.SharedDatabase(t)
	h := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	room := recordHourOfUsers(t, pool, h, 10)
	// What the refresh policies of the hourly aggregates, and of the by-day ones hour reports read
	// (migration 9), do within the hour (end offset 1 hour). Without it, the rows are invisible
	// when another test of the shared database (TestHistoryPolicies) moved the watermarks past h:
	// the real-time part starts at the watermark. The window is h's day, a by-day bucket.
	day := presencestats.Day.Truncate(h, time.UTC)
	refreshWindow(ctx, t, pool, day, day.AddDate(0, 0, 1), regexp.MustCompile(`_hourly$|_hours_daily$`).MatchString)
	reports := storage.NewReports(pool, time.UTC)
	got := hourRow(ctx, t, reports, room, presencestats.Hour, h)
	if got.PeakOnline != 10 || got.AvgOnline <= 0 || got.UniqueUsers != 10 || got.TotalConnections != 10 {
		t.Fatalf("hour of 10 users: %+v", got)
	}
	// Users are online 50-i minutes each: the average over the hour is sum(50-i)/60.
	if want := 455.0 / 60; math.Abs(got.AvgOnline-want) > 1e-6 {
		t.Fatalf("avg online: got %v, want %v", got.AvgOnline, want)
	}
	if want := 45.5 * 60; math.Abs(got.AvgSessionDuration-want) > 1e-6 {
		t.Fatalf("avg session: got %v, want %v", got.AvgSessionDuration, want)
	}
	var peak, unique, conns int64
	var avg float64
	err := pool.QueryRow(ctx, `
		SELECT peak_online_count, avg_online_count, unique_users, total_connections
		FROM stats.room_hourly WHERE room_id = $1 AND bucket = $2`, room, h).Scan(&peak, &avg, &unique, &conns)
	if err != nil {
		t.Fatal(err)
	}
	if peak != got.PeakOnline || unique != got.UniqueUsers || conns != got.TotalConnections || math.Abs(avg-got.AvgOnline) > 1e-6 {
		t.Fatalf("stats.room_hourly: peak %d avg %v unique %d connections %d; Reports: %+v", peak, avg, unique, conns, got)
	}
}

func jobID(ctx context.Context, tb testing.TB, pool *pgxpool.Pool, proc, table string) int {
	tb.Helper()
	var id int
	err := pool.QueryRow(ctx, `SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = $1 AND hypertable_name = $2`, proc, table).Scan(&id)
	if err != nil {
		tb.Fatalf("job %s on %s: %v", proc, table, err)
	}
	return id
}

// TestHistoryRetentionKeepsAggregates: raw events 31 days old are dropped by the retention job,
// while the aggregates of their hour and day remain, also after the hourly refresh job runs
// (its window does not reach back to dropped data).
func TestHistoryRetentionKeepsAggregates(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.SharedDatabase(t)
	h := time.Now().UTC().Truncate(time.Hour).Add(-(31*24 + 2) * time.Hour)
	room := recordHourOfUsers(t, pool, h, 10)
	// What the refresh policies did when these events were fresh.
	refreshWindow(ctx, t, pool, h.AddDate(0, 0, -2), h.AddDate(0, 0, 2), regexp.MustCompile(`_(hourly|daily)$`).MatchString)
	reports := storage.NewReports(pool, time.UTC)
	before := map[presencestats.Granularity]presencestats.ReportRow{}
	for _, g := range []presencestats.Granularity{presencestats.Hour, presencestats.Day} {
		before[g] = hourRow(ctx, t, reports, room, g, h)
		if before[g].PeakOnline != 10 || before[g].UniqueUsers != 10 {
			t.Fatalf("%s before retention: %+v", g, before[g])
		}
	}
	if err := storagetest.RunJob(ctx, pool, jobID(ctx, t, pool, "policy_retention", "presence_events")); err != nil {
		t.Fatal(err)
	}
	if n, err := countRoomEvents(ctx, pool, room); err != nil || n != 0 {
		t.Fatalf("raw events after retention: %d (%v), want 0", n, err)
	}
	if err := storagetest.RunJob(ctx, pool, jobID(ctx, t, pool, "policy_refresh_continuous_aggregate", "presence_room_hourly")); err != nil {
		t.Fatal(err)
	}
	for g, want := range before {
		if got := hourRow(ctx, t, reports, room, g, h); got != want {
			t.Fatalf("%s after retention:\n got  %+v\n want %+v", g, got, want)
		}
	}
}

// TestHistoryPolicies: every aggregate has its refresh policy, the hourly and daily ones their
// retention, the hourly ones their columnstore policy, and run_job succeeds for each job.
func TestHistoryPolicies(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.SharedDatabase(t)
	want := map[string]bool{}
	for _, kind := range []string{"room", "user"} {
		for _, level := range []string{"hourly", "daily", "weekly", "monthly", "yearly"} {
			want["policy_refresh_continuous_aggregate/presence_"+kind+"_"+level] = true
		}
		want["policy_retention/presence_"+kind+"_hourly"] = true
		if kind == "room" {
			for _, level := range []string{"hourly", "daily", "weekly", "monthly", "yearly"} {
				want["policy_refresh_continuous_aggregate/presence_room_users_"+level] = true
				want["policy_refresh_continuous_aggregate/presence_all_users_"+level] = true
				want["policy_refresh_continuous_aggregate/presence_total_"+level] = true
			}
			want["policy_retention/presence_total_hourly"] = true
			want["policy_retention/presence_total_daily"] = true
		}
		want["policy_retention/presence_"+kind+"_daily"] = true
		want["policy_compression/presence_"+kind+"_hourly"] = true
	}
	want["policy_retention/presence_events"] = true
	want["policy_compression/presence_events"] = true
	rows, err := pool.Query(ctx, `SELECT job_id, proc_name, hypertable_name FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL ORDER BY job_id`)
	if err != nil {
		t.Fatal(err)
	}
	type job struct {
		ID          int
		Proc, Table string
	}
	jobs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[job])
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, j := range jobs {
		got[j.Proc+"/"+j.Table] = true
	}
	for k := range want {
		if !got[k] {
			t.Errorf("missing job %s", k)
		}
	}
	// Finest first, as the scheduler would over time.
	for _, j := range jobs {
		t0 := time.Now()
		if err := storagetest.RunJob(ctx, pool, j.ID); err != nil {
			t.Errorf("%s on %s: %v", j.Proc, j.Table, err)
		}
		t.Logf("run_job(%d) %s on %s: %v", j.ID, j.Proc, j.Table, time.Since(t0).Round(time.Millisecond))
	}
}

// TestAnalystRole: presence_analyst reads every stats view and nothing else.
func TestAnalystRole(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.SharedDatabase(t)
	// SET LOCAL inside a transaction: the local database is one session shared by all clients.
	asAnalyst := func(sql string) error {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `SET LOCAL ROLE presence_analyst`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, sql)
		if err != nil {
			return err
		}
		rows.Close()
		return rows.Err()
	}
	for _, v := range []string{"room_hourly", "room_daily", "room_weekly", "room_monthly", "room_yearly",
		"room_users", "unique_users", "peak_hours", "report_timezone"} {
		if err := asAnalyst(`SELECT * FROM stats.` + v + ` LIMIT 5`); err != nil {
			t.Errorf("stats.%s as presence_analyst: %v", v, err)
		}
	}
	for _, table := range []string{"presence_events", "presence_room_hourly", "admin_audit_log", "report_settings"} {
		err := asAnalyst(`SELECT * FROM ` + table + ` LIMIT 1`)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("%s as presence_analyst: got %v, want permission denied (42501)", table, err)
		}
	}
}

// TestAnalystExamples runs the example queries of docs/analysts.md ("Example queries") as
// presence_analyst, so that the documentation cannot rot.
func TestAnalystExamples(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.SharedDatabase(t)
	doc, err := os.ReadFile(filepath.Join(storagetest.RepoRoot(t), "docs", "analysts.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "## Example queries")
	if !ok {
		t.Fatal(`docs/analysts.md has no "## Example queries" section`)
	}
	_, block, ok := strings.Cut(section, "```sql\n")
	if !ok {
		t.Fatal("no sql block in the Example queries section of docs/analysts.md")
	}
	block, _, _ = strings.Cut(block, "```")
	n := 0
	for _, q := range strings.Split(block, ";\n") {
		if strings.TrimSpace(q) == "" {
			continue
		}
		n++
		func() {
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, `SET LOCAL ROLE presence_analyst`); err != nil {
				t.Fatal(err)
			}
			rows, err := tx.Query(ctx, q)
			if err == nil {
				rows.Close()
				err = rows.Err()
			}
			if err != nil {
				t.Errorf("example %d: %v\n%s", n, err, q)
			}
		}()
	}
	if n != 5 {
		t.Fatalf("examples: got %d, want 5", n)
	}
}

// TestReportZone: serve's check refuses a REPORT_TIMEZONE other than the aggregates' zone, and
// the migrator refuses a zone PostgreSQL would not know.
func TestReportZone(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.SharedDatabase(t) // migrated with UTC
	if err := storage.CheckReportZone(ctx, pool, time.UTC); err != nil {
		t.Fatalf("UTC: %v", err)
	}
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := presencestats.ErrorCode(storage.CheckReportZone(ctx, pool, kolkata)), presencestats.EINVALID; got != want {
		t.Fatalf("Asia/Kolkata against UTC aggregates: got %q, want %q", got, want)
	}
	if _, _, err := storage.NewMigrator(pool, time.Local); presencestats.ErrorCode(err) != presencestats.EINVALID {
		t.Fatalf("NewMigrator(time.Local): got %v, want an EINVALID error", err)
	}
}
