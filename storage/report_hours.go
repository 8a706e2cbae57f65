package storage

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/google/uuid"

	"presencestats"
)

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
