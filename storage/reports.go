package storage

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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
//
// The parts of a report live in files named after them: report_stats.go (the rows per room and
// bucket, and the counts at the range's start), report_hours.go (the packed hours of hour
// reports), report_users.go (unique users not materialized yet), report_totals.go (totals and peak
// hours) and report_query.go (how far the aggregates are materialized, and which tables a report
// reads for that).
type Reports struct {
	pool *pgxpool.Pool
	loc  *time.Location
	// Now is the clock: a bucket in progress is averaged over [start, Now()). Tests replace it.
	Now func() time.Time

	stats      map[presencestats.Granularity]byRooms
	statsHours byRooms // hourly reports: report_stats_hours.sql, in place of stats[Hour]
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
	marksTemplate       map[presencestats.Granularity]string
	recentTemplate      map[presencestats.Granularity]byRooms
	onlineStartTemplate string
	materializedMu      sync.Mutex
	materialized        *materializedQueries
}

// aggregateLevel names the continuous aggregates of each granularity (migration 4).
var aggregateLevel = map[presencestats.Granularity]string{
	presencestats.Hour:  "hourly",
	presencestats.Day:   "daily",
	presencestats.Week:  "weekly",
	presencestats.Month: "monthly",
	presencestats.Year:  "yearly",
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
		stats:               map[presencestats.Granularity]byRooms{},
		totalUsers:          map[presencestats.Granularity]string{},
		allUsers:            map[presencestats.Granularity]string{},
		onlineStartTemplate: queries.Must("report_online_start.sql"),
		bucketSums:          map[presencestats.Granularity]string{},
		totalSums:           map[presencestats.Granularity]string{},
		marksTemplate:       map[presencestats.Granularity]string{},
		recentTemplate:      map[presencestats.Granularity]byRooms{},
		rooms:               queries.Must("report_rooms.sql"),
		statsHours:          newByRooms(queries.Must("report_stats_hours.sql")),
		hourlyHorizon:       queries.Must("report_hourly_horizon.sql"),
	}
	stats, users, all := queries.Must("report_stats.sql"), queries.Must("report_total_users.sql"), queries.Must("report_all_users.sql")
	sums, totalSums := queries.Must("report_bucket_sums.sql"), queries.Must("report_total_sums.sql")
	marks, recent := queries.Must("report_users_marks.sql"), queries.Must("report_recent_users.sql")
	for g, level := range aggregateLevel {
		rep := strings.NewReplacer("{{room_agg}}", "presence_room_"+level, "{{user_agg}}", "presence_user_"+level,
			"{{room_users_agg}}", "presence_room_users_"+level, "{{all_users_agg}}", "presence_all_users_"+level,
			"{{total_agg}}", "presence_total_"+level)
		r.stats[g] = newByRooms(rep.Replace(stats))
		r.totalUsers[g] = rep.Replace(users)
		r.allUsers[g] = rep.Replace(all)
		r.bucketSums[g] = rep.Replace(sums)
		r.totalSums[g] = rep.Replace(totalSums)
		weeklyLast, monthlyLast, quarterlyLast := "NULL::timestamptz", "NULL::timestamptz", "NULL::timestamptz"
		if weeklyTiles(g) {
			weeklyLast = "(SELECT max(bucket) FROM {{user_weekly_materialized}} WHERE bucket >= $2::timestamptz)"
			monthlyLast = "(SELECT max(bucket) FROM {{user_monthly_materialized}} WHERE bucket >= $2::timestamptz)"
		}
		if g == presencestats.Year {
			quarterlyLast = "(SELECT max(bucket) FROM {{user_quarterly_materialized}} WHERE bucket >= $1::timestamptz)"
		}
		r.marksTemplate[g] = strings.NewReplacer("{{room_users_agg}}", "presence_room_users_"+level,
			"{{all_users_agg}}", "presence_all_users_"+level, "{{weekly_last}}", weeklyLast, "{{monthly_last}}", monthlyLast,
			"{{quarterly_last}}", quarterlyLast).Replace(marks)
		tiles := recentUserTiles[g]
		r.recentTemplate[g] = newByRooms(strings.NewReplacer("{{tile1}}", tiles[0], "{{tile2}}", tiles[1], "{{tile3}}", tiles[2],
			"{{tile4}}", tiles[3], "{{tile0}}", tiles[4]).Replace(recent))
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
