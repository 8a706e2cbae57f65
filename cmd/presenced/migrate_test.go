package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"presencestats/storage/storagetest"
)

// `presenced migrate up` against a PostgreSQL without TimescaleDB (Debian 12's plain
// postgresql-15): one line saying what is missing and how to get it, an error (exit 1), and
// nothing migrated: not even goose's version table. `serve` refuses it the same way.
func TestMigrateUpRefusesPlainPostgres(t *testing.T) {
	pg := storagetest.StartPlainPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vars := map[string]string{"JWT_SECRET": testSecret, "DATABASE_URL": pg.DSN("postgres"), "REDIS_URL": storagetest.RedisURL(t), "HTTP_ADDR": "127.0.0.1:0"}
	for _, args := range [][]string{{"migrate", "up"}, {"serve"}} {
		var out, errOut bytes.Buffer
		err := run(ctx, args, env(vars), &out, &errOut)
		if err == nil {
			t.Fatalf("%v on a PostgreSQL without TimescaleDB: no error", args)
		}
		msg := err.Error()
		t.Logf("presenced %s: %s", strings.Join(args, " "), msg)
		if !strings.HasPrefix(msg, "preflight: TimescaleDB is not installed on this PostgreSQL 15.") || strings.Contains(msg, "\n") {
			t.Errorf("%v: %q, want one line starting with the preflight's verdict", args, msg)
		}
	}
	c, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace`).Scan(&n); err != nil || n != 0 {
		t.Errorf("relations in public after the refused migration: %d (%v), want 0", n, err)
	}
}
