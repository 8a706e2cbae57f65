package storage_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"presencestats/storage/storagetest"
)

// On a real server (TEST_DATABASE_URL), TimescaleDB's scheduler runs every policy the schema
// registers: with some events in a fresh database (old enough for the retention and columnstore
// policies to find chunks), every job is scheduled to start at once and each must run and succeed,
// as timescaledb_information.job_stats reports it.
func TestSchedulerRunsEveryPolicy(t *testing.T) {
	if !storagetest.OnServer() {
		t.Skip("needs a real server (TEST_DATABASE_URL): the local engine has no background scheduler, its jobs run only by CALL run_job")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pool := storagetest.NewDatabase(t) // jobs paused
	room := uuid.New()
	for _, age := range []time.Duration{40 * 24 * time.Hour, 3 * 24 * time.Hour, time.Hour} {
		ts := time.Now().Add(-age)
		if _, err := pool.Exec(ctx, `INSERT INTO presence_events (event_id, ts, room_id, user_id, session_id, event_type, online_after, online_delta)
			VALUES ($1, $2, $3, $4, $5, 'connected', 1, 1)`, uuid.New(), ts, room, uuid.New(), uuid.New()); err != nil {
			t.Fatal(err)
		}
	}
	var jobs int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM (
		SELECT alter_job(job_id, scheduled => true, next_start => now()) FROM timescaledb_information.jobs WHERE job_id >= 1000) j`).Scan(&jobs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Paused again, so that nothing is running when the database is dropped.
		_, _ = pool.Exec(context.Background(), `SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE job_id >= 1000`)
	})
	type stat struct {
		id             int
		proc, table    string
		status         *string
		runs, failures int64
	}
	var pending, failed []stat
	deadline := time.Now().Add(4 * time.Minute)
	for {
		rows, err := pool.Query(ctx, `SELECT j.job_id, j.proc_name, coalesce(j.hypertable_name, ''), s.last_run_status, coalesce(s.total_runs, 0), coalesce(s.total_failures, 0)
			FROM timescaledb_information.jobs j LEFT JOIN timescaledb_information.job_stats s USING (job_id)
			WHERE j.job_id >= 1000 ORDER BY j.job_id`)
		if err != nil {
			t.Fatal(err)
		}
		pending, failed = nil, nil
		n := 0
		for rows.Next() {
			var s stat
			if err := rows.Scan(&s.id, &s.proc, &s.table, &s.status, &s.runs, &s.failures); err != nil {
				t.Fatal(err)
			}
			n++
			switch {
			case s.failures > 0 || (s.status != nil && *s.status == "Failed"):
				failed = append(failed, s)
			case s.runs == 0 || s.status == nil || *s.status != "Success":
				pending = append(pending, s)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if n != jobs {
			t.Fatalf("%d jobs scheduled, %d in the jobs view", jobs, n)
		}
		if len(failed) > 0 || len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	for _, s := range failed {
		var msg string
		_ = pool.QueryRow(ctx, `SELECT err_message FROM timescaledb_information.job_errors WHERE job_id = $1 ORDER BY finish_time DESC LIMIT 1`, s.id).Scan(&msg)
		t.Errorf("job %d %s on %s failed (%d failures): %s", s.id, s.proc, s.table, s.failures, msg)
	}
	for _, s := range pending {
		t.Errorf("job %d %s on %s has not run successfully within 4 minutes (runs %d)", s.id, s.proc, s.table, s.runs)
	}
	if len(failed) == 0 && len(pending) == 0 {
		t.Logf("all %d jobs ran and succeeded", jobs)
	}
}
