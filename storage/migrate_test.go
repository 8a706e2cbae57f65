package storage_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"presencestats/storage"
	"presencestats/storage/storagetest"
)

// TestMigrationsUpDownUp: every migration goes up, down to 0 and up again, on a server shared
// with another database. The local engine is one PGlite session in template1, where CREATE
// DATABASE copies the migrated schema: the copy is a second database whose own stats schema has
// granted presence_analyst its rights, as a staging database next to production would. Down
// migration 5 must then keep the role (and the copy's grants), and drop it once nothing
// depends on it; up must accept a role that another database made.
func TestMigrationsUpDownUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pool := storagetest.Connect(t, storagetest.FreshDatabase(t), false)
	p, db, err := storage.NewMigrator(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	mustExec(ctx, t, pool, `CREATE DATABASE presence_other`)
	otherGrants := analystGrants(ctx, t, pool, "presence_other")
	if otherGrants == 0 {
		t.Fatal("the second database holds no grants to presence_analyst: the scenario is not set up")
	}
	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatalf("down to 0 beside another database: %v", err)
	}
	if !analystExists(ctx, t, pool) {
		t.Fatal("down to 0 dropped presence_analyst, which the other database still uses")
	}
	if got := analystGrants(ctx, t, pool, "presence_other"); got != otherGrants {
		t.Fatalf("the other database's grants to presence_analyst: %d after down, %d before", got, otherGrants)
	}
	if got := analystGrants(ctx, t, pool, ""); got != 0 {
		t.Fatalf("this database still grants presence_analyst %d rights after down to 0", got)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM timescaledb_information.hypertables`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if got, want := n, 0; got != want {
		t.Fatalf("hypertables after down: got %d, want %d", got, want)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up again, presence_analyst made by the other database: %v", err)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sources := p.ListSources()
	if got, want := v, sources[len(sources)-1].Version; got != want {
		t.Fatalf("version after up: got %d, want %d", got, want)
	}

	// Another schema of this database that uses the role (an operator's grant) keeps it too.
	mustExec(ctx, t, pool, `DROP DATABASE presence_other`)
	mustExec(ctx, t, pool, `CREATE SCHEMA analyst_extra`)
	mustExec(ctx, t, pool, `GRANT USAGE ON SCHEMA analyst_extra TO presence_analyst`)
	if _, err := p.DownTo(ctx, 4); err != nil {
		t.Fatalf("down to 4 beside another schema's grant: %v", err)
	}
	if !analystExists(ctx, t, pool) {
		t.Fatal("down migration 5 dropped presence_analyst, which schema analyst_extra still uses")
	}
	// Nothing else uses it: down drops it, up makes it again.
	mustExec(ctx, t, pool, `DROP SCHEMA analyst_extra`)
	if _, err := p.UpTo(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if analystExists(ctx, t, pool) {
		t.Fatal("down migration 5 kept presence_analyst although nothing depends on it")
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if !analystExists(ctx, t, pool) {
		t.Fatal("up did not make presence_analyst again")
	}
}

func mustExec(ctx context.Context, tb testing.TB, pool *pgxpool.Pool, sql string) {
	tb.Helper()
	if _, err := pool.Exec(ctx, sql); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

func analystExists(ctx context.Context, tb testing.TB, pool *pgxpool.Pool) bool {
	tb.Helper()
	var ok bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = 'presence_analyst')`).Scan(&ok); err != nil {
		tb.Fatal(err)
	}
	return ok
}

// analystGrants counts what depends on presence_analyst in database (this one when "").
func analystGrants(ctx context.Context, tb testing.TB, pool *pgxpool.Pool, database string) int {
	tb.Helper()
	var n int
	err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid
		WHERE d.refclassid = 'pg_authid'::regclass AND r.rolname = 'presence_analyst'
		  AND d.dbid = (SELECT oid FROM pg_database WHERE datname = coalesce(nullif($1, ''), current_database()))`, database).Scan(&n)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
