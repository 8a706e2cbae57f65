package storage_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"presencestats/storage/storagetest"
)

// The local TimescaleDB is one PGlite session behind dev/tsdb/server.mjs; these tests check that
// the front lets several clients share it without their statements or transactions mixing.
func TestTimescaleFrontConcurrentClients(t *testing.T) {
	storagetest.SkipOnServer(t, "it tests dev/tsdb's front of the local engine")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ts := storagetest.StartTimescale(t, 0)
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&default_query_exec_mode=cache_describe", ts.Port)

	setup, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer setup.Close(ctx)
	if _, err := setup.Exec(ctx, `CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL); INSERT INTO counter VALUES (1, 0)`); err != nil {
		t.Fatal(err)
	}

	const clients, txPerClient = 8, 50
	var wg sync.WaitGroup
	errc := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				errc <- err
				return
			}
			defer conn.Close(ctx)
			for j := 0; j < txPerClient; j++ {
				// Read-modify-write: only correct if no other client's statements run inside it.
				err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
					var n int
					if err := tx.QueryRow(ctx, `SELECT n FROM counter WHERE id = $1`, 1).Scan(&n); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, `UPDATE counter SET n = $1 WHERE id = $2`, n+1, 1)
					return err
				})
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("client: %v", err)
	}
	var n int
	if err := setup.QueryRow(ctx, `SELECT n FROM counter WHERE id = 1`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if got, want := n, clients*txPerClient; got != want {
		t.Fatalf("counter: got %d, want %d (transactions interleaved)", got, want)
	}

	t.Run("disconnect inside a transaction rolls it back", func(t *testing.T) {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, `BEGIN`); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, `UPDATE counter SET n = -1 WHERE id = 1`); err != nil {
			t.Fatal(err)
		}
		// Drop the TCP connection without COMMIT or Terminate.
		if err := c.PgConn().Conn().Close(); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := setup.QueryRow(ctx, `SELECT n FROM counter WHERE id = 1`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if got, want := n, clients*txPerClient; got != want {
			t.Fatalf("after abandoned transaction: got %d, want %d", got, want)
		}
	})

	t.Run("an error in one client leaves the others working", func(t *testing.T) {
		_, err := setup.Exec(ctx, `SELECT * FROM no_such_table`)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "42P01" {
			t.Fatalf("got %v, want undefined_table", err)
		}
		var one int
		if err := setup.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil || one != 1 {
			t.Fatalf("after error: %v %d", err, one)
		}
	})
}

func TestSchemaHypertableColumnstoreAndPolicies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pool := storagetest.SharedDatabase(t)

	var segmentBy, orderBy string
	err := pool.QueryRow(ctx, `
		SELECT
		  (SELECT string_agg(attname, ',') FROM timescaledb_information.compression_settings
		    WHERE hypertable_name = 'presence_events' AND segmentby_column_index IS NOT NULL),
		  (SELECT string_agg(attname || CASE WHEN orderby_asc THEN ' ASC' ELSE ' DESC' END, ',')
		    FROM timescaledb_information.compression_settings
		    WHERE hypertable_name = 'presence_events' AND orderby_column_index IS NOT NULL)`).Scan(&segmentBy, &orderBy)
	if err != nil {
		t.Fatal(err)
	}
	if segmentBy != "room_id" || orderBy != "ts DESC" {
		t.Fatalf("columnstore settings: segmentby %q orderby %q, want room_id / ts DESC", segmentBy, orderBy)
	}

	var chunk string
	if err := pool.QueryRow(ctx, `SELECT d.time_interval::text FROM timescaledb_information.dimensions d
		WHERE d.hypertable_name = 'presence_events' AND d.column_name = 'ts'`).Scan(&chunk); err != nil {
		t.Fatal(err)
	}
	if chunk != "1 day" {
		t.Fatalf("chunk interval %q, want 1 day", chunk)
	}

	rows, err := pool.Query(ctx, `SELECT job_id, proc_name, config::text FROM timescaledb_information.jobs
		WHERE hypertable_name = 'presence_events' ORDER BY job_id`)
	if err != nil {
		t.Fatal(err)
	}
	type job struct {
		id           int
		proc, config string
	}
	var jobs []job
	for rows.Next() {
		var j job
		if err := rows.Scan(&j.id, &j.proc, &j.config); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	procs := map[string]bool{}
	for _, j := range jobs {
		procs[j.proc] = true
	}
	for _, want := range []string{"policy_retention", "policy_compression"} {
		if !procs[want] {
			t.Errorf("no %s job on presence_events (jobs: %+v)", want, jobs)
		}
	}
	// No background scheduler here: every policy job must run in the foreground.
	for _, j := range jobs {
		if err := storagetest.RunJob(ctx, pool, j.id); err != nil {
			t.Errorf("%s: %v", j.proc, err)
		}
	}
}

func TestReplayedEventInsertsNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := storagetest.SharedDatabase(t)
	id, room := uuid.New(), uuid.New()
	ts := time.Now().UTC().Truncate(time.Microsecond)
	ip := netip.MustParseAddr("203.0.113.7")
	insert := `INSERT INTO presence_events (event_id, ts, room_id, user_id, session_id, event_type, online_after, online_delta, user_ip)
		VALUES ($1, $2, $3, $4, $5, 'connected', 1, 1, $6) ON CONFLICT DO NOTHING`
	user, session := uuid.New(), uuid.New()
	for i, want := range []int64{1, 0} {
		tag, err := pool.Exec(ctx, insert, id, ts, room, user, session, ip)
		if err != nil {
			t.Fatal(err)
		}
		if got := tag.RowsAffected(); got != want {
			t.Fatalf("insert %d: %d rows, want %d", i+1, got, want)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM presence_events WHERE room_id = $1`, room).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d rows, want 1", n)
	}
	// The event type is enforced by the schema.
	_, err := pool.Exec(ctx, `INSERT INTO presence_events (event_id, ts, room_id, user_id, session_id, event_type, online_after)
		VALUES ($1, now(), $2, $2, $2, 'teleported', 0)`, uuid.New(), room)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23514" {
		t.Fatalf("unknown event type: got %v, want check_violation", err)
	}
}
