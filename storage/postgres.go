package storage

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"presencestats"
	"presencestats/migrations"
)

// OpenPool connects to PostgreSQL/TimescaleDB. Pool size and query mode come from the DSN
// (pool_max_conns, default_query_exec_mode): the local WebAssembly build wants
// pool_max_conns=1 and default_query_exec_mode=cache_describe, a real server neither.
func OpenPool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	// A query whose context ends (REPORT_TIMEOUT, a client gone) is cancelled on the server with
	// a cancel request, and its connection kept; pgx's default only closes the connection, which
	// leaves a real server running the query to its end. The connection is closed anyway when
	// the server has not answered within a second: the local WebAssembly engine does not support
	// cancel requests (docs/operations.md, "Limits").
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: time.Second}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	return pool, nil
}

// NewMigrator returns a goose provider over the embedded migrations that runs on pool's
// connections. reportZone (REPORT_TIMEZONE; nil means UTC) is baked into the report aggregates
// when their migration runs. Close the returned *sql.DB when done (it does not close pool).
func NewMigrator(pool *pgxpool.Pool, reportZone *time.Location) (*goose.Provider, *sql.DB, error) {
	fsys, err := migrations.WithReportZone(reportZone)
	if err != nil {
		return nil, nil, presencestats.Wrap(presencestats.EINVALID, err, "REPORT_TIMEZONE cannot be used for the report aggregates")
	}
	db := stdlib.OpenDBFromPool(pool)
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, db, nil
}

// MigrateUp applies every pending migration, report aggregates bucketed in reportZone (nil: UTC).
func MigrateUp(ctx context.Context, pool *pgxpool.Pool, reportZone *time.Location) error {
	p, db, err := NewMigrator(pool, reportZone)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate up: %w", err)
	}
	return nil
}

// pgError translates PostgreSQL errors into application errors, in one place.
// storableText returns s as PostgreSQL text can hold it: valid UTF-8 without NUL bytes, anything
// else replaced by U+FFFD. A string a client supplied (a User-Agent header) could otherwise make
// the database refuse the whole statement it is part of.
func storableText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// storableJSON returns the JSON text b as a jsonb column takes it: valid UTF-8, and every \u0000
// escape (jsonb refuses it) replaced by \ufffd. An escape is a backslash and the character after
// it, so pairs are skipped whole and an escaped backslash followed by "u0000" is left alone.
func storableJSON(b []byte) []byte {
	b = bytes.ToValidUTF8(b, []byte("\uFFFD"))
	if !bytes.Contains(b, []byte(`\u0000`)) {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			out = append(out, b[i])
			continue
		}
		if bytes.HasPrefix(b[i:], []byte(`\u0000`)) {
			out = append(out, `\ufffd`...)
			i += 5
			continue
		}
		out = append(out, b[i], b[i+1])
		i++
	}
	return out
}

func pgError(err error, doing string) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505": // unique_violation
			return presencestats.Wrap(presencestats.ECONFLICT, err, doing+": already exists")
		case "23502", "23514", "22P02", "22007", "22008", "22023": // not null, check, bad text repr., datetime
			return presencestats.Wrap(presencestats.EINVALID, err, doing+": invalid value")
		case "42501": // insufficient_privilege
			return presencestats.Wrap(presencestats.EUNAVAILABLE, err, doing+": not permitted")
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", doing, err)
	}
	if pgconn.SafeToRetry(err) || isConnError(err) {
		return presencestats.Wrap(presencestats.EUNAVAILABLE, err, doing+": database unavailable")
	}
	return fmt.Errorf("%s: %w", doing, err)
}

func isConnError(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return false
	}
	// Anything below the protocol (reset, refused, closed connection) counts as unavailable.
	return pgconn.Timeout(err) || isNetError(err)
}
