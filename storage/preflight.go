package storage

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"presencestats"
	queries "presencestats/sql"
)

// The oldest servers the schema runs on. PostgreSQL 15: the SQL avoids everything newer (no
// date_add, any_value, SQL/JSON). TimescaleDB 2.18.0 is set by the columnstore API that
// migrations 2 and 4 call (ALTER ... SET (timescaledb.enable_columnstore, ...) and
// add_columnstore_policy, both new in 2.18.0); the other features the aggregates need are older:
// time zones in time_bucket inside continuous aggregates (2.8.0) and continuous aggregates on
// continuous aggregates (2.9.0).
const (
	MinPostgresVersionNum = 150000
	MinTimescaleDB        = "2.18.0"
)

// ServerFacts is what a server reports to the preflight (sql/preflight.sql).
type ServerFacts struct {
	ServerVersionNum int    // server_version_num, e.g. 150018
	ServerVersion    string // server_version, e.g. "15.18 (Debian 15.18-0+deb12u1)"
	Installed        string // TimescaleDB version created in this database, "" if none
	Available        string // the version CREATE EXTENSION would install, "" if none
	License          string // timescaledb.license, "" when the library is not loaded
}

// CheckServer decides whether the schema can be migrated onto (or served from) a server that
// reports f. It returns nil, or an EINVALID error whose message is one line: what was found,
// what is needed and how to get it.
func CheckServer(f ServerFacts) error {
	pg := strings.Fields(f.ServerVersion + " ?")[0]
	if f.ServerVersionNum < MinPostgresVersionNum {
		return presencestats.Errorf(presencestats.EINVALID,
			"the database server is PostgreSQL %s: presence-stats needs PostgreSQL 15 or later (15, 16 and 17 are supported); upgrade the server (pg_upgrade) and run again", pg)
	}
	const install = "install Timescale's community build (package timescaledb-2-postgresql-%d from Timescale's repository, not Debian's Apache-only postgresql-%d-timescaledb), add timescaledb to shared_preload_libraries and restart PostgreSQL"
	major := f.ServerVersionNum / 10000
	switch {
	case f.Installed == "" && f.Available == "":
		return presencestats.Errorf(presencestats.EINVALID,
			"TimescaleDB is not installed on this PostgreSQL %s server (no timescaledb in pg_available_extensions): presence-stats needs TimescaleDB %s or later with licence \"timescale\"; "+install,
			pg, MinTimescaleDB, major, major)
	case f.Installed != "" && versionLess(f.Installed, MinTimescaleDB):
		how := fmt.Sprintf("install a newer package (timescaledb-2-postgresql-%d from Timescale's repository), then run", major)
		if !versionLess(f.Available, MinTimescaleDB) {
			how = fmt.Sprintf("the server has %s installed: run", f.Available)
		}
		return presencestats.Errorf(presencestats.EINVALID,
			"this database has TimescaleDB %s: presence-stats needs %s or later (its columnstore API); %s ALTER EXTENSION timescaledb UPDATE (psql -X, as the first statement of the session)",
			f.Installed, MinTimescaleDB, how)
	case f.Installed == "" && versionLess(f.Available, MinTimescaleDB):
		return presencestats.Errorf(presencestats.EINVALID,
			"this PostgreSQL %s server offers TimescaleDB %s: presence-stats needs %s or later (its columnstore API); install a newer package (timescaledb-2-postgresql-%d from Timescale's repository)",
			pg, f.Available, MinTimescaleDB, major)
	}
	switch f.License {
	case "timescale":
		return nil
	case "":
		return presencestats.Errorf(presencestats.EINVALID,
			"TimescaleDB %s is installed but not loaded (timescaledb.license is not set): presence-stats needs it loaded with licence \"timescale\"; add timescaledb to shared_preload_libraries and restart PostgreSQL",
			firstNonEmpty(f.Installed, f.Available))
	default:
		return presencestats.Errorf(presencestats.EINVALID,
			"TimescaleDB %s has licence %q (without continuous aggregates, columnstore or policies): presence-stats needs licence \"timescale\"; set timescaledb.license = 'timescale' in postgresql.conf, or if the server has no TSL library (an Apache-only build), "+install,
			firstNonEmpty(f.Installed, f.Available), f.License, major, major)
	}
}

// ReadServerFacts asks the server what CheckServer needs. When TimescaleDB is available but not
// yet created in this database, its licence is read inside a transaction that creates the
// extension and is then rolled back: nothing is left behind.
func ReadServerFacts(ctx context.Context, pool *pgxpool.Pool) (ServerFacts, error) {
	f, err := scanServerFacts(ctx, pool)
	if err != nil || f.Installed != "" || f.Available == "" || f.License != "" {
		return f, err
	}
	// A connection of its own, closed afterwards rather than returned to the pool: the backend
	// that loaded TimescaleDB for the rolled-back CREATE EXTENSION is not the one to migrate on.
	c, err := pool.Acquire(ctx)
	if err != nil {
		return f, pgError(err, "preflight: connect")
	}
	conn := c.Hijack()
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return f, pgError(err, "preflight: begin")
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, queries.Must("preflight_probe.sql")); err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || isConnError(err) {
			return f, pgError(err, "preflight: try CREATE EXTENSION timescaledb")
		}
		return f, presencestats.Wrap(presencestats.EINVALID, err, fmt.Sprintf(
			"TimescaleDB %s is available but CREATE EXTENSION timescaledb fails (%s): migrating needs a role that may create it (a superuser, unless the extension is created beforehand) and timescaledb in shared_preload_libraries",
			f.Available, firstLine(err.Error())))
	}
	probed, err := scanServerFacts(ctx, tx)
	if err != nil {
		return f, err
	}
	f.License = probed.License
	return f, nil
}

// Preflight reads the server's facts and checks them (CheckServer). A server that cannot be
// asked gives the read's error (EUNAVAILABLE when the database is unreachable).
func Preflight(ctx context.Context, pool *pgxpool.Pool) error {
	f, err := ReadServerFacts(ctx, pool)
	if err != nil {
		return err
	}
	return CheckServer(f)
}

type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func scanServerFacts(ctx context.Context, q queryRower) (ServerFacts, error) {
	var f ServerFacts
	var installed, available, license *string
	if err := q.QueryRow(ctx, queries.Must("preflight.sql")).Scan(&f.ServerVersionNum, &f.ServerVersion, &installed, &available, &license); err != nil {
		return f, pgError(err, "preflight: read the server's versions")
	}
	f.Installed, f.Available, f.License = deref(installed), deref(available), deref(license)
	return f, nil
}

// versionLess compares dotted versions by their leading numbers ("2.23.0-dev" is 2.23.0).
func versionLess(a, b string) bool {
	pa, pb := versionParts(a), versionParts(b)
	for i := 0; i < 3; i++ {
		if pa[i] != pb[i] {
			return pa[i] < pb[i]
		}
	}
	return false
}

func versionParts(v string) [3]int {
	var out [3]int
	for i, p := range strings.SplitN(v, ".", 3) {
		end := 0
		for end < len(p) && p[end] >= '0' && p[end] <= '9' {
			end++
		}
		out[i], _ = strconv.Atoi(p[:end])
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
