package storage

import (
	"bytes"
	"context"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"presencestats"
)

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
		rows, err = r.pool.Query(ctx, r.statsHours.of(b.sel), b.sel.param(), q.End, dayFirst, daysEnd, maxTime(first, daysEnd))
	} else {
		rows, err = r.pool.Query(ctx, r.stats[g].of(b.sel), b.sel.param(), first, q.End)
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
