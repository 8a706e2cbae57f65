package storage_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"presencestats"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

// The decision, for what servers report: each case gives the facts and words the one-line
// message must contain (nothing: the server is fit).
func TestCheckServer(t *testing.T) {
	pg15 := storage.ServerFacts{ServerVersionNum: 150018, ServerVersion: "15.18 (Debian 15.18-0+deb12u1)"}
	with := func(f storage.ServerFacts, installed, available, license string) storage.ServerFacts {
		f.Installed, f.Available, f.License = installed, available, license
		return f
	}
	pg17 := storage.ServerFacts{ServerVersionNum: 170002, ServerVersion: "17.2"}
	pg14 := storage.ServerFacts{ServerVersionNum: 140015, ServerVersion: "14.15 (Ubuntu 14.15-1)"}
	for _, c := range []struct {
		name  string
		facts storage.ServerFacts
		want  []string
	}{
		{"real server as measured", with(pg15, "2.28.3", "2.28.3", "timescale"), nil},
		{"local engine", with(pg17, "2.23.0-dev", "2.23.0-dev", "timescale"), nil},
		{"the minimum", with(pg15, "2.18.0", "2.18.0", "timescale"), nil},
		{"available, not yet created (licence from the probe)", with(pg15, "", "2.21.1", "timescale"), nil},
		{"PostgreSQL 14", with(pg14, "2.18.2", "2.18.2", "timescale"),
			[]string{"PostgreSQL 14.15", "needs PostgreSQL 15 or later", "pg_upgrade"}},
		{"plain PostgreSQL without TimescaleDB", with(pg15, "", "", ""),
			[]string{"TimescaleDB is not installed on this PostgreSQL 15.18 server", "pg_available_extensions", "2.18.0 or later", `licence "timescale"`, "timescaledb-2-postgresql-15", "shared_preload_libraries"}},
		{"installed too old, newer package present", with(pg15, "2.14.2", "2.19.0", "timescale"),
			[]string{"this database has TimescaleDB 2.14.2", "needs 2.18.0 or later", "the server has 2.19.0 installed", "ALTER EXTENSION timescaledb UPDATE"}},
		{"installed too old, no newer package", with(pg15, "2.17.2", "2.17.2", "timescale"),
			[]string{"this database has TimescaleDB 2.17.2", "install a newer package (timescaledb-2-postgresql-15", "ALTER EXTENSION timescaledb UPDATE"}},
		{"available too old", with(pg15, "", "2.9.3", ""),
			[]string{"offers TimescaleDB 2.9.3", "needs 2.18.0 or later", "timescaledb-2-postgresql-15"}},
		{"Apache-only build (Debian 13)", with(storage.ServerFacts{ServerVersionNum: 170006, ServerVersion: "17.6 (Debian 17.6-0+deb13u1)"}, "2.19.3", "2.19.3", "apache"),
			[]string{"TimescaleDB 2.19.3 has licence \"apache\"", "without continuous aggregates, columnstore or policies", `needs licence "timescale"`, "timescaledb-2-postgresql-17"}},
		{"installed, not preloaded", with(pg15, "2.20.0", "2.20.0", ""),
			[]string{"TimescaleDB 2.20.0 is installed but not loaded", "shared_preload_libraries"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := storage.CheckServer(c.facts)
			if c.want == nil {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want one saying %q", c.want)
			}
			if got := presencestats.ErrorCode(err); got != presencestats.EINVALID {
				t.Errorf("code %q, want %q", got, presencestats.EINVALID)
			}
			msg := presencestats.ErrorMessage(err)
			if strings.Contains(msg, "\n") {
				t.Errorf("message is more than one line: %q", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q\ndoes not say %q", msg, w)
				}
			}
		})
	}
}

// The preflight's own SQL on the test database (the local engine, or on a server run the
// server): it parses, answers, and the engine passes.
func TestPreflightOnTestDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := storagetest.SharedDatabase(t)
	f, err := storage.ReadServerFacts(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the test database reports %+v", f)
	if f.ServerVersionNum < 150000 || f.Installed == "" || f.Available == "" || f.License != "timescale" {
		t.Errorf("facts %+v: want a version, TimescaleDB installed and available, licence timescale", f)
	}
	if err := storage.Preflight(ctx, pool); err != nil {
		t.Fatalf("preflight refuses the test database's server: %v", err)
	}
}

// A plain PostgreSQL 15 (Debian 12's postgresql-15, no TimescaleDB): the preflight says so, and
// what to install.
func TestPreflightPlainPostgres15(t *testing.T) {
	pg := storagetest.StartPlainPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := storagetest.Connect(t, pg.DSN("postgres"), false)
	err := storage.Preflight(ctx, pool)
	if err == nil {
		t.Fatal("preflight accepts a PostgreSQL without TimescaleDB")
	}
	msg := presencestats.ErrorMessage(err)
	t.Logf("preflight: %s", msg)
	for _, w := range []string{"TimescaleDB is not installed on this PostgreSQL 15.", "timescaledb-2-postgresql-15"} {
		if !strings.Contains(msg, w) {
			t.Errorf("message %q does not say %q", msg, w)
		}
	}
}

// When TimescaleDB is available but not created in the database, the preflight learns its licence
// by creating it in a transaction it rolls back: the database is left as it was.
func TestPreflightProbeLeavesNothing(t *testing.T) {
	storagetest.SkipOnServer(t, "it drops the extension of a fresh local instance")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool := storagetest.Connect(t, storagetest.StartTimescale(t, 0).DSN(), false)
	if _, err := pool.Exec(ctx, "DROP EXTENSION timescaledb"); err != nil {
		t.Fatal(err)
	}
	f, err := storage.ReadServerFacts(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if f.Installed != "" || f.Available == "" || f.License != "timescale" {
		t.Errorf("facts %+v: want not installed, available, licence timescale (from the probe)", f)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").Scan(&n); err != nil || n != 0 {
		t.Errorf("timescaledb in pg_extension after the preflight: %d (%v), want 0", n, err)
	}
}
