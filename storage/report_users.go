package storage

import (
	"context"
	"time"

	"github.com/google/uuid"

	"presencestats"
)

// recentUserTiles names, per report granularity, the sources of the four tiles of
// report_recent_users.sql, which count the unique users of buckets not materialized yet: per-user
// aggregates, or the tables the monthly and weekly ones are materialized into (filled in by
// materializedQueries). Rows of each nest in one report bucket; recentTiles bounds them.
// The fifth is the quarterly tile, before the others (year reports; empty for the rest).
var recentUserTiles = map[presencestats.Granularity][5]string{
	presencestats.Hour:  {"presence_user_hourly", "presence_user_hourly", "presence_user_hourly", "presence_user_hourly", "presence_user_hourly"},
	presencestats.Day:   {"presence_user_hourly", "presence_user_hourly", "presence_user_hourly", "presence_user_hourly", "presence_user_hourly"},
	presencestats.Week:  {"presence_user_daily", "presence_user_daily", "presence_user_daily", "presence_user_daily", "presence_user_daily"},
	presencestats.Month: {"{{user_monthly_materialized}}", "presence_user_daily", "{{user_weekly_materialized}}", "presence_user_daily", "{{user_monthly_materialized}}"},
	presencestats.Year:  {"{{user_monthly_materialized}}", "presence_user_daily", "{{user_weekly_materialized}}", "presence_user_daily", "{{user_quarterly_materialized}}"},
}

type roomBucket struct {
	room   uuid.UUID
	bucket int64 // Unix seconds
}

// recentUsers holds the unique users of the buckets from `from` on, which the materialized-only
// count aggregates do not have yet: per room and bucket, and across the selected rooms per bucket.
type recentUsers struct {
	from  time.Time
	rooms map[roomBucket]int64
	all   map[int64]int64 // bucket (Unix seconds) -> users across the rooms
}

// recent counts the unique users of the buckets of g in [first, end) that the count aggregates
// have not materialized (m), from report_recent_users.sql: the bucket in progress, and any the
// refresh policies have not reached.
func (r *Reports) recent(ctx context.Context, sel selection, g presencestats.Granularity, first, end time.Time, m marks) (recentUsers, error) {
	out := recentUsers{from: first, rooms: map[roomBucket]int64{}, all: map[int64]int64{}}
	sql, err := r.materializedQueries(ctx)
	if err != nil {
		return out, err
	}
	counted := m.roomsUsers // the earlier of the two marks; none if either has none
	if m.allUsers == nil || (counted != nil && m.allUsers.Before(*counted)) {
		counted = m.allUsers
	}
	if from := materializedEnd(g, counted, r.loc); from.After(first) {
		out.from = from
	}
	if !out.from.Before(end) {
		return out, nil
	}
	// The report buckets from out.from are those starting before end; hi is where the last ends.
	hi := g.Next(g.Truncate(end.Add(-time.Nanosecond), r.loc))
	b := r.recentTiles(g, out.from, hi, m.userWeekly, m.userMonthly, m.userQuarterly)
	oneBucket := g.Next(out.from).Equal(hi)
	rows, err := r.pool.Query(ctx, sql.recent[g].of(sel), sel.param(), b[0], b[1], b[2], b[3], b[4], bucketWidth[g], r.loc.String(),
		oneBucket, b[5], b[6])
	if err != nil {
		r.forgetMaterialized(err)
		return out, pgError(err, "query recent unique users")
	}
	defer rows.Close()
	for rows.Next() {
		var room *uuid.UUID
		var b time.Time
		var n int64
		if err := rows.Scan(&room, &b, &n); err != nil {
			return out, pgError(err, "read recent unique users")
		}
		if room == nil {
			out.all[b.Unix()] = n
		} else {
			out.rooms[roomBucket{*room, b.Unix()}] = n
		}
	}
	if err := rows.Err(); err != nil {
		return out, pgError(err, "read recent unique users")
	}
	return out, nil
}

// weeklyTiles reports whether reports of g count their recent unique users from monthly, daily
// and weekly tiles (recentUserTiles), which need the per-user weekly and monthly marks.
func weeklyTiles(g presencestats.Granularity) bool {
	return g == presencestats.Month || g == presencestats.Year
}

// recentTiles bounds the five tiles of report_recent_users.sql over the report buckets [from, hi)
// of g (recentUserTiles names their sources): [b[0], b[6]), [b[6], b[1]), [b[1], b[2]),
// [b[5], b[3]) and [b[3], b[4]). Hours, days and weeks: the one from b[6] to b[1] takes it all.
// Months and years, with weeklyLast, monthlyLast and quarterlyLast the last buckets materialized
// in those per-user aggregates (nil: none):
//
//	quarterly rows [from, q)  (years) the quarters before the one in progress, up to the last
//	                          materialized; q = from for months
//	monthly rows   [q, a)     the months before the one in progress, up to the last materialized
//	daily rows     [a, b)     any months not materialized yet, then (months) the days before the
//	                          first week that starts in the month in progress
//	weekly rows    [w, c)     that month's whole weeks that have ended, up to the last materialized;
//	                          for a year from the week the month's first day is in, when that week
//	                          starts in the same year (w = b otherwise)
//	daily rows     [c, hi)    the rest
//
// so each quarter and week lies in one report bucket, and no tile reads past what is materialized
// in its source. A year's weekly tile may overlap the months before (its days are in the same
// year, and a user is counted once per bucket): it then replaces up to six days of daily rows.
func (r *Reports) recentTiles(g presencestats.Granularity, from, hi time.Time, weeklyLast, monthlyLast, quarterlyLast *time.Time) [7]time.Time {
	if !weeklyTiles(g) {
		return [7]time.Time{from, hi, hi, hi, hi, hi, from}
	}
	clamp := func(t, lo, up time.Time) time.Time {
		if t.Before(lo) {
			return lo
		}
		if t.After(up) {
			return up
		}
		return t
	}
	now := r.Now()
	split := clamp(presencestats.Month.Truncate(now, r.loc), from, hi) // the month in progress
	q := from
	if g == presencestats.Year && quarterlyLast != nil {
		q = clamp(minTime(quarterStart(now, r.loc), quarterStart(*quarterlyLast, r.loc).AddDate(0, 3, 0)), from, split)
		q = quarterStart(q, r.loc) // clamping to split (a month start) may land inside a quarter
		if q.Before(from) {
			q = from
		}
	}
	a := clamp(materializedEnd(presencestats.Month, monthlyLast, r.loc), q, split)
	b := presencestats.Week.Truncate(split, r.loc)
	if b.Before(split) {
		b = presencestats.Week.Next(b)
	}
	b = clamp(b, split, hi)
	w := b
	if first := presencestats.Week.Truncate(split, r.loc); g == presencestats.Year && first.Before(b) &&
		!first.Before(presencestats.Year.Truncate(split, r.loc)) && !first.Before(from) {
		w = first
		b = maxTime(a, w) // the daily tile stops where the weekly one begins (or is empty)
	}
	c := w
	if weeklyLast != nil {
		c = presencestats.Week.Truncate(now, r.loc) // the week in progress
		if materialized := materializedEnd(presencestats.Week, weeklyLast, r.loc); materialized.Before(c) {
			c = materialized
		}
		c = clamp(c, w, hi)
	}
	return [7]time.Time{from, a, b, c, hi, w, q}
}

// quarterStart is the start of t's quarter in loc, where time_bucket('3 months', ..., zone) puts
// it (months counted from January 2000: January, April, July, October).
func quarterStart(t time.Time, loc *time.Location) time.Time {
	t = t.In(loc)
	return time.Date(t.Year(), (t.Month()-1)/3*3+1, 1, 0, 0, 0, 0, loc)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
