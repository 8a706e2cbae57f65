package storage

import (
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/google/uuid"
)

// packHour packs one hour as report_pack_hour (migration 9) does.
func packHour(b []byte, bucket time.Time, peak, end, delta int64, moment float64, conns, ended int64, seconds float64) []byte {
	for _, v := range []uint64{uint64(bucket.Sub(pgEpoch).Microseconds()), uint64(peak), uint64(end), uint64(delta),
		math.Float64bits(moment), uint64(conns), uint64(ended), math.Float64bits(seconds)} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

// packUsers packs one hour's users as report_pack_users does.
func packUsers(b []byte, bucket time.Time, n int64) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(bucket.Sub(pgEpoch).Microseconds()))
	return binary.BigEndian.AppendUint64(b, uint64(n))
}

// TestHoursPartAppend: packed hours decode to the room's arrays, each hour gets the unique users of
// its own hour (0 where the users' rows have none, users of hours without a room row are skipped),
// and a second part appends after the first.
func TestHoursPartAppend(t *testing.T) {
	room := uuid.New()
	h0 := time.Date(2026, 11, 20, 3, 0, 0, 0, time.UTC)
	h1, h2, h3 := h0.Add(time.Hour), h0.Add(2*time.Hour), h0.Add(3*time.Hour)
	day := hoursPart{room: room,
		hours: packHour(packHour(nil, h0, 3, 2, 2, 1.5e9, 4, 2, 610.5), h2, 5, -1, -3, -2.25, 0, 7, 0),
		users: packUsers(packUsers(packUsers(nil, h0, 4), h1, 9), h2, 6)}
	today := hoursPart{room: room, hours: packHour(nil, h3, 1, 1, 1, 0.5, 1, 0, 0)}
	var r roomRows
	if err := day.appendTo(&r); err != nil {
		t.Fatal(err)
	}
	if err := today.appendTo(&r); err != nil {
		t.Fatal(err)
	}
	if err := r.check(); err != nil {
		t.Fatal(err)
	}
	want := roomRows{room: room, buckets: []time.Time{h0, h2, h3},
		peakIn: []int64{3, 5, 1}, onlineEnd: []int64{2, -1, 1}, netDelta: []int64{2, -3, 1}, moment: []float64{1.5e9, -2.25, 0.5},
		connections: []int64{4, 0, 1}, ended: []int64{2, 7, 0}, seconds: []float64{610.5, 0, 0}, uniques: []int64{4, 6, 0}}
	if r.room != want.room || len(r.buckets) != 3 {
		t.Fatalf("got %+v, want %+v", r, want)
	}
	for i := range want.buckets {
		if !r.buckets[i].Equal(want.buckets[i]) || r.peakIn[i] != want.peakIn[i] || r.onlineEnd[i] != want.onlineEnd[i] ||
			r.netDelta[i] != want.netDelta[i] || r.moment[i] != want.moment[i] || r.connections[i] != want.connections[i] ||
			r.ended[i] != want.ended[i] || r.seconds[i] != want.seconds[i] || r.uniques[i] != want.uniques[i] {
			t.Fatalf("hour %d: got %+v, want %+v", i, r, want)
		}
	}
}

func TestHoursPartAppendRefusesTruncatedBytes(t *testing.T) {
	h := time.Date(2026, 11, 20, 3, 0, 0, 0, time.UTC)
	for _, p := range []hoursPart{
		{hours: packHour(nil, h, 1, 1, 1, 0, 1, 0, 0)[:63]},
		{hours: packHour(nil, h, 1, 1, 1, 0, 1, 0, 0), users: packUsers(nil, h, 1)[:15]},
	} {
		var r roomRows
		if err := p.appendTo(&r); err == nil {
			t.Fatalf("%d and %d bytes: no error", len(p.hours), len(p.users))
		}
	}
}
