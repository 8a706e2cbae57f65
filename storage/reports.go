package storage

import (
	"bytes"
	"context"
	"math"
	"slices"
	"strings"
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
type Reports struct {
	pool *pgxpool.Pool
	loc  *time.Location
	// Now is the clock: a bucket in progress is averaged over [start, Now()). Tests replace it.
	Now func() time.Time

	stats       map[presencestats.Granularity]string
	totalUsers  map[presencestats.Granularity]string
	allUsers    map[presencestats.Granularity]string
	bucketSums  map[presencestats.Granularity]string
	onlineStart string
	rooms       string
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
		pool:        pool,
		loc:         loc,
		Now:         time.Now,
		stats:       map[presencestats.Granularity]string{},
		totalUsers:  map[presencestats.Granularity]string{},
		allUsers:    map[presencestats.Granularity]string{},
		onlineStart: queries.Must("report_online_start.sql"),
		bucketSums:  map[presencestats.Granularity]string{},
		rooms:       queries.Must("report_rooms.sql"),
	}
	stats, users, all := queries.Must("report_stats.sql"), queries.Must("report_total_users.sql"), queries.Must("report_all_users.sql")
	sums := queries.Must("report_bucket_sums.sql")
	for g, level := range aggregateLevel {
		rep := strings.NewReplacer("{{room_agg}}", "presence_room_"+level, "{{user_agg}}", "presence_user_"+level,
			"{{room_users_agg}}", "presence_room_users_"+level, "{{all_users_agg}}", "presence_all_users_"+level)
		r.stats[g] = rep.Replace(stats)
		r.totalUsers[g] = rep.Replace(users)
		r.allUsers[g] = rep.Replace(all)
		r.bucketSums[g] = rep.Replace(sums)
	}
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

// uuidArray converts ids for a uuid[] parameter (pgx in exec mode cannot encode []uuid.UUID).
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

// Stats calls fn for each room and bucket of q, ordered by room then bucket, streaming: rows are
// not held in memory. Every bucket whose start is in [Truncate(q.Start), q.End) is there, quiet
// ones included (their counts are the ones carried from before). No rooms in q means every room
// seen in the aggregates (Rooms). Metrics not asked for are still filled (the caller drops them).
// Errors: EINVALID for a bad query (unknown granularity, End not after Start), EUNAVAILABLE when
// the database is unreachable, fn's own error unchanged, EINTERNAL otherwise.
func (r *Reports) Stats(ctx context.Context, q presencestats.ReportQuery, fn func(presencestats.ReportRow) error) error {
	return r.scan(ctx, q, func(s statRow) error { return fn(s.ReportRow) })
}

func (r *Reports) validate(q presencestats.ReportQuery) error {
	if _, ok := aggregateLevel[q.Granularity]; !ok {
		return presencestats.Errorf(presencestats.EINVALID, "granularity %q is not one of hour, day, week, month, year", q.Granularity)
	}
	if !q.End.After(q.Start) {
		return presencestats.Errorf(presencestats.EINVALID, "end_time must be after start_time")
	}
	return nil
}

func (r *Reports) roomsOf(ctx context.Context, q presencestats.ReportQuery) ([]uuid.UUID, error) {
	if len(q.RoomIDs) > 0 {
		return q.RoomIDs, nil
	}
	return r.Rooms(ctx)
}

func (r *Reports) scan(ctx context.Context, q presencestats.ReportQuery, fn func(statRow) error) error {
	if err := r.validate(q); err != nil {
		return err
	}
	rooms, err := r.roomsOf(ctx, q)
	if err != nil {
		return err
	}
	// Rooms in the database's uuid order (bytewise), each once: the rows arrive in that order.
	rooms = slices.Clone(rooms)
	slices.SortFunc(rooms, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	rooms = slices.Compact(rooms)
	g := q.Granularity
	first := g.Truncate(q.Start, r.loc)
	now := r.Now()
	ids := uuidArray(rooms)
	onlineStart, err := r.onlineAt(ctx, ids, g, first)
	if err != nil {
		return err
	}
	rows, err := r.pool.Query(ctx, r.stats[g], ids, first, q.End, bucketWidth[g], r.loc.String(), now)
	if err != nil {
		return pgError(err, "query report stats")
	}
	defer rows.Close()
	// The rows are sparse (buckets with events); walk every bucket of every room, merging them in.
	type aggRow struct {
		room               uuid.UUID
		bucket             time.Time
		peakIn, onlineEnd  int64
		moment             float64
		connections, ended int64
		seconds            float64
		uniqueUsers        int64
	}
	var next aggRow
	have := false
	advance := func() error {
		have = rows.Next()
		if !have {
			if err := rows.Err(); err != nil {
				return pgError(err, "read report stats")
			}
			return nil
		}
		if err := rows.Scan(&next.room, &next.bucket, &next.peakIn, &next.onlineEnd, &next.moment,
			&next.connections, &next.ended, &next.seconds, &next.uniqueUsers); err != nil {
			return pgError(err, "read report stats")
		}
		return nil
	}
	if err := advance(); err != nil {
		return err
	}
	for _, room := range rooms {
		online := onlineStart[room] // the room's count at the current bucket's start, carried forward
		for bucket := first; bucket.Before(q.End); bucket = g.Next(bucket) {
			// Skip rows that cannot match (another room, or a bucket not on this walk).
			for have && (bytes.Compare(next.room[:], room[:]) < 0 || (next.room == room && next.bucket.Before(bucket))) {
				if err := advance(); err != nil {
					return err
				}
			}
			s := statRow{ReportRow: presencestats.ReportRow{RoomID: room, Bucket: bucket, Granularity: g}}
			matched := have && next.room == room && next.bucket.Equal(bucket)
			if matched {
				s.TotalConnections, s.UniqueUsers = next.connections, next.uniqueUsers
				s.sessionsEnded, s.sessionSecondsSum = next.ended, next.seconds
			}
			end := g.Next(bucket)
			if end.After(now) {
				end = now
			}
			if length := end.Sub(bucket).Seconds(); length > 0 { // a bucket not begun yet stays at zero
				integral := float64(online) * length
				s.PeakOnline = online
				if matched {
					s.PeakOnline = max(s.PeakOnline, next.peakIn)
					integral += next.moment
				}
				s.AvgOnline = math.Max(integral/length, 0)
			}
			if s.sessionsEnded > 0 {
				s.AvgSessionDuration = s.sessionSecondsSum / float64(s.sessionsEnded)
			}
			if matched {
				online = next.onlineEnd
				if err := advance(); err != nil {
					return err
				}
			}
			if err := fn(s); err != nil {
				return err
			}
		}
	}
	return nil
}

// onlineAt returns each room's online count at s, the start of a bucket of g, when it is not 0
// (report_online_start.sql: the past tiled from fine to coarse levels, each tile bounded).
func (r *Reports) onlineAt(ctx context.Context, ids []pgtype.UUID, g presencestats.Granularity, s time.Time) (map[uuid.UUID]int64, error) {
	day, month, year := presencestats.Day.Truncate(s, r.loc), presencestats.Month.Truncate(s, r.loc), presencestats.Year.Truncate(s, r.loc)
	hourLo, hourHi, dayLo, dayHi, monthLo, monthHi := day, s, month, day, year, month
	switch g {
	case presencestats.Day, presencestats.Week:
		hourLo, hourHi, dayHi = s, s, s
	case presencestats.Month:
		hourLo, hourHi, dayLo, dayHi, monthHi = s, s, s, s, s
	case presencestats.Year:
		hourLo, hourHi, dayLo, dayHi, monthLo, monthHi = s, s, s, s, s, s
	}
	rows, err := r.pool.Query(ctx, r.onlineStart, ids, hourLo, hourHi, dayLo, dayHi, monthLo, monthHi, year)
	if err != nil {
		return nil, pgError(err, "query report online counts")
	}
	defer rows.Close()
	out := map[uuid.UUID]int64{}
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

// bucketTotal is the selected rooms together in one bucket.
type bucketTotal struct {
	bucket            time.Time
	peak              int64
	avg               float64
	connections       int64
	sessionsEnded     int64
	sessionSecondsSum float64
}

// sums calls fn for every bucket of g in [Truncate(start), end), in order, with the rooms'
// totals: report_bucket_sums.sql returns the buckets with aggregate rows as changes against the
// carried total; the quiet buckets in between keep it.
func (r *Reports) sums(ctx context.Context, rooms []uuid.UUID, g presencestats.Granularity, start, end time.Time, fn func(bucketTotal)) error {
	ids := uuidArray(rooms)
	first := g.Truncate(start, r.loc)
	starts, err := r.onlineAt(ctx, ids, g, first)
	if err != nil {
		return err
	}
	online := make([]int64, len(rooms)) // parallel to rooms
	var total int64                     // the rooms' summed count at the current bucket's start
	for i, id := range rooms {
		online[i] = starts[id]
		total += starts[id]
	}
	now := r.Now()
	rows, err := r.pool.Query(ctx, r.bucketSums[g], ids, first, online, end, now, bucketWidth[g], r.loc.String())
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

// Totals returns the selected rooms together, one row per bucket of q in order, as TotalsRow
// documents: peaks and averages summed over rooms, unique users counted once across rooms,
// session duration weighted by the sessions that ended in each room.
// Errors: as Stats.
func (r *Reports) Totals(ctx context.Context, q presencestats.ReportQuery) ([]presencestats.TotalsRow, error) {
	if err := r.validate(q); err != nil {
		return nil, err
	}
	everyRoom := len(q.RoomIDs) == 0
	rooms, err := r.roomsOf(ctx, q)
	if err != nil {
		return nil, err
	}
	rooms = slices.Compact(slices.SortedFunc(slices.Values(rooms), func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) }))
	totals := make([]presencestats.TotalsRow, 0, r.CountBuckets(q))
	index := map[int64]int{}
	err = r.sums(ctx, rooms, q.Granularity, q.Start, q.End, func(t bucketTotal) {
		row := presencestats.TotalsRow{Bucket: t.bucket, PeakOnline: t.peak, AvgOnline: t.avg, TotalConnections: t.connections}
		if t.sessionsEnded > 0 {
			row.AvgSessionDuration = t.sessionSecondsSum / float64(t.sessionsEnded)
		}
		index[t.bucket.Unix()] = len(totals)
		totals = append(totals, row)
	})
	if err != nil {
		return nil, err
	}
	// Every room: the counts kept by the all-users aggregate; a selection: count its user rows.
	first := q.Granularity.Truncate(q.Start, r.loc)
	var rows pgx.Rows
	if everyRoom {
		rows, err = r.pool.Query(ctx, r.allUsers[q.Granularity], first, q.End)
	} else {
		rows, err = r.pool.Query(ctx, r.totalUsers[q.Granularity], uuidArray(rooms), first, q.End)
	}
	if err != nil {
		return nil, pgError(err, "query report unique users")
	}
	defer rows.Close()
	for rows.Next() {
		var b time.Time
		var n int64
		if err := rows.Scan(&b, &n); err != nil {
			return nil, pgError(err, "read report unique users")
		}
		if i, ok := index[b.Unix()]; ok {
			totals[i].UniqueUsers = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, pgError(err, "read report unique users")
	}
	return totals, nil
}

// PeakHours returns presence by hour of day (0-23 in the report zone) over q's range for the
// selected rooms together, as PeakHour documents, from the hourly aggregates whatever
// q.Granularity is (so at most the last 6 months of a range have data). Hours of day that the
// range does not cover are left out.
// Errors: EINVALID for End not after Start, otherwise as Stats.
func (r *Reports) PeakHours(ctx context.Context, q presencestats.ReportQuery) ([]presencestats.PeakHour, error) {
	q.Granularity = presencestats.Hour
	if err := r.validate(q); err != nil {
		return nil, err
	}
	rooms, err := r.roomsOf(ctx, q)
	if err != nil {
		return nil, err
	}
	rooms = slices.Compact(slices.SortedFunc(slices.Values(rooms), func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) }))
	var avg [24]float64
	var peak [24]int64
	var count [24]int
	err = r.sums(ctx, rooms, presencestats.Hour, q.Start, q.End, func(t bucketTotal) {
		hour := t.bucket.In(r.loc).Hour()
		count[hour]++
		avg[hour] += t.avg
		peak[hour] = max(peak[hour], t.peak)
	})
	if err != nil {
		return nil, err
	}
	out := make([]presencestats.PeakHour, 0, 24)
	for hour := range 24 {
		if count[hour] == 0 {
			continue
		}
		out = append(out, presencestats.PeakHour{Hour: hour, AvgOnline: avg[hour] / float64(count[hour]), PeakOnline: peak[hour]})
	}
	return out, nil
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
