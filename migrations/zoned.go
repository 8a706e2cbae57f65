package migrations

import (
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
	"testing/fstest"
	"time"
)

// zonedFS holds the migrations that bucket in the report zone (4: the report aggregates, 6: their
// unique-user counts, 7: every room together, 9: a room's hours by day, 10: per-user quarters), as templates. They live in a folder of their own so that goose, reading FS,
// does not take a template for a migration.
//
//go:embed zoned/*.sql
var zonedFS embed.FS

// zoneName is what a zone name may contain: IANA names and fixed offsets like Etc/GMT+5.
var zoneName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+\-/]*$`)

// WithReportZone returns the migrations of FS plus those of zoned/ (00004_report_aggregates.sql,
// the continuous aggregates of the reports, and 00006, 00007, 00009, 00010) with their buckets in loc (nil: UTC). The zone is baked into the
// aggregates (time_bucket needs a constant) and recorded in report_settings. It is a parameter,
// not an environment variable read by goose, because only cmd reads the environment; it is a
// generated SQL file rather than a Go migration so that goose runs it on its own connection
// (a pool of one connection would otherwise deadlock).
func WithReportZone(loc *time.Location) (fs.FS, error) {
	if loc == nil {
		loc = time.UTC
	}
	name := loc.String()
	if name == "Local" || !zoneName.MatchString(name) {
		return nil, fmt.Errorf("report time zone %q: want an IANA name such as UTC or Europe/Paris", name)
	}
	if _, err := time.LoadLocation(name); err != nil {
		return nil, fmt.Errorf("report time zone %q: %w", name, err)
	}
	literal := "'" + strings.ReplaceAll(name, "'", "''") + "'"
	out := fstest.MapFS{}
	templates, err := fs.ReadDir(zonedFS, "zoned")
	if err != nil {
		return nil, fmt.Errorf("list zoned migrations: %w", err)
	}
	for _, t := range templates {
		tmpl, err := zonedFS.ReadFile("zoned/" + t.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration template %s: %w", t.Name(), err)
		}
		out[t.Name()] = &fstest.MapFile{Data: []byte(strings.ReplaceAll(string(tmpl), "{{timezone}}", literal))}
	}
	entries, err := fs.ReadDir(FS, ".")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	for _, e := range entries {
		b, err := fs.ReadFile(FS, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		out[e.Name()] = &fstest.MapFile{Data: b}
	}
	return out, nil
}
