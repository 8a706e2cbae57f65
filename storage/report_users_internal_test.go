package storage

import (
	"testing"
	"time"

	"presencestats"
)

// The tiles that count the unique users of a month or year in progress cover the report buckets
// with no gap, each in its source's materialized part, each inside one report bucket; a year's
// finished quarters are quarterly rows, and its weekly tile starts at the week of the month's
// first day when that week is in the same year.
func TestRecentTiles(t *testing.T) {
	utc := time.UTC
	d := func(y int, m time.Month, day int) time.Time { return time.Date(y, m, day, 0, 0, 0, 0, utc) }
	p := func(t time.Time) *time.Time { return &t }
	for _, tc := range []struct {
		name                                   string
		g                                      presencestats.Granularity
		now, from, hi                          time.Time
		weeklyLast, monthlyLast, quarterlyLast *time.Time
		want                                   [7]time.Time // from, a, b, c, hi, w, q
	}{
		{"year, Monday 7 December: quarters, then months, then November's last week for 1-6 December", presencestats.Year,
			d(2026, 12, 7).Add(10 * time.Hour), d(2026, 1, 1), d(2027, 1, 1), p(d(2026, 11, 30)), p(d(2026, 11, 1)), p(d(2026, 7, 1)),
			[7]time.Time{d(2026, 1, 1), d(2026, 12, 1), d(2026, 12, 1), d(2026, 12, 7), d(2027, 1, 1), d(2026, 11, 30), d(2026, 10, 1)}},
		{"year, only the first quarter materialized: months from April", presencestats.Year,
			d(2026, 12, 7).Add(10 * time.Hour), d(2026, 1, 1), d(2027, 1, 1), p(d(2026, 11, 30)), p(d(2026, 11, 1)), p(d(2026, 1, 1)),
			[7]time.Time{d(2026, 1, 1), d(2026, 12, 1), d(2026, 12, 1), d(2026, 12, 7), d(2027, 1, 1), d(2026, 11, 30), d(2026, 4, 1)}},
		{"month, same day: the days before the month's first whole week, no quarters", presencestats.Month,
			d(2026, 12, 7).Add(10 * time.Hour), d(2026, 12, 1), d(2027, 1, 1), p(d(2026, 11, 30)), p(d(2026, 11, 1)), nil,
			[7]time.Time{d(2026, 12, 1), d(2026, 12, 1), d(2026, 12, 7), d(2026, 12, 7), d(2027, 1, 1), d(2026, 12, 7), d(2026, 12, 1)}},
		{"year, January: the week of the 1st began last year, so days; last year's quarters are not this year's", presencestats.Year,
			d(2026, 1, 14), d(2026, 1, 1), d(2027, 1, 1), p(d(2026, 1, 5)), p(d(2025, 12, 1)), p(d(2025, 10, 1)),
			[7]time.Time{d(2026, 1, 1), d(2026, 1, 1), d(2026, 1, 5), d(2026, 1, 12), d(2027, 1, 1), d(2026, 1, 5), d(2026, 1, 1)}},
		{"year, November not materialized: its days up to the week, then weeks", presencestats.Year,
			d(2026, 12, 17), d(2026, 1, 1), d(2027, 1, 1), p(d(2026, 12, 7)), p(d(2026, 10, 1)), p(d(2026, 7, 1)),
			[7]time.Time{d(2026, 1, 1), d(2026, 11, 1), d(2026, 11, 30), d(2026, 12, 14), d(2027, 1, 1), d(2026, 11, 30), d(2026, 10, 1)}},
		{"year, no weekly or quarterly rows materialized: months, then days from the week on", presencestats.Year,
			d(2026, 12, 9), d(2026, 1, 1), d(2027, 1, 1), nil, p(d(2026, 11, 1)), nil,
			[7]time.Time{d(2026, 1, 1), d(2026, 12, 1), d(2026, 12, 1), d(2026, 11, 30), d(2027, 1, 1), d(2026, 11, 30), d(2026, 1, 1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReports(nil, utc)
			r.Now = func() time.Time { return tc.now }
			got := r.recentTiles(tc.g, tc.from, tc.hi, tc.weeklyLast, tc.monthlyLast, tc.quarterlyLast)
			if got != tc.want {
				t.Fatalf("tiles:\n got  %v\n want %v", got, tc.want)
			}
			// No gap: [from, b) by the first three tiles, then [w, c) and [c, hi), w <= b.
			if got[6].Before(got[0]) || got[1].Before(got[6]) || got[5].After(got[2]) || got[3].Before(got[5]) || got[2].Before(got[1]) || got[4].Before(got[3]) {
				t.Fatalf("tiles leave a gap: %v", got)
			}
		})
	}
}
