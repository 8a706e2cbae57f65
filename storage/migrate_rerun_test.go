package storage_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"presencestats/migrations"
	"presencestats/storage/storagetest"
)

// TestMigrationsRerunAfterInterruption: a NO TRANSACTION migration interrupted after any of its
// statements (a lost connection, a deploy timeout, a killed pod) leaves those statements applied,
// and goose runs the whole file again at the next `migrate up`. For every such migration and
// every k, that re-run must succeed and leave the schema a clean run leaves.
//
// The statements are the ones goose itself executes: its SQL parser is internal
// (github.com/pressly/goose/v3/internal/sqlparser), so a clean run through a database/sql driver
// that records what goose sends is the closest public way to its split. Then, for k = 1..n, the
// k-th statement is applied to the state after k-1 (the interruption after k), statements 1..k are
// run again (what the re-run does before it reaches new ground) and must fail nothing and change
// nothing: from there the re-run is the clean run's statements k+1..n on the clean run's state.
// After the last statement (an interruption before goose recorded the version), goose's own
// `up` runs the whole file again and the schema must equal the clean run's. Down migrations are
// exercised on the way: each clean run is undone before the interrupted ones and must restore the
// schema it started from.
// Cost: one fresh instance; about 930 re-run statements and 190 schema snapshots.
func TestMigrationsRerunAfterInterruption(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ts := storagetest.StartTimescale(t, 0)
	pool := storagetest.Connect(t, ts.DSN(), false)
	fsys, err := migrations.WithReportZone(nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &stmtRecorder{}
	db := sql.OpenDB(recordingConnector{Connector: stdlib.GetPoolConnector(pool), rec: rec})
	defer db.Close()
	// database/sql keeps idle connections; each holds one of the pool's, and the local engine's
	// pool has one: give it back after every use so that pool.Exec can run between goose's calls.
	db.SetMaxIdleConns(0)
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys)
	if err != nil {
		t.Fatal(err)
	}
	noTx := 0
	for _, src := range p.ListSources() {
		began := time.Now()
		before := schemaSnapshot(ctx, t, pool)
		rec.start()
		if _, err := p.UpByOne(ctx); err != nil {
			t.Fatalf("clean up of %s: %v", src.Path, err)
		}
		stmts, inTx := rec.stop()
		if inTx {
			continue // one transaction: an interruption leaves nothing behind
		}
		noTx++
		clean := schemaSnapshot(ctx, t, pool)
		if _, err := p.Down(ctx); err != nil {
			t.Fatalf("down of %s: %v", src.Path, err)
		}
		if diff := snapshotDiff(before, schemaSnapshot(ctx, t, pool)); diff != "" {
			t.Fatalf("down of %s does not restore the schema before it:\n%s", src.Path, diff)
		}
		for k := 1; k <= len(stmts); k++ {
			if _, err := pool.Exec(ctx, stmts[k-1]); err != nil {
				t.Fatalf("%s statement %d on the state after %d: %v\n%s", src.Path, k, k-1, err, stmts[k-1])
			}
			if k == len(stmts) {
				break // goose's own re-run below
			}
			applied := schemaSnapshot(ctx, t, pool)
			for i := 1; i <= k; i++ {
				if _, err := pool.Exec(ctx, stmts[i-1]); err != nil {
					t.Fatalf("%s interrupted after statement %d: re-running statement %d fails: %v\n%s", src.Path, k, i, err, stmts[i-1])
				}
			}
			if diff := snapshotDiff(applied, schemaSnapshot(ctx, t, pool)); diff != "" {
				t.Fatalf("%s interrupted after statement %d: re-running statements 1..%d changes the schema:\n%s", src.Path, k, k, diff)
			}
		}
		if _, err := p.UpByOne(ctx); err != nil {
			t.Fatalf("%s: up after an interruption after its last statement: %v", src.Path, err)
		}
		if diff := snapshotDiff(clean, schemaSnapshot(ctx, t, pool)); diff != "" {
			t.Fatalf("%s: up after an interruption after its last statement differs from a clean run:\n%s", src.Path, diff)
		}
		t.Logf("%s: %d statements, every interruption point re-run (%v)", src.Path, len(stmts), time.Since(began).Round(time.Millisecond))
	}
	if noTx < 6 {
		t.Fatalf("%d NO TRANSACTION migrations found, want at least 6 (2, 4, 6, 7, 8, 9)", noTx)
	}
}

// snapshotDiff returns the lines only in a or only in b (both sorted), or "" when equal.
func snapshotDiff(a, b []string) string {
	count := map[string]int{}
	for _, l := range a {
		count[l]++
	}
	for _, l := range b {
		count[l]--
	}
	var out []string
	for _, l := range a {
		if count[l] > 0 {
			out = append(out, "- "+l)
			count[l]--
		}
	}
	for _, l := range b {
		if count[l] < 0 {
			out = append(out, "+ "+l)
			count[l]++
		}
	}
	return strings.Join(out, "\n")
}

// schemaSnapshot is what a migration makes, as sorted lines free of internal ids: schemas,
// relations, columns, view and aggregate definitions, indexes, constraints, functions (and
// their privileges), continuous aggregates, hypertables, columnstore settings, jobs with their
// configs, roles, and the report zone. Plain catalog SQL, valid on PostgreSQL 15.
func schemaSnapshot(ctx context.Context, tb testing.TB, pool *pgxpool.Pool) []string {
	tb.Helper()
	rows, err := pool.Query(ctx, schemaSnapshotSQL)
	if err != nil {
		tb.Fatalf("schema snapshot: %v", err)
	}
	lines, err := collectStrings(rows)
	if err != nil {
		tb.Fatalf("schema snapshot: %v", err)
	}
	var zone *string
	if err := pool.QueryRow(ctx, `SELECT to_regclass('report_settings')::text`).Scan(&zone); err != nil {
		tb.Fatalf("schema snapshot: %v", err)
	}
	if zone != nil {
		rows, err := pool.Query(ctx, `SELECT 'report_settings ' || timezone FROM report_settings`)
		if err != nil {
			tb.Fatalf("schema snapshot: %v", err)
		}
		more, err := collectStrings(rows)
		if err != nil {
			tb.Fatalf("schema snapshot: %v", err)
		}
		lines = append(lines, more...)
	}
	return lines
}

func collectStrings(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
	Close()
}) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// The ids TimescaleDB gives its internal objects change when an aggregate is made again: names
// are mapped to the aggregate's view, and ids inside definitions are replaced by N.
const schemaSnapshotSQL = `
WITH ours AS (
    SELECT oid, nspname, nspacl FROM pg_namespace
    WHERE nspname !~ '^(pg_|_timescaledb|timescaledb_)' AND nspname <> 'information_schema'
), mat AS (
    SELECT materialization_hypertable_name AS n, view_schema || '.' || view_name AS v
    FROM timescaledb_information.continuous_aggregates
), rels AS (
    SELECT c.oid, c.relname, c.relkind, c.relacl, n.nspname
    FROM pg_class c JOIN ours n ON n.oid = c.relnamespace
    WHERE c.relname NOT LIKE 'goose_db_version%'
      AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
), lines AS (
    SELECT 'schema ' || nspname || ' acl=' || coalesce(nspacl::text, '') AS l FROM ours
    UNION ALL
    SELECT 'rel ' || nspname || '.' || relname || ' ' || relkind::text || ' acl=' || coalesce(relacl::text, '')
           || ' ' || coalesce(obj_description(oid, 'pg_class'), '')
    FROM rels
    UNION ALL
    SELECT 'col ' || r.nspname || '.' || r.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
           || coalesce(' ' || col_description(r.oid, a.attnum), '')
    FROM rels r
    JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    WHERE r.relkind IN ('r', 'v', 'm', 'p', 'f')
    UNION ALL
    SELECT 'view ' || nspname || '.' || relname || ' ' || md5(regexp_replace(pg_get_viewdef(oid),
           '(_materialized_hypertable_|_partial_view_|_direct_view_|cagg_watermark\()[0-9]+', '\1N', 'g'))
    FROM rels WHERE relkind IN ('v', 'm')
    UNION ALL
    SELECT 'index ' || i.schemaname || '.' || i.indexname || ' ' || i.indexdef
    FROM pg_indexes i JOIN ours n ON n.nspname = i.schemaname
    WHERE i.tablename NOT LIKE 'goose_db_version%'
    UNION ALL
    SELECT 'constraint ' || r.nspname || '.' || r.relname || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
    FROM pg_constraint co JOIN rels r ON r.oid = co.conrelid
    UNION ALL
    SELECT 'func ' || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') '
           || md5(pg_get_functiondef(p.oid)) || ' acl=' || coalesce(p.proacl::text, '')
    FROM pg_proc p JOIN ours n ON n.oid = p.pronamespace
    WHERE p.prokind IN ('f', 'p')
      AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 'cagg ' || ca.view_schema || '.' || ca.view_name || ' on ' || coalesce(m.v, ca.hypertable_schema || '.' || ca.hypertable_name)
           || ' materialized_only=' || ca.materialized_only || ' columnstore=' || ca.compression_enabled
           || ' finalized=' || ca.finalized || ' ' || md5(regexp_replace(ca.view_definition,
           '(_materialized_hypertable_|_partial_view_|_direct_view_|cagg_watermark\()[0-9]+', '\1N', 'g'))
    FROM timescaledb_information.continuous_aggregates ca LEFT JOIN mat m ON m.n = ca.hypertable_name
    UNION ALL
    SELECT 'hypertable ' || coalesce(m.v, h.hypertable_schema || '.' || h.hypertable_name)
           || ' dimensions=' || h.num_dimensions || ' columnstore=' || h.compression_enabled
    FROM timescaledb_information.hypertables h LEFT JOIN mat m ON m.n = h.hypertable_name
    UNION ALL
    SELECT 'dimension ' || coalesce(m.v, d.hypertable_schema || '.' || d.hypertable_name) || ' ' || d.column_name
           || ' ' || coalesce(d.time_interval::text, '') || coalesce(d.integer_interval::text, '')
    FROM timescaledb_information.dimensions d LEFT JOIN mat m ON m.n = d.hypertable_name
    UNION ALL
    SELECT 'columnstore ' || coalesce(m.v, c.relname) || ' segmentby=' || coalesce(s.segmentby, '') || ' orderby=' || coalesce(s.orderby, '')
    FROM timescaledb_information.hypertable_compression_settings s
    JOIN pg_class c ON c.oid = s.hypertable LEFT JOIN mat m ON m.n = c.relname
    UNION ALL
    SELECT 'job ' || j.proc_schema || '.' || j.proc_name || ' on ' || coalesce(m.v, j.hypertable_schema || '.' || j.hypertable_name, '')
           || ' every ' || j.schedule_interval || ' max_runtime=' || j.max_runtime || ' retries=' || j.max_retries
           || ' retry_period=' || j.retry_period || ' scheduled=' || j.scheduled || ' fixed=' || j.fixed_schedule
           || ' config=' || coalesce((j.config - 'mat_hypertable_id' - 'hypertable_id')::text, '')
    FROM timescaledb_information.jobs j LEFT JOIN mat m ON m.n = j.hypertable_name
    WHERE j.job_id >= 1000
    UNION ALL
    SELECT 'role ' || rolname || ' login=' || rolcanlogin FROM pg_roles WHERE rolname !~ '^pg_'
)
SELECT l FROM lines ORDER BY l`

// stmtRecorder keeps the statements goose executes outside its own bookkeeping while on, and
// whether it opened a transaction (a migration without NO TRANSACTION).
type stmtRecorder struct {
	mu    sync.Mutex
	on    bool
	stmts []string
	inTx  bool
}

func (r *stmtRecorder) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on, r.stmts, r.inTx = true, nil, false
}

func (r *stmtRecorder) stop() ([]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on = false
	return r.stmts, r.inTx
}

func (r *stmtRecorder) exec(query string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.on && !strings.Contains(query, "goose_db_version") {
		r.stmts = append(r.stmts, query)
	}
}

func (r *stmtRecorder) begin() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.on {
		r.inTx = true
	}
}

// recordingConnector hands database/sql connections of pgx's stdlib driver that tell rec what
// they execute.
type recordingConnector struct {
	driver.Connector
	rec *stmtRecorder
}

func (c recordingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: conn, rec: c.rec}, nil
}

type recordingConn struct {
	driver.Conn
	rec *stmtRecorder
}

func (c *recordingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	c.rec.exec(query)
	if e, ok := c.Conn.(driver.ExecerContext); ok {
		return e.ExecContext(ctx, query, args)
	}
	return nil, driver.ErrSkip
}

func (c *recordingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if q, ok := c.Conn.(driver.QueryerContext); ok {
		return q.QueryContext(ctx, query, args)
	}
	return nil, driver.ErrSkip
}

func (c *recordingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return c.Conn.Prepare(query)
}

func (c *recordingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.rec.begin()
	if b, ok := c.Conn.(driver.ConnBeginTx); ok {
		return b.BeginTx(ctx, opts)
	}
	return nil, fmt.Errorf("driver %T cannot begin a transaction with options", c.Conn)
}

func (c *recordingConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *recordingConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *recordingConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *recordingConn) CheckNamedValue(nv *driver.NamedValue) error {
	if n, ok := c.Conn.(driver.NamedValueChecker); ok {
		return n.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}
