package storage

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"presencestats"
)

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
