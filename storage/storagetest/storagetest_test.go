package storagetest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"presencestats/storage/storagetest"
)

func TestDatabaseDSN(t *testing.T) {
	for _, c := range []struct{ server, want string }{
		{"postgres://ops@db.example:5432/postgres", "postgres://ops@db.example:5432/presence_test_x"},
		{"postgresql://ops:s%40cret@db.example/postgres?sslmode=verify-full&pool_max_conns=4",
			"postgresql://ops:s%40cret@db.example/presence_test_x?sslmode=verify-full&pool_max_conns=4"},
		{"postgres://ops@db.example", "postgres://ops@db.example/presence_test_x"},
		{"postgres://ops@db.example/?dbname=postgres&sslmode=require", "postgres://ops@db.example/presence_test_x?dbname=presence_test_x&sslmode=require"},
		{"host=db.example user=ops dbname=postgres sslmode=require", "host=db.example user=ops dbname=presence_test_x sslmode=require"},
		{"host=db.example dbname='my db' user=ops", "host=db.example dbname=presence_test_x user=ops"},
		{"host=db.example user=ops", "host=db.example user=ops dbname=presence_test_x"},
	} {
		got, err := storagetest.DatabaseDSN(c.server, "presence_test_x")
		if err != nil || got != c.want {
			t.Errorf("DatabaseDSN(%q) = %q, %v; want %q", c.server, got, err, c.want)
		}
	}
	if _, err := storagetest.DatabaseDSN("postgres://h/db", "x; DROP"); err == nil {
		t.Error("a database name that is not a plain identifier is accepted")
	}
}

// The server mode's mechanics on a real PostgreSQL (Debian's plain postgresql-15: no TimescaleDB,
// so nothing is migrated here): a fresh database is created on TEST_DATABASE_URL's server, the
// test's DSN reaches it, and it is dropped at cleanup.
func TestFreshDatabaseOnServer(t *testing.T) {
	pg := storagetest.StartPlainPostgres(t)
	t.Setenv(storagetest.ServerEnv, pg.DSN("postgres")+"&application_name=presence-suite&pool_max_conns=2")
	var name string
	t.Run("test", func(t *testing.T) {
		dsn := storagetest.FreshDatabase(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		pool := storagetest.Connect(t, dsn, false) // the DSN as the tests' pools use it
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Release()
		var app string
		if err := c.QueryRow(ctx, "SELECT current_database(), current_setting('application_name')").Scan(&name, &app); err != nil {
			t.Fatal(err)
		}
		if len(name) <= len(storagetest.TestDatabasePrefix) || name[:len(storagetest.TestDatabasePrefix)] != storagetest.TestDatabasePrefix || app != "presence-suite" {
			t.Errorf("connected to %q (application_name %q): want a fresh %s… database, the server DSN's parameters kept", name, app, storagetest.TestDatabasePrefix)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil || n != 0 {
		t.Errorf("database %q still there after the test (%d, %v)", name, n, err)
	}
}

// TEST_DATABASE_URL pointing at the local engine (one database, whatever the DSN names) is refused
// with a message saying so, rather than every test sharing and dropping that one database.
func TestCreateDatabaseRefusesLocalEngine(t *testing.T) {
	ts := storagetest.StartTimescale(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, _, err := storagetest.CreateDatabase(ctx, ts.DSN())
	if err == nil || !strings.Contains(err.Error(), "must be a real PostgreSQL server, not the local engine") {
		t.Fatalf("CreateDatabase on the local engine: %v, want a refusal naming the local engine", err)
	}
	t.Log(err)
}
