package storage_test

import (
	"context"
	"io/fs"
	"regexp"
	"strings"
	"testing"
	"time"

	"presencestats/migrations"
	queries "presencestats/sql"
	"presencestats/storage/storagetest"
)

// bucketEnd is the PostgreSQL 15 form of date_add(ts, width, zone) that migration 5 and
// report_total_sums.sql / report_bucket_sums.sql use: plain + for an hour (no calendar part),
// the add in local time read back in the zone for a day, a week, a month or a year.
const bucketEnd = `CASE WHEN g.width < interval '1 day' THEN g.ts + g.width
     ELSE ((g.ts AT TIME ZONE g.zone) + g.width) AT TIME ZONE g.zone END`

// TestBucketEndMatchesDateAdd proves the replacement on the local engine, PostgreSQL 17, which
// has date_add: every width, a grid of instants that crosses both DST changes of 2026 (densely
// around them, hourly over the whole year, and every local midnight: the real bucket starts).
func TestBucketEndMatchesDateAdd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool := storagetest.SharedDatabase(t)
	widths := []string{"1 hour", "1 day", "7 days", "1 month", "1 year"}
	for _, zone := range []string{"Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Shanghai"} {
		t.Run(zone, func(t *testing.T) {
			loc, err := time.LoadLocation(zone)
			if err != nil {
				t.Fatal(err)
			}
			grid, changes := dstGrid(loc, 2026)
			if zone != "Asia/Shanghai" && changes != 2 {
				t.Fatalf("%s: %d offset changes found in 2026, want 2 (the grid must cross both)", zone, changes)
			}
			var n, bad int
			var first string
			err = pool.QueryRow(ctx, `
SELECT count(*), count(*) FILTER (WHERE e.mine IS DISTINCT FROM e.pg17),
       coalesce(min(g.ts::text || ' + ' || g.width::text || ': ' || e.mine::text || ' vs ' || e.pg17::text)
                FILTER (WHERE e.mine IS DISTINCT FROM e.pg17), '')
FROM unnest($1::timestamptz[]) AS i(ts)
CROSS JOIN unnest($2::text[]) AS w(width)
CROSS JOIN LATERAL (SELECT i.ts, w.width::interval AS width, $3::text AS zone) AS g
CROSS JOIN LATERAL (SELECT `+bucketEnd+` AS mine, date_add(g.ts, g.width, g.zone) AS pg17) AS e`,
				grid, widths, zone).Scan(&n, &bad, &first)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := n, len(grid)*len(widths); got != want {
				t.Fatalf("compared %d pairs, want %d", got, want)
			}
			if bad != 0 {
				t.Fatalf("%d of %d bucket ends differ from date_add, e.g. %s", bad, n, first)
			}
		})
	}
}

// dstGrid returns instants of year in loc: every hour, every local midnight, and every 10 minutes
// within 26 hours of each offset change (so that a day added from before a change lands after
// it), with the number of offset changes found.
func dstGrid(loc *time.Location, year int) ([]time.Time, int) {
	start := time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)
	end := time.Date(year+1, 1, 1, 0, 0, 0, 0, time.UTC)
	var grid []time.Time
	changes := 0
	_, prev := start.In(loc).Zone()
	for ts := start; ts.Before(end); ts = ts.Add(time.Hour) {
		grid = append(grid, ts)
		if _, off := ts.In(loc).Zone(); off != prev {
			changes++
			prev = off
			for d := ts.Add(-26 * time.Hour); d.Before(ts.Add(26 * time.Hour)); d = d.Add(10 * time.Minute) {
				grid = append(grid, d)
			}
		}
	}
	for d := time.Date(year, 1, 1, 0, 0, 0, 0, loc); d.Year() == year; d = d.AddDate(0, 0, 1) {
		grid = append(grid, d)
	}
	return grid, changes
}

// newerThan15 are the SQL features PostgreSQL 15 lacks that one could reach for: 16's date_add,
// date_subtract, any_value, random_normal, SYSTEM_USER, the SQL/JSON constructors and IS JSON;
// 17's JSON_TABLE and SQL/JSON query functions.
var newerThan15 = []struct {
	name string
	re   *regexp.Regexp
}{
	{"date_add (PostgreSQL 16)", regexp.MustCompile(`(?i)\bdate_add\s*\(`)},
	{"date_subtract (PostgreSQL 16)", regexp.MustCompile(`(?i)\bdate_subtract\s*\(`)},
	{"any_value (PostgreSQL 16)", regexp.MustCompile(`(?i)\bany_value\s*\(`)},
	{"random_normal (PostgreSQL 16)", regexp.MustCompile(`(?i)\brandom_normal\s*\(`)},
	{"SYSTEM_USER (PostgreSQL 16)", regexp.MustCompile(`(?i)\bsystem_user\b`)},
	{"json_array (PostgreSQL 16)", regexp.MustCompile(`(?i)\bjson_array\s*\(`)},
	{"json_arrayagg (PostgreSQL 16)", regexp.MustCompile(`(?i)\bjson_arrayagg\s*\(`)},
	{"json_objectagg (PostgreSQL 16)", regexp.MustCompile(`(?i)\bjson_objectagg\s*\(`)},
	{"IS JSON (PostgreSQL 16)", regexp.MustCompile(`(?i)\bis\s+(not\s+)?json\b`)},
	{"array_sample/array_shuffle (PostgreSQL 16)", regexp.MustCompile(`(?i)\barray_(sample|shuffle)\s*\(`)},
	{"SQL/JSON query functions (PostgreSQL 17)", regexp.MustCompile(`(?i)\bjson_(table|query|exists|value|scalar|serialize)\s*\(`)},
}

// jsonObjectCall finds json_object( calls; sqlJSONArgs tells the SQL/JSON form (PostgreSQL 16:
// json_object('k' VALUE v), json_object('k' : v), ... NULL ON NULL, RETURNING) from 9.4's
// json_object(text[]) and json_object(keys text[], values text[]), which PostgreSQL 15 has.
var (
	jsonObjectCall = regexp.MustCompile(`(?i)\bjson_object\s*\(`)
	sqlJSONArgs    = regexp.MustCompile(`(?i)\bvalue\b|:|\b(absent|null)\s+on\s+null\b|\breturning\b|\bwith(out)?\s+unique\b`)
)

// newerSQL returns what in sql (comments already stripped) PostgreSQL 15 would refuse.
func newerSQL(code string) []string {
	var found []string
	for _, f := range newerThan15 {
		if f.re.MatchString(code) {
			found = append(found, f.name)
		}
	}
	for _, loc := range jsonObjectCall.FindAllStringIndex(code, -1) {
		if args, ok := parenthesised(code[loc[1]:]); !ok || sqlJSONArgs.MatchString(args) {
			found = append(found, "json_object with SQL/JSON syntax (PostgreSQL 16)")
			break
		}
	}
	return found
}

// parenthesised returns s up to the parenthesis that closes one already open, without the
// '::' casts (a cast is not the SQL/JSON key : value separator).
func parenthesised(s string) (string, bool) {
	depth := 1
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return strings.ReplaceAll(s[:i], "::", " "), true
			}
		}
	}
	return "", false
}

// stripSQLComments removes -- and (nested) /* */ comments, leaving string literals and
// identifiers whole: a comment may name a function newer than PostgreSQL 15, code may not.
// Dollar-quoted bodies (DO blocks, functions) are scanned as code, which they are.
func stripSQLComments(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "--"):
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case strings.HasPrefix(s[i:], "/*"):
			depth := 0
			for i < len(s) {
				if strings.HasPrefix(s[i:], "/*") {
					depth++
					i += 2
				} else if strings.HasPrefix(s[i:], "*/") {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
			b.WriteByte(' ')
		case s[i] == '\'' || s[i] == '"':
			q := s[i]
			j := i + 1
			for j < len(s) {
				if s[j] == q {
					if j+1 < len(s) && s[j+1] == q {
						j += 2
						continue
					}
					break
				}
				j++
			}
			end := min(j+1, len(s))
			b.WriteString(s[i:end])
			i = end
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String()
}

func TestNewerSQLDetector(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want bool
	}{
		{"SELECT date_add(now(), interval '1 day', 'UTC')", true},
		{"SELECT DATE_SUBTRACT (now(), interval '1 day', 'UTC')", true},
		{"SELECT any_value(x) FROM t", true},
		{"SELECT json_array(1, 2)", true},
		{"SELECT json_object('a' VALUE 1)", true},
		{"SELECT json_object('a' : 1)", true},
		{"SELECT json_object('a' VALUE 1 ABSENT ON NULL)", true},
		{"SELECT x IS JSON FROM t", true},
		{"SELECT x is not json object FROM t", true},
		{"SELECT random_normal()", true},
		{"SELECT SYSTEM_USER", true},
		{"DO $$ BEGIN PERFORM date_add(now(), interval '1 h', 'UTC'); END $$", true},
		{"SELECT json_object('{a,1}'::text[])", false},
		{"SELECT json_object(ARRAY['a'], ARRAY['1'])", false},
		{"SELECT now() -- not date_add(x, y, z) nor any_value(x)", false},
		{"SELECT /* date_add( /* nested any_value( */ IS JSON */ 1", false},
		{"SELECT '--', now() + interval '1 day' -- date_add(", false},
		{"SELECT my_date_add(x)", false},
		{"SELECT jsonb_object_agg(k, v), row_to_json(r) FROM t", false},
	} {
		got := len(newerSQL(stripSQLComments(tc.sql))) > 0
		if got != tc.want {
			t.Errorf("%q: flagged %v, want %v (%v)", tc.sql, got, tc.want, newerSQL(stripSQLComments(tc.sql)))
		}
	}
}

// TestSQLRunsOnPostgreSQL15 fails when a migration (the zoned templates included) or a query
// uses SQL that PostgreSQL 15, the oldest server the service supports, does not have.
func TestSQLRunsOnPostgreSQL15(t *testing.T) {
	migs, err := migrations.WithReportZone(nil)
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, tree := range []struct {
		dir  string
		fsys fs.FS
	}{{"migrations", migs}, {"sql", queries.FS}} {
		err := fs.WalkDir(tree.fsys, ".", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".sql") {
				return err
			}
			b, err := fs.ReadFile(tree.fsys, path)
			if err != nil {
				return err
			}
			files++
			for _, f := range newerSQL(stripSQLComments(string(b))) {
				t.Errorf("%s/%s: %s; the service supports PostgreSQL 15", tree.dir, path, f)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if files < 20 {
		t.Fatalf("checked %d SQL files, expected every migration and query (over 20)", files)
	}
}
