package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"presencestats"
	queries "presencestats/sql"
)

// Reports reads presence history from the continuous aggregates (never from the raw events), the
// real-time part included, so the bucket in progress is there too. Buckets are in the report zone
// the aggregates were built with (see CheckReportZone).
//
// Peaks and averages are exact: the room aggregates carry, per bucket, the largest count reached
// at an event, the count at the end, and the sums that give the integral of the online count; the
// count at a bucket's start is carried forward from the room's previous row.
type Reports struct {
	pool *pgxpool.Pool
	loc  *time.Location
	// Now is the clock: a bucket in progress is averaged over [start, Now()). Tests replace it.
	Now func() time.Time

	stats      map[presencestats.Granularity]string
	statsHours string // hourly reports: report_stats_hours.sql, in place of stats[Hour]
	totalUsers map[presencestats.Granularity]string
	allUsers   map[presencestats.Granularity]string
	bucketSums map[presencestats.Granularity]string // a selection of rooms
	totalSums  map[presencestats.Granularity]string // every room
	// Peak hours of a selection of rooms and of every room (report_peak_hours.sql over the
	// hourly bucketSums and totalSums).
	peakHoursRooms, peakHoursEvery string
	rooms, hourlyHorizon           string

	// The queries that read tables TimescaleDB materializes aggregates into, waiting for their
	// names (TimescaleDB picks them): report_users_marks.sql and report_recent_users.sql per
	// granularity, report_online_start.sql. materializedQueries completes them on first use.
	marksTemplate, recentTemplate map[presencestats.Granularity]string
	onlineStartTemplate           string
	materializedMu                sync.Mutex
	materialized                  *materializedQueries
}

// materializedQueries is report_users_marks.sql and report_recent_users.sql per granularity and
// report_online_start.sql, complete.
type materializedQueries struct {
	marks, recent map[presencestats.Granularity]string
	onlineStart   string
}

// aggregateLevel names the continuous aggregates of each granularity (migration 4).
var aggregateLevel = map[presencestats.Granularity]string{
	presencestats.Hour:  "hourly",
	presencestats.Day:   "daily",
	presencestats.Week:  "weekly",
	presencestats.Month: "monthly",
	presencestats.Year:  "yearly",
}

// recentUserTiles names, per report granularity, the sources of the four tiles of
// report_recent_users.sql, which count the unique users of buckets not materialized yet: per-user
// aggregates, or the tables the monthly and weekly ones are materialized into (filled in by
// materializedQueries). Rows of each nest in one report bucket; recentTiles bounds them.
var recentUserTiles = map[presencestats.Granularity][4]string{
	presencestats.Hour:  {"presence_user_hourly", "presence_user_hourly", "presence_user_hourly", "presence_user_hourly"},
	presencestats.Day:   {"presence_user_hourly", "presence_user_hourly", "presence_user_hourly", "presence_user_hourly"},
	presencestats.Week:  {"presence_user_daily", "presence_user_daily", "presence_user_daily", "presence_user_daily"},
	presencestats.Month: {"{{user_monthly_materialized}}", "presence_user_daily", "{{user_weekly_materialized}}", "presence_user_daily"},
	presencestats.Year:  {"{{user_monthly_materialized}}", "presence_user_daily", "{{user_weekly_materialized}}", "presence_user_daily"},
}

// bucketWidth is each granularity as a PostgreSQL interval, for generate_series in the zone.
var bucketWidth = map[presencestats.Granularity]string{
	presencestats.Hour:  "1 hour",
	presencestats.Day:   "1 day",
	presencestats.Week:  "7 days",
	presencestats.Month: "1 month",
	presencestats.Year:  "1 year",
}

// NewReports returns the report reader over pool; loc is REPORT_TIMEZONE (nil: UTC), which must
// be the zone the aggregates were built with (CheckReportZone).
func NewReports(pool *pgxpool.Pool, loc *time.Location) *Reports {
	if loc == nil {
		loc = time.UTC
	}
	r := &Reports{
		pool:                pool,
		loc:                 loc,
		Now:                 time.Now,
		stats:               map[presencestats.Granularity]string{},
		totalUsers:          map[presencestats.Granularity]string{},
		allUsers:            map[presencestats.Granularity]string{},
		onlineStartTemplate: queries.Must("report_online_start.sql"),
		bucketSums:          map[presencestats.Granularity]string{},
		totalSums:           map[presencestats.Granularity]string{},
		marksTemplate:       map[presencestats.Granularity]string{},
		recentTemplate:      map[presencestats.Granularity]string{},
		rooms:               queries.Must("report_rooms.sql"),
		statsHours:          queries.Must("report_stats_hours.sql"),
		hourlyHorizon:       queries.Must("report_hourly_horizon.sql"),
	}
	stats, users, all := queries.Must("report_stats.sql"), queries.Must("report_total_users.sql"), queries.Must("report_all_users.sql")
	sums, totalSums := queries.Must("report_bucket_sums.sql"), queries.Must("report_total_sums.sql")
	marks, recent := queries.Must("report_users_marks.sql"), queries.Must("report_recent_users.sql")
	for g, level := range aggregateLevel {
		rep := strings.NewReplacer("{{room_agg}}", "presence_room_"+level, "{{user_agg}}", "presence_user_"+level,
			"{{room_users_agg}}", "presence_room_users_"+level, "{{all_users_agg}}", "presence_all_users_"+level,
			"{{total_agg}}", "presence_total_"+level)
		r.stats[g] = rep.Replace(stats)
		r.totalUsers[g] = rep.Replace(users)
		r.allUsers[g] = rep.Replace(all)
		r.bucketSums[g] = rep.Replace(sums)
		r.totalSums[g] = rep.Replace(totalSums)
		weeklyLast, monthlyLast := "NULL::timestamptz", "NULL::timestamptz"
		if weeklyTiles(g) {
			weeklyLast = "(SELECT max(bucket) FROM {{user_weekly_materialized}} WHERE bucket >= $2::timestamptz)"
			monthlyLast = "(SELECT max(bucket) FROM {{user_monthly_materialized}} WHERE bucket >= $2::timestamptz)"
		}
		r.marksTemplate[g] = strings.NewReplacer("{{room_users_agg}}", "presence_room_users_"+level,
			"{{all_users_agg}}", "presence_all_users_"+level, "{{weekly_last}}", weeklyLast, "{{monthly_last}}", monthlyLast).Replace(marks)
		tiles := recentUserTiles[g]
		r.recentTemplate[g] = strings.NewReplacer("{{tile1}}", tiles[0], "{{tile2}}", tiles[1], "{{tile3}}", tiles[2],
			"{{tile4}}", tiles[3]).Replace(recent)
	}
	// report_bucket_sums.sql takes $1-$7, report_total_sums.sql $1-$5: the anchors of the walk
	// and the hours counted come after.
	peakHours := queries.Must("report_peak_hours.sql")
	r.peakHoursRooms = strings.NewReplacer("{{sums}}", r.bucketSums[presencestats.Hour],
		"{{t0}}", "$8", "{{from}}", "$9", "{{tend}}", "$10", "{{until}}", "$11").Replace(peakHours)
	r.peakHoursEvery = strings.NewReplacer("{{sums}}", r.totalSums[presencestats.Hour],
		"{{t0}}", "$6", "{{from}}", "$7", "{{tend}}", "$8", "{{until}}", "$9").Replace(peakHours)
	return r
}

// CheckReportZone returns an EINVALID error when the aggregates were built with another zone
// than loc (REPORT_TIMEZONE changed after `migrate up`): reports would silently mix zones.
// EUNAVAILABLE when the database cannot be reached; EINTERNAL when migrations were not applied.
func CheckReportZone(ctx context.Context, pool *pgxpool.Pool, loc *time.Location) error {
	var zone string
	if err := pool.QueryRow(ctx, queries.Must("report_settings.sql")).Scan(&zone); err != nil {
		return pgError(err, "read the report zone (was `presenced migrate up` run?)")
	}
	if zone != loc.String() {
		return presencestats.Errorf(presencestats.EINVALID,
			"REPORT_TIMEZONE is %q but the report aggregates were built with %q: set it back, or rebuild them (migrate down to 3, then up)",
			loc.String(), zone)
	}
	return nil
}

// CountBuckets returns how many buckets of q.Granularity the range [q.Start, q.End) spans per
// room: the buckets whose start is in [Truncate(q.Start), q.End), as Granularity.CountBuckets
// counts them in the report zone (the API uses that too, with a limit, for REPORT_MAX_POINTS).
// It returns 0 for an invalid query (Stats reports why).
func (r *Reports) CountBuckets(q presencestats.ReportQuery) int {
	if _, ok := aggregateLevel[q.Granularity]; !ok || !q.End.After(q.Start) {
		return 0
	}
	return q.Granularity.CountBuckets(q.Start, q.End, r.loc, 0)
}

// uuidArray converts ids for a uuid[] parameter (pgx cannot encode []uuid.UUID as uuid[] in every query mode).
func uuidArray(ids []uuid.UUID) []pgtype.UUID {
	out := make([]pgtype.UUID, len(ids))
	for i, id := range ids {
		out[i] = pgtype.UUID{Bytes: id, Valid: true}
	}
	return out
}

// statRow is a ReportRow with the session sums behind its average.
type statRow struct {
	presencestats.ReportRow
	sessionsEnded     int64
	sessionSecondsSum float64
}

// selection is the rooms a report covers, in the database's uuid order (bytewise), each once.
// every: no rooms were asked for, so rooms is every room the aggregates know, and the queries
// read the all-rooms aggregates instead of filtering by room.
type selection struct {
	rooms []uuid.UUID
	every bool
}

// param returns the rooms as a uuid[] parameter: NULL for every room (the SQL then reads all).
func (s selection) param() []pgtype.UUID {
	if s.every {
		return nil
	}
	return uuidArray(s.rooms)
}

// counts returns the rooms' counts in starts, parallel to rooms, and their sum.
func (s selection) counts(starts map[uuid.UUID]int64) ([]int64, int64) {
	out := make([]int64, len(s.rooms))
	var total int64
	for i, id := range s.rooms {
		out[i] = starts[id]
		total += starts[id]
	}
	return out, total
}

func (r *Reports) selectRooms(ctx context.Context, q presencestats.ReportQuery) (selection, error) {
	sel := selection{rooms: q.RoomIDs, every: len(q.RoomIDs) == 0}
	if sel.every {
		sel.rooms = q.EveryRoom
		if sel.rooms == nil {
			var err error
			if sel.rooms, err = r.Rooms(ctx); err != nil {
				return sel, err
			}
		}
	}
	sel.rooms = slices.Compact(slices.SortedFunc(slices.Values(sel.rooms), func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) }))
	return sel, nil
}

func (r *Reports) validate(q presencestats.ReportQuery) error {
	if _, ok := aggregateLevel[q.Granularity]; !ok {
		return presencestats.Errorf(presencestats.EINVALID, "granularity %q is not one of hour, day, week, month, year", q.Granularity)
	}
	if !q.End.After(q.Start) {
		return presencestats.Errorf(presencestats.EINVALID, "end_time must be after start_time")
	}
	if lo, hi := presencestats.ReportTimeBounds(r.loc); q.Granularity.Truncate(q.Start, r.loc).Before(lo) || q.End.After(hi) {
		return presencestats.Errorf(presencestats.EINVALID, "the report's buckets must start in the years 1 to 9999")
	}
	return nil
}

// Stats calls fn for each room and bucket of q, ordered by room then bucket, streaming: rows are
// not held in memory. Every bucket whose start is in [Truncate(q.Start), q.End) is there, quiet
// ones included (their counts are the ones carried from before). No rooms in q means every room
// seen in the aggregates (q.EveryRoom, else Rooms). Metrics not asked for are still filled (the
// caller drops them).
// Errors: EINVALID for a bad query (unknown granularity, End not after Start), EUNAVAILABLE when
// the database is unreachable, fn's own error unchanged, EINTERNAL otherwise.
func (r *Reports) Stats(ctx context.Context, q presencestats.ReportQuery, fn func(presencestats.ReportRow) error) error {
	b, err := r.begin(ctx, q)
	if err != nil {
		return err
	}
	_, err = r.scan(ctx, q, b, func(s statRow) error { return fn(s.ReportRow) })
	return err
}

// reportBase is what the parts of a report share, read once per report (begin).
type reportBase struct {
	sel    selection
	first  time.Time           // the first bucket's start
	starts map[uuid.UUID]int64 // the rooms' counts at first
	recent recentUsers
}

// begin validates q and reads what Stats, Totals and Report all need.
func (r *Reports) begin(ctx context.Context, q presencestats.ReportQuery) (reportBase, error) {
	var b reportBase
	if err := r.validate(q); err != nil {
		return b, err
	}
	var err error
	if b.sel, err = r.selectRooms(ctx, q); err != nil {
		return b, err
	}
	b.first = q.Granularity.Truncate(q.Start, r.loc)
	m, err := r.readMarks(ctx, q.Granularity, b.first)
	if err != nil {
		return b, err
	}
	if b.starts, err = r.onlineAt(ctx, b.sel, q.Granularity, b.first, m); err != nil {
		return b, err
	}
	b.recent, err = r.recent(ctx, b.sel, q.Granularity, b.first, q.End, m)
	return b, err
}

// Report is Stats, Totals and (when q asks for peak_hours) PeakHours in one call, as the JSON
// API answers them: the room list and the counts at the start of the range are read once, and
// the totals are summed from the stats rows as they stream by (Totals alone reads them from the
// aggregates: the same sums, added in another order, so averages may differ in the last bits);
// only their unique users are read apart.
// Errors: as Stats.
func (r *Reports) Report(ctx context.Context, q presencestats.ReportQuery, fn func(presencestats.ReportRow) error) ([]presencestats.TotalsRow, []presencestats.PeakHour, error) {
	b, err := r.begin(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	sums := newRowSums(q.Granularity, b.first, q.End, r.CountBuckets(q))
	last, err := r.scan(ctx, q, b, func(s statRow) error {
		sums.add(s)
		return fn(s.ReportRow)
	})
	if err != nil {
		return nil, nil, err
	}
	totals := sums.totals()
	if err := r.countTotalUsers(ctx, q, b, totals, sums.index); err != nil {
		return nil, nil, err
	}
	var hours []presencestats.PeakHour
	if q.Wants(presencestats.MetricPeakHours) {
		known := &knownCounts{first: b.first, starts: b.starts, last: last}
		if q.Granularity == presencestats.Hour {
			known.hourly = totals
		}
		if hours, err = r.peakHours(ctx, q, b.sel, known); err != nil {
			return nil, nil, err
		}
	}
	return totals, hours, nil
}

// roomRows is one room's aggregate rows in a range, as parallel arrays in bucket order
// (report_stats.sql, report_stats_hours.sql).
type roomRows struct {
	room                                                     uuid.UUID
	buckets                                                  []time.Time
	peakIn, onlineEnd, netDelta, connections, ended, uniques []int64
	moment, seconds                                          []float64 // moment: delta_moment
}

// check returns an error unless every array of r has as many entries as its buckets.
func (r *roomRows) check() error {
	n := len(r.buckets)
	if len(r.peakIn) != n || len(r.onlineEnd) != n || len(r.netDelta) != n || len(r.moment) != n || len(r.connections) != n ||
		len(r.ended) != n || len(r.seconds) != n || len(r.uniques) != n {
		return presencestats.Errorf(presencestats.EINTERNAL, "read report stats: arrays of room %s differ in length", r.room)
	}
	return nil
}

// hoursPart is one row of report_stats_hours.sql: a room's hours of one day (from the by-day
// aggregates), or of the hours after them, packed by report_pack_hour (64 bytes an hour) and
// report_pack_users (16), migrations/zoned/00009_report_hours_by_day.sql.
type hoursPart struct {
	room         uuid.UUID
	hours, users []byte
}

const hourBytes, userHourBytes = 64, 16

// pgEpoch is where timestamptz_send counts microseconds from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func pgTime(b []byte) time.Time {
	return pgEpoch.Add(time.Duration(int64(binary.BigEndian.Uint64(b))) * time.Microsecond)
}

// appendTo appends p's hours to r, each with its unique users (0 for an hour without a user row).
func (p *hoursPart) appendTo(r *roomRows) error {
	if len(p.hours)%hourBytes != 0 || len(p.users)%userHourBytes != 0 {
		return presencestats.Errorf(presencestats.EINTERNAL, "read report stats: packed hours of room %s have %d and %d bytes",
			p.room, len(p.hours), len(p.users))
	}
	r.room = p.room
	u := p.users
	i64 := func(b []byte) int64 { return int64(binary.BigEndian.Uint64(b)) }
	f64 := func(b []byte) float64 { return math.Float64frombits(binary.BigEndian.Uint64(b)) }
	for h := p.hours; len(h) > 0; h = h[hourBytes:] {
		bucket := pgTime(h)
		r.buckets = append(r.buckets, bucket)
		r.peakIn, r.onlineEnd, r.netDelta = append(r.peakIn, i64(h[8:])), append(r.onlineEnd, i64(h[16:])), append(r.netDelta, i64(h[24:]))
		r.moment, r.connections = append(r.moment, f64(h[32:])), append(r.connections, i64(h[40:]))
		r.ended, r.seconds = append(r.ended, i64(h[48:])), append(r.seconds, f64(h[56:]))
		for len(u) > 0 && pgTime(u).Before(bucket) {
			u = u[userHourBytes:]
		}
		var n int64
		if len(u) > 0 && pgTime(u).Equal(bucket) {
			n = i64(u[8:])
		}
		r.uniques = append(r.uniques, n)
	}
	return nil
}

// statsRows reads the rows of report_stats.sql, or of report_stats_hours.sql for an hourly
// report, one room at a time, in room order.
type statsRows struct {
	rows    pgx.Rows
	hourly  bool
	peek    hoursPart // hourly: the next row, read ahead
	hasPeek bool
}

// next fills r with the next room's rows; it reports false after the last room.
func (s *statsRows) next(r *roomRows) (bool, error) {
	if !s.hourly {
		if !s.rows.Next() {
			return false, pgError(s.rows.Err(), "read report stats")
		}
		if err := s.rows.Scan(&r.room, &r.buckets, &r.peakIn, &r.onlineEnd, &r.netDelta, &r.moment,
			&r.connections, &r.ended, &r.seconds, &r.uniques); err != nil {
			return false, pgError(err, "read report stats")
		}
		return true, r.check()
	}
	// Reuse r's arrays: the caller is done with the previous room.
	*r = roomRows{buckets: r.buckets[:0], peakIn: r.peakIn[:0], onlineEnd: r.onlineEnd[:0], netDelta: r.netDelta[:0],
		moment: r.moment[:0], connections: r.connections[:0], ended: r.ended[:0], seconds: r.seconds[:0], uniques: r.uniques[:0]}
	have := false
	for {
		if !s.hasPeek {
			if !s.rows.Next() {
				return have, pgError(s.rows.Err(), "read report stats")
			}
			p := &s.peek
			if err := s.rows.Scan(&p.room, &p.hours, &p.users); err != nil {
				return false, pgError(err, "read report stats")
			}
			s.hasPeek = true
		}
		if have && s.peek.room != r.room {
			return true, nil
		}
		if err := s.peek.appendTo(r); err != nil {
			return false, err
		}
		have, s.hasPeek = true, false
	}
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

// scan walks every bucket of every selected room, merging in the sparse aggregate rows and
// carrying each room's count from starts (its count at the first bucket's start). It returns the
// rooms' summed count at the end of the last bucket.
func (r *Reports) scan(ctx context.Context, q presencestats.ReportQuery, b reportBase, fn func(statRow) error) (countAt, error) {
	g, first, recent := q.Granularity, b.first, b.recent
	now := r.Now()
	last := countAt{at: first}
	for last.at.Before(q.End) {
		last.at = g.Next(last.at)
	}
	var rows pgx.Rows
	var err error
	byDay, dayFirst, daysEnd := r.hoursByDay(g, first, q.End, now)
	if byDay {
		rows, err = r.pool.Query(ctx, r.statsHours, b.sel.param(), q.End, dayFirst, daysEnd, maxTime(first, daysEnd))
	} else {
		rows, err = r.pool.Query(ctx, r.stats[g], b.sel.param(), first, q.End)
	}
	if err != nil {
		return last, pgError(err, "query report stats")
	}
	defer rows.Close()
	sr := &statsRows{rows: rows, hourly: byDay}
	var next roomRows
	have := false
	advance := func() error {
		var err error
		have, err = sr.next(&next)
		return err
	}
	if err := advance(); err != nil {
		return last, err
	}
	for _, room := range b.sel.rooms {
		// Skip rooms that are not selected (every room: one that appeared after the room list was read).
		for have && bytes.Compare(next.room[:], room[:]) < 0 {
			if err := advance(); err != nil {
				return last, err
			}
		}
		var cur *roomRows
		if have && next.room == room {
			cur = &next
		}
		i := 0
		online := b.starts[room] // the room's count at the current bucket's start, carried forward
		for bucket := first; bucket.Before(q.End); bucket = g.Next(bucket) {
			for cur != nil && i < len(cur.buckets) && cur.buckets[i].Before(bucket) {
				i++ // a row not on this walk (cannot happen with buckets of g)
			}
			matched := cur != nil && i < len(cur.buckets) && cur.buckets[i].Equal(bucket)
			s := statRow{ReportRow: presencestats.ReportRow{RoomID: room, Bucket: bucket, Granularity: g}}
			if matched {
				s.TotalConnections, s.UniqueUsers = cur.connections[i], cur.uniques[i]
				s.sessionsEnded, s.sessionSecondsSum = cur.ended[i], cur.seconds[i]
			}
			end := g.Next(bucket)
			if end.After(now) {
				end = now
			}
			if length := end.Sub(bucket).Seconds(); length > 0 { // a bucket not begun yet stays at zero
				integral := float64(online) * length
				s.PeakOnline = online
				if matched {
					s.PeakOnline = max(s.PeakOnline, cur.peakIn[i])
					// The bucket's part above N0 (migration 4): net_delta * epoch(end) - delta_moment.
					integral += float64(cur.netDelta[i])*float64(end.UnixMicro())/1e6 - cur.moment[i]
				}
				s.AvgOnline = math.Max(integral/length, 0)
			}
			if s.sessionsEnded > 0 {
				s.AvgSessionDuration = s.sessionSecondsSum / float64(s.sessionsEnded)
			}
			if !bucket.Before(recent.from) {
				s.UniqueUsers = recent.rooms[roomBucket{room, bucket.Unix()}]
			}
			if matched {
				online = cur.onlineEnd[i]
				i++
			}
			if err := fn(s); err != nil {
				return last, err
			}
		}
		last.total += online // the room's count at the end of the last bucket
		if cur != nil {
			if err := advance(); err != nil {
				return last, err
			}
		}
	}
	return last, nil
}

// onlineAt returns each selected room's online count at s, the start of a bucket of g, when it
// is not 0 (report_online_start.sql: the past tiled from fine to coarse levels, each tile bounded).
// m says how far the room monthly and yearly aggregates, read there from their materialized
// tables, are materialized; the daily tile takes any months after that.
func (r *Reports) onlineAt(ctx context.Context, sel selection, g presencestats.Granularity, s time.Time, m marks) (map[uuid.UUID]int64, error) {
	out := map[uuid.UUID]int64{}
	if len(sel.rooms) == 0 {
		return out, nil
	}
	sql, err := r.materializedQueries(ctx)
	if err != nil {
		return nil, err
	}
	// Tiles hourly [hourLo, s), daily [dayLo, hourLo), monthly [monthLo, dayLo), yearly before monthLo.
	hourLo, dayLo, monthLo := presencestats.Day.Truncate(s, r.loc), presencestats.Month.Truncate(s, r.loc), presencestats.Year.Truncate(s, r.loc)
	switch g {
	case presencestats.Day, presencestats.Week:
		hourLo = s
	case presencestats.Month:
		hourLo, dayLo = s, s
	case presencestats.Year:
		hourLo, dayLo, monthLo = s, s, s
	}
	if end := materializedEnd(presencestats.Month, m.roomMonthly, r.loc); end.Before(dayLo) {
		dayLo = end
	}
	if end := materializedEnd(presencestats.Year, m.roomYearly, r.loc); end.Before(monthLo) {
		monthLo = end
	}
	if dayLo.Before(monthLo) {
		monthLo = dayLo
	}
	rows, err := r.pool.Query(ctx, sql.onlineStart, uuidArray(sel.rooms), hourLo, s, dayLo, monthLo)
	if err != nil {
		r.forgetMaterialized(err)
		return nil, pgError(err, "query report online counts")
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var n *int64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, pgError(err, "read report online counts")
		}
		if n != nil {
			out[id] = *n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, pgError(err, "read report online counts")
	}
	return out, nil
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

// marks is what report_users_marks.sql reads: the last bucket materialized (nil: none) in the
// unique-user count aggregates of a granularity from a report's first bucket on (roomsUsers,
// allUsers), in the tables behind the weekly and monthly per-user aggregates (userWeekly,
// userMonthly: month and year reports only) and behind the room monthly and yearly ones.
type marks struct {
	roomsUsers, allUsers, userWeekly, userMonthly, roomMonthly, roomYearly *time.Time
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
		&m.roomMonthly, &m.roomYearly); err != nil {
		r.forgetMaterialized(err)
		return m, pgError(err, "query report materialization marks")
	}
	return m, nil
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
	b := r.recentTiles(g, out.from, hi, m.userWeekly, m.userMonthly)
	rows, err := r.pool.Query(ctx, sql.recent[g], sel.param(), b[0], b[1], b[2], b[3], b[4], bucketWidth[g], r.loc.String())
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

// recentTiles bounds the four tiles of report_recent_users.sql over the report buckets [from, hi)
// of g (recentUserTiles names their sources). Hours, days and weeks: the first tile takes it all.
// Months and years, with weeklyLast and monthlyLast the last buckets materialized in those
// per-user aggregates (nil: none):
//
//	monthly rows  [from, a)  the months before the one in progress, up to the last materialized
//	daily rows    [a, b)     any months not materialized yet, then the days before the first week
//	                         that starts in the month in progress
//	weekly rows   [b, c)     that month's whole weeks that have ended, up to the last materialized
//	daily rows    [c, hi)    the rest
//
// so each week lies in one month, and no tile reads past what is materialized in its source.
func (r *Reports) recentTiles(g presencestats.Granularity, from, hi time.Time, weeklyLast, monthlyLast *time.Time) [5]time.Time {
	if !weeklyTiles(g) {
		return [5]time.Time{from, hi, hi, hi, hi}
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
	a := clamp(materializedEnd(presencestats.Month, monthlyLast, r.loc), from, split)
	b := presencestats.Week.Truncate(split, r.loc)
	if b.Before(split) {
		b = presencestats.Week.Next(b)
	}
	b = clamp(b, split, hi)
	c := b
	if weeklyLast != nil {
		c = presencestats.Week.Truncate(now, r.loc) // the week in progress
		if materialized := materializedEnd(presencestats.Week, weeklyLast, r.loc); materialized.Before(c) {
			c = materialized
		}
		c = clamp(c, b, hi)
	}
	return [5]time.Time{from, a, b, c, hi}
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
	for _, view := range []string{"presence_user_weekly", "presence_user_monthly", "presence_room_monthly", "presence_room_yearly"} {
		if names[view] == "" {
			return nil, presencestats.Errorf(presencestats.EINTERNAL, "the aggregate %s is missing (was `presenced migrate up` run?)", view)
		}
		pairs = append(pairs, "{{"+strings.TrimPrefix(view, "presence_")+"_materialized}}", names[view])
	}
	rep := strings.NewReplacer(pairs...)
	q := &materializedQueries{marks: map[presencestats.Granularity]string{}, recent: map[presencestats.Granularity]string{},
		onlineStart: rep.Replace(r.onlineStartTemplate)}
	for g := range aggregateLevel {
		q.marks[g], q.recent[g] = rep.Replace(r.marksTemplate[g]), rep.Replace(r.recentTemplate[g])
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

// bucketTotal is the selected rooms together in one bucket.
type bucketTotal struct {
	bucket            time.Time
	peak              int64
	avg               float64
	connections       int64
	sessionsEnded     int64
	sessionSecondsSum float64
}

// sums calls fn for every bucket of g in [first, end), in order, with the selected rooms'
// totals, starting from their counts at first (starts): report_bucket_sums.sql (a selection) or
// report_total_sums.sql (every room) return the buckets with aggregate rows as changes against
// the carried total; the quiet buckets in between keep it.
func (r *Reports) sums(ctx context.Context, sel selection, g presencestats.Granularity, first, end time.Time, starts map[uuid.UUID]int64, fn func(bucketTotal)) error {
	online, total := sel.counts(starts) // total: the rooms' summed count at the current bucket's start
	now := r.Now()
	var rows pgx.Rows
	var err error
	if sel.every {
		rows, err = r.pool.Query(ctx, r.totalSums[g], first, end, now, bucketWidth[g], r.loc.String())
	} else {
		rows, err = r.pool.Query(ctx, r.bucketSums[g], first, end, now, bucketWidth[g], r.loc.String(), uuidArray(sel.rooms), online)
	}
	if err != nil {
		return pgError(err, "query report totals")
	}
	defer rows.Close()
	type change struct {
		d, p         int64
		a            float64
		conns, ended int64
		seconds      float64
	}
	changes := map[int64]change{}
	for rows.Next() {
		var b time.Time
		var c change
		if err := rows.Scan(&b, &c.d, &c.p, &c.a, &c.conns, &c.ended, &c.seconds); err != nil {
			return pgError(err, "read report totals")
		}
		changes[b.Unix()] = c
	}
	if err := rows.Err(); err != nil {
		return pgError(err, "read report totals")
	}
	for b := first; b.Before(end); b = g.Next(b) {
		c := changes[b.Unix()]
		t := bucketTotal{bucket: b, connections: c.conns, sessionsEnded: c.ended, sessionSecondsSum: c.seconds}
		if b.Before(now) { // a bucket not begun yet counts as zero, as in Stats
			t.peak = total + c.p
			t.avg = math.Max(float64(total)+c.a, 0)
		}
		fn(t)
		total += c.d
	}
	return nil
}

// countAt is the selected rooms' summed online count at a time.
type countAt struct {
	at    time.Time
	total int64
}

// Totals returns the selected rooms together, one row per bucket of q in order, as TotalsRow
// documents: peaks and averages summed over rooms, unique users counted once across rooms,
// session duration weighted by the sessions that ended in each room. No rooms in q means every
// room, read from the all-rooms aggregates (migration 7).
// Errors: as Stats.
func (r *Reports) Totals(ctx context.Context, q presencestats.ReportQuery) ([]presencestats.TotalsRow, error) {
	b, err := r.begin(ctx, q)
	if err != nil {
		return nil, err
	}
	s := newRowSums(q.Granularity, b.first, q.End, r.CountBuckets(q))
	if err := r.sums(ctx, b.sel, q.Granularity, b.first, q.End, b.starts, func(t bucketTotal) {
		s.buckets[s.index[t.bucket.Unix()]] = t
	}); err != nil {
		return nil, err
	}
	totals := s.totals()
	return totals, r.countTotalUsers(ctx, q, b, totals, s.index)
}

// countTotalUsers fills in the unique users of totals (index: bucket start in Unix seconds ->
// row): up to b.recent.from, for every room the counts kept by the all-users aggregate, for a
// selection a count of its user rows; after it, the recent counts.
func (r *Reports) countTotalUsers(ctx context.Context, q presencestats.ReportQuery, b reportBase, totals []presencestats.TotalsRow, index map[int64]int) error {
	for bucket, n := range b.recent.all {
		if i, ok := index[bucket]; ok {
			totals[i].UniqueUsers = n
		}
	}
	upTo := q.End
	if b.recent.from.Before(upTo) {
		upTo = b.recent.from
	}
	if !b.first.Before(upTo) {
		return nil
	}
	var rows pgx.Rows
	var err error
	if b.sel.every {
		rows, err = r.pool.Query(ctx, r.allUsers[q.Granularity], b.first, upTo)
	} else {
		rows, err = r.pool.Query(ctx, r.totalUsers[q.Granularity], uuidArray(b.sel.rooms), b.first, upTo)
	}
	if err != nil {
		return pgError(err, "query report unique users")
	}
	defer rows.Close()
	for rows.Next() {
		var bucket time.Time
		var n int64
		if err := rows.Scan(&bucket, &n); err != nil {
			return pgError(err, "read report unique users")
		}
		if i, ok := index[bucket.Unix()]; ok {
			totals[i].UniqueUsers = n
		}
	}
	if err := rows.Err(); err != nil {
		return pgError(err, "read report unique users")
	}
	return nil
}

// rowSums holds the totals of a report's buckets (TotalsRow): peaks, averages and connections
// summed over rooms, session duration weighted by the sessions that ended in each; unique users
// are counted apart (countTotalUsers). Report adds its stats rows up into it (add); Totals sets
// each bucket from the aggregates' sums.
type rowSums struct {
	buckets []bucketTotal
	index   map[int64]int // bucket start (Unix seconds) -> position in buckets
}

// newRowSums prepares the sums of the buckets of g in [first, end); n is their number.
func newRowSums(g presencestats.Granularity, first, end time.Time, n int) *rowSums {
	s := &rowSums{buckets: make([]bucketTotal, 0, n), index: make(map[int64]int, n)}
	for b := first; b.Before(end); b = g.Next(b) {
		s.index[b.Unix()] = len(s.buckets)
		s.buckets = append(s.buckets, bucketTotal{bucket: b})
	}
	return s
}

// add adds one stats row to its bucket's sums.
func (s *rowSums) add(row statRow) {
	t := &s.buckets[s.index[row.Bucket.Unix()]]
	t.peak += row.PeakOnline
	t.avg += row.AvgOnline
	t.connections += row.TotalConnections
	t.sessionsEnded += row.sessionsEnded
	t.sessionSecondsSum += row.sessionSecondsSum
}

// totals returns the sums as totals rows, without unique users.
func (s *rowSums) totals() []presencestats.TotalsRow {
	out := make([]presencestats.TotalsRow, len(s.buckets))
	for i, t := range s.buckets {
		out[i] = presencestats.TotalsRow{Bucket: t.bucket, PeakOnline: t.peak, AvgOnline: t.avg, TotalConnections: t.connections}
		if t.sessionsEnded > 0 {
			out[i].AvgSessionDuration = t.sessionSecondsSum / float64(t.sessionsEnded)
		}
	}
	return out
}

// PeakHours returns presence by hour of day (0-23 in the report zone) over q's range for the
// selected rooms together, as PeakHour documents, from the hourly aggregates whatever
// q.Granularity is. The hours it covers are those of the range that have begun and that the
// hourly aggregates still keep (6 months); hours of day it does not cover are left out.
// Errors: EINVALID for End not after Start, otherwise as Stats.
func (r *Reports) PeakHours(ctx context.Context, q presencestats.ReportQuery) ([]presencestats.PeakHour, error) {
	q.Granularity = presencestats.Hour
	if err := r.validate(q); err != nil {
		return nil, err
	}
	sel, err := r.selectRooms(ctx, q)
	if err != nil {
		return nil, err
	}
	return r.peakHours(ctx, q, sel, nil)
}

// peakWalkReuse bounds how far before the range's first hour a peak-hours walk may start to
// reuse the counts a report read at its first bucket's start (walking a month of hours costs
// less than reading the rooms' counts again; walking most of a year does not).
const peakWalkReuse = 32 * 24 * time.Hour

// knownCounts is what a report has already read of the selected rooms' counts when it comes to
// peak hours: each room's count at its first bucket's start, and their sum at its last's end; an
// hourly report also has its totals, which are the hours peak hours groups.
type knownCounts struct {
	first  time.Time
	starts map[uuid.UUID]int64
	last   countAt
	hourly []presencestats.TotalsRow
}

// peakHours is PeakHours over sel. A report passes what it knows (known, else nil): the walk over
// the hours then starts at the report's first bucket when that is not too far back, reusing its
// counts there; otherwise, for every room, it is anchored at the end of the report's last bucket
// (the hours from the first one counted up to there are all kept). Only the rest reads the rooms'
// counts at the first hour counted.
func (r *Reports) peakHours(ctx context.Context, q presencestats.ReportQuery, sel selection, known *knownCounts) ([]presencestats.PeakHour, error) {
	now := r.Now()
	from := presencestats.Hour.Truncate(q.Start, r.loc)
	var horizon *time.Time
	if err := r.pool.QueryRow(ctx, r.hourlyHorizon, now).Scan(&horizon); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, pgError(err, "query the hourly retention")
	}
	if horizon != nil && horizon.After(from) {
		from = presencestats.Hour.Truncate(*horizon, r.loc)
		if from.Before(*horizon) {
			from = from.Add(time.Hour)
		}
	}
	out := []presencestats.PeakHour{}
	if !from.Before(q.End) || !from.Before(now) {
		return out, nil
	}
	if known != nil && known.hourly != nil {
		return hoursOfDay(known.hourly, from, now, r.loc), nil
	}
	// The walk over [walk, walkEnd), anchored at its start (t0) or, t0 nil, at its end (tend).
	walk, walkEnd := from, q.End
	var starts map[uuid.UUID]int64
	var t0, tend *int64
	switch {
	case known != nil && !known.first.After(from) && from.Sub(known.first) <= peakWalkReuse &&
		(horizon == nil || !horizon.After(known.first)):
		walk, starts = known.first, known.starts
	case known != nil && sel.every && !known.last.at.Before(q.End):
		walkEnd, tend = known.last.at, &known.last.total
	default:
		m, err := r.readMarks(ctx, presencestats.Hour, from)
		if err != nil {
			return nil, err
		}
		if starts, err = r.onlineAt(ctx, sel, presencestats.Hour, from, m); err != nil {
			return nil, err
		}
	}
	online, total := sel.counts(starts)
	if tend == nil {
		t0 = &total
	}
	var rows pgx.Rows
	var err error
	if sel.every {
		rows, err = r.pool.Query(ctx, r.peakHoursEvery, walk, walkEnd, now, bucketWidth[presencestats.Hour], r.loc.String(),
			t0, from, tend, q.End)
	} else {
		rows, err = r.pool.Query(ctx, r.peakHoursRooms, walk, walkEnd, now, bucketWidth[presencestats.Hour], r.loc.String(),
			uuidArray(sel.rooms), online, t0, from, tend, q.End)
	}
	if err != nil {
		return nil, pgError(err, "query report peak hours")
	}
	defer rows.Close()
	for rows.Next() {
		var h presencestats.PeakHour
		if err := rows.Scan(&h.Hour, &h.AvgOnline, &h.PeakOnline); err != nil {
			return nil, pgError(err, "read report peak hours")
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, pgError(err, "read report peak hours")
	}
	return out, nil
}

// hoursOfDay groups an hourly report's totals by hour of day in loc, as report_peak_hours.sql
// groups its walk: the hours from `from` on that have begun by now; per hour of day, the mean of
// the summed averages and the largest summed peak. A total's average and peak are the sums of
// its rooms' (T + a and T + p there), added in another order: averages may differ in the last bits.
func hoursOfDay(hourly []presencestats.TotalsRow, from, now time.Time, loc *time.Location) []presencestats.PeakHour {
	var sum [24]float64
	var n [24]int
	var peak [24]int64
	for _, t := range hourly {
		if t.Bucket.Before(from) || !t.Bucket.Before(now) {
			continue
		}
		h := t.Bucket.In(loc).Hour()
		sum[h] += t.AvgOnline
		peak[h] = max(peak[h], t.PeakOnline)
		n[h]++
	}
	out := []presencestats.PeakHour{}
	for h := range 24 {
		if n[h] > 0 {
			out = append(out, presencestats.PeakHour{Hour: h, AvgOnline: sum[h] / float64(n[h]), PeakOnline: peak[h]})
		}
	}
	return out
}

// Rooms returns every room seen in the aggregates, in id order, for the dashboard's picker.
// Errors: EUNAVAILABLE when the database is unreachable, EINTERNAL otherwise.
func (r *Reports) Rooms(ctx context.Context) ([]uuid.UUID, error) {
	rows, err := r.pool.Query(ctx, r.rooms)
	if err != nil {
		return nil, pgError(err, "query report rooms")
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, pgError(err, "read report rooms")
	}
	return ids, nil
}
