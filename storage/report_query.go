package storage

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"presencestats"
	queries "presencestats/sql"
)

// materializedQueries is report_users_marks.sql and report_recent_users.sql per granularity and
// report_online_start.sql, complete.
type materializedQueries struct {
	marks       map[presencestats.Granularity]string
	recent      map[presencestats.Granularity]byRooms
	onlineStart string
}

// hoursByDay tells whether a report of g over [first, end) reads its hours by day
// (report_stats_hours.sql), and then the days it reads whole: [dayFirst, daysEnd), from the
// first hour's day up to the day in progress (or the one the report ends in). Only an hour report
// that spans at least one whole day before today does: for less, reading a day to use a few of
// its hours costs more than reading those hours (one room over 24 hours: 20 against 16 ms).
func (r *Reports) hoursByDay(g presencestats.Granularity, first, end, now time.Time) (bool, time.Time, time.Time) {
	if g != presencestats.Hour {
		return false, time.Time{}, time.Time{}
	}
	dayFirst := presencestats.Day.Truncate(first, r.loc)
	daysEnd := presencestats.Day.Truncate(now, r.loc)
	if lastDay := presencestats.Day.Next(presencestats.Day.Truncate(end.Add(-time.Nanosecond), r.loc)); lastDay.Before(daysEnd) {
		daysEnd = lastDay
	}
	wholeFrom := dayFirst
	if wholeFrom.Before(first) {
		wholeFrom = presencestats.Day.Next(dayFirst)
	}
	if presencestats.Day.Next(wholeFrom).After(daysEnd) {
		return false, time.Time{}, time.Time{}
	}
	return true, dayFirst, daysEnd
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// farPast stands for "before any data": where a materialized table holds nothing yet.
var farPast = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)

// materializedEnd returns the end of last, the last bucket of g materialized in a table (nil:
// none, farPast): everything before it is there.
func materializedEnd(g presencestats.Granularity, last *time.Time, loc *time.Location) time.Time {
	if last == nil {
		return farPast
	}
	return g.Next(g.Truncate(*last, loc))
}

// marks is what report_users_marks.sql reads: the last bucket materialized (nil: none) in the
// unique-user count aggregates of a granularity from a report's first bucket on (roomsUsers,
// allUsers), in the tables behind the weekly and monthly per-user aggregates (userWeekly,
// userMonthly: month and year reports only; userQuarterly: year reports only) and behind the room
// monthly and yearly ones.
type marks struct {
	roomsUsers, allUsers, userWeekly, userMonthly, userQuarterly, roomMonthly, roomYearly *time.Time
}

// readMarks reads the marks of a report of g whose first bucket is first.
func (r *Reports) readMarks(ctx context.Context, g presencestats.Granularity, first time.Time) (marks, error) {
	var m marks
	sql, err := r.materializedQueries(ctx)
	if err != nil {
		return m, err
	}
	args := []any{first}
	if weeklyTiles(g) { // the per-user marks, from the month before this one
		args = append(args, presencestats.Month.Truncate(r.Now(), r.loc).AddDate(0, -1, 0))
	}
	if err := r.pool.QueryRow(ctx, sql.marks[g], args...).Scan(&m.roomsUsers, &m.allUsers, &m.userWeekly, &m.userMonthly,
		&m.userQuarterly, &m.roomMonthly, &m.roomYearly); err != nil {
		r.forgetMaterialized(err)
		return m, pgError(err, "query report materialization marks")
	}
	return m, nil
}

// materializedQueries returns the queries that read tables TimescaleDB materializes aggregates
// into, complete, reading the tables' names on first use (report_materialized.sql).
func (r *Reports) materializedQueries(ctx context.Context) (*materializedQueries, error) {
	r.materializedMu.Lock()
	defer r.materializedMu.Unlock()
	if r.materialized != nil {
		return r.materialized, nil
	}
	rows, err := r.pool.Query(ctx, queries.Must("report_materialized.sql"))
	if err != nil {
		return nil, pgError(err, "query the aggregates' materialized tables")
	}
	names := map[string]string{}
	for rows.Next() {
		var view, table string
		if err := rows.Scan(&view, &table); err != nil {
			rows.Close()
			return nil, pgError(err, "read the aggregates' materialized tables")
		}
		names[view] = table
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, pgError(err, "read the aggregates' materialized tables")
	}
	var pairs []string
	for _, view := range []string{"presence_user_weekly", "presence_user_monthly", "presence_user_quarterly", "presence_room_monthly", "presence_room_yearly"} {
		if names[view] == "" {
			return nil, presencestats.Errorf(presencestats.EINTERNAL, "the aggregate %s is missing (was `presenced migrate up` run?)", view)
		}
		pairs = append(pairs, "{{"+strings.TrimPrefix(view, "presence_")+"_materialized}}", names[view])
	}
	rep := strings.NewReplacer(pairs...)
	q := &materializedQueries{marks: map[presencestats.Granularity]string{}, recent: map[presencestats.Granularity]byRooms{},
		onlineStart: rep.Replace(r.onlineStartTemplate)}
	for g := range aggregateLevel {
		t := r.recentTemplate[g]
		q.marks[g], q.recent[g] = rep.Replace(r.marksTemplate[g]), byRooms{rooms: rep.Replace(t.rooms), every: rep.Replace(t.every)}
	}
	r.materialized = q
	return q, nil
}

// forgetMaterialized drops the queries materializedQueries completed when err says a table is
// missing (the aggregates were dropped and made again, under other names), so the next report
// reads the names again.
func (r *Reports) forgetMaterialized(err error) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		r.materializedMu.Lock()
		r.materialized = nil
		r.materializedMu.Unlock()
	}
}

// byRooms is a query that reads rooms' rows in two texts: sel.every's, which reads every room,
// and a selection's, which reads only the rooms in $1 (uuid[]). The SQL marks each room
// predicate {{in_rooms:alias}}: a selection gets alias.room_id = ANY ($1::uuid[]), every room
// $1::uuid[] IS NULL (true: $1 is NULL then). One text with ($1 IS NULL OR room_id = ANY ($1))
// would do in a plan made for the parameters' values, where the OR folds away; but a generic
// plan (pgx's default statement cache on a server: PostgreSQL may switch a prepared statement to
// one after five runs) keeps the OR, which no index on room_id can answer, and then reads every
// room's rows to keep the selected ones (docs/benchmarks.md, "Reports at 1,000 rooms: the plans").
type byRooms struct{ rooms, every string }

var inRooms = regexp.MustCompile(`\{\{in_rooms:([a-z_]+)\}\}`)

func newByRooms(sql string) byRooms {
	return byRooms{rooms: inRooms.ReplaceAllString(sql, "$1.room_id = ANY ($$1::uuid[])"),
		every: inRooms.ReplaceAllString(sql, "$$1::uuid[] IS NULL")}
}

// of returns the text for sel.
func (q byRooms) of(sel selection) string {
	if sel.every {
		return q.every
	}
	return q.rooms
}
