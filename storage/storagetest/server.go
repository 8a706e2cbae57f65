package storagetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A real server for the suite: `TEST_DATABASE_URL=postgres://user@host:port/postgres make test`.
// The role must be allowed to CREATE DATABASE (and, for the migrations, to create the extension
// and the analysts' role). Every database a test asks for is then a fresh CREATE DATABASE there,
// dropped at cleanup; without TEST_DATABASE_URL every database is a local WebAssembly instance.

// ServerEnv names the environment variable of the operator's server.
const ServerEnv = "TEST_DATABASE_URL"

// TestDatabasePrefix starts the name of every database the suite creates on a server. A run that
// was killed leaves its databases behind; see docs/operations.md to drop them.
const TestDatabasePrefix = "presence_test_"

// ServerURL returns the operator's TEST_DATABASE_URL, "" when the tests use the local engine.
func ServerURL() string { return os.Getenv(ServerEnv) }

// OnServer reports whether the tests run against the operator's server.
func OnServer() bool { return ServerURL() != "" }

// SkipOnServer skips a test that only makes sense on the local engine, saying why in one line.
func SkipOnServer(tb interface {
	Helper()
	Skipf(string, ...any)
}, why string) {
	tb.Helper()
	if OnServer() {
		tb.Skipf("local engine only (%s set): %s", ServerEnv, why)
	}
}

// DatabaseDSN returns serverDSN with its database replaced by name, everything else (user, host,
// port, TLS, pool and query-mode parameters) kept. Both forms libpq and pgx accept: URLs
// (postgres:// or postgresql://) and keyword/value strings.
func DatabaseDSN(serverDSN, name string) (string, error) {
	if !regexp.MustCompile(`^[a-z_][a-z0-9_]*$`).MatchString(name) {
		return "", fmt.Errorf("database name %q: want lower-case letters, digits and _", name)
	}
	if strings.HasPrefix(serverDSN, "postgres://") || strings.HasPrefix(serverDSN, "postgresql://") {
		u, err := url.Parse(serverDSN)
		if err != nil {
			return "", fmt.Errorf("parse %s: %w", ServerEnv, err)
		}
		q := u.Query()
		if q.Has("dbname") { // libpq lets the query override the path
			q.Set("dbname", name)
			u.RawQuery = q.Encode()
		}
		u.Path, u.RawPath = "/"+name, ""
		return u.String(), nil
	}
	re := regexp.MustCompile(`(^|\s)dbname\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)
	if re.MatchString(serverDSN) {
		return re.ReplaceAllString(serverDSN, "${1}dbname="+name), nil
	}
	return strings.TrimSpace(serverDSN + " dbname=" + name), nil
}

// createDatabase creates a fresh, empty database on the server of serverDSN and returns a DSN
// for it and the function that drops it.
func createDatabase(ctx context.Context, serverDSN string) (string, func(context.Context) error, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	name := TestDatabasePrefix + time.Now().UTC().Format("20060102_150405_") + hex.EncodeToString(b)
	dsn, err := DatabaseDSN(serverDSN, name)
	if err != nil {
		return "", nil, err
	}
	admin, err := connect(ctx, serverDSN)
	if err != nil {
		return "", nil, fmt.Errorf("connect to %s: %w", ServerEnv, err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("CREATE DATABASE on the server of %s (the role needs CREATEDB): %w", ServerEnv, err)
	}
	drop := func(ctx context.Context) error {
		c, err := connect(ctx, serverDSN)
		if err != nil {
			return fmt.Errorf("drop test database %s: %w", name, err)
		}
		defer c.Close(ctx)
		// FORCE (PostgreSQL 13+): a connection a test left open must not keep the database.
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop test database %s: %w", name, err)
		}
		return nil
	}
	// The local WebAssembly engine has one database whatever the DSN names: refuse it here rather
	// than let every test share (and drop) it.
	c, err := connect(ctx, dsn)
	if err == nil {
		var got string
		err = c.QueryRow(ctx, "SELECT current_database()").Scan(&got)
		c.Close(ctx)
		if err == nil && got != name {
			err = fmt.Errorf("connected to database %q, not the new %q: %s must be a real PostgreSQL server, not the local engine", got, name, ServerEnv)
		}
	}
	if err != nil {
		_ = drop(ctx)
		return "", nil, fmt.Errorf("connect to the new test database: %w", err)
	}
	return dsn, drop, nil
}

// connect opens one connection on a DSN written for a pool: pgxpool's own parameters
// (pool_max_conns, ...) would otherwise be sent to the server as settings.
func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg.ConnConfig)
}

// pauseJobs unschedules every job of the schema (the policies), so that tests on a server are as
// deterministic as on the local engine, which has no scheduler: a test runs a job with
// CALL run_job(id), which runs paused jobs too. Jobs below 1000 are TimescaleDB's own.
func pauseJobs(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, `SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs WHERE job_id >= 1000 AND scheduled`)
	if err != nil {
		return fmt.Errorf("pause the test database's jobs: %w", err)
	}
	return nil
}
