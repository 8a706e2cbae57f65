package presencestats_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"presencestats"
)

func TestParseGranularity(t *testing.T) {
	for in, want := range map[string]presencestats.Granularity{
		"hour": presencestats.Hour, "DAY": presencestats.Day, " Week ": presencestats.Week,
		"Month": presencestats.Month, "year": presencestats.Year,
	} {
		got, err := presencestats.ParseGranularity(in)
		if err != nil || got != want {
			t.Errorf("ParseGranularity(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "minute", "hours", "1h"} {
		if _, err := presencestats.ParseGranularity(in); presencestats.ErrorCode(err) != presencestats.EINVALID {
			t.Errorf("ParseGranularity(%q): %v, want EINVALID", in, err)
		}
	}
}

func TestParseMetric(t *testing.T) {
	if m, err := presencestats.ParseMetric("Peak_Hours"); err != nil || m != presencestats.MetricPeakHours {
		t.Fatalf("ParseMetric: %q %v", m, err)
	}
	if _, err := presencestats.ParseMetric("bytes"); presencestats.ErrorCode(err) != presencestats.EINVALID {
		t.Fatalf("unknown metric: %v, want EINVALID", err)
	}
}

func TestGranularityTruncateAndNext(t *testing.T) {
	kolkata, err := time.LoadLocation("Asia/Kolkata") // +05:30: hours do not start at UTC hours
	if err != nil {
		t.Fatal(err)
	}
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	// Thursday 2026-01-01 00:10 UTC = 05:40 in Kolkata, 01:10 in Paris.
	at := time.Date(2026, 1, 1, 0, 10, 0, 0, time.UTC)
	for _, tc := range []struct {
		g         presencestats.Granularity
		loc       *time.Location
		want, nxt string
	}{
		{presencestats.Hour, time.UTC, "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"},
		{presencestats.Hour, kolkata, "2026-01-01T05:00:00+05:30", "2026-01-01T06:00:00+05:30"},
		{presencestats.Day, kolkata, "2026-01-01T00:00:00+05:30", "2026-01-02T00:00:00+05:30"},
		{presencestats.Week, time.UTC, "2025-12-29T00:00:00Z", "2026-01-05T00:00:00Z"}, // Monday
		{presencestats.Month, paris, "2026-01-01T00:00:00+01:00", "2026-02-01T00:00:00+01:00"},
		{presencestats.Year, time.UTC, "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"},
	} {
		got := tc.g.Truncate(at, tc.loc)
		if got.Format(time.RFC3339) != tc.want {
			t.Errorf("%s in %s: Truncate = %s, want %s", tc.g, tc.loc, got.Format(time.RFC3339), tc.want)
		}
		if n := tc.g.Next(got); n.Format(time.RFC3339) != tc.nxt {
			t.Errorf("%s in %s: Next = %s, want %s", tc.g, tc.loc, n.Format(time.RFC3339), tc.nxt)
		}
	}
	// A day across the spring-forward change in Paris is 23 hours long.
	day := presencestats.Day.Truncate(time.Date(2026, 3, 29, 12, 0, 0, 0, paris), paris)
	if got, want := presencestats.Day.Next(day).Sub(day), 23*time.Hour; got != want {
		t.Errorf("DST day length %v, want %v", got, want)
	}
	// Sunday belongs to the week that started the Monday before.
	sunday := time.Date(2026, 1, 4, 23, 0, 0, 0, time.UTC)
	if got := presencestats.Week.Truncate(sunday, time.UTC); got.Weekday() != time.Monday || got.Day() != 29 {
		t.Errorf("week of Sunday Jan 4: %s", got)
	}
}

func TestPresenceEventValidate(t *testing.T) {
	valid := presencestats.PresenceEvent{
		EventID: uuid.New(), TS: time.Now(), RoomID: uuid.New(), UserID: uuid.New(), SessionID: uuid.New(),
		Type: presencestats.EventConnected, OnlineAfter: 1, OnlineDelta: 1,
	}
	if err := valid.Validate(); err != nil {
		t.Fatalf("valid event: %v", err)
	}
	for name, mutate := range map[string]func(e *presencestats.PresenceEvent){
		"zero event id":     func(e *presencestats.PresenceEvent) { e.EventID = uuid.Nil },
		"zero room":         func(e *presencestats.PresenceEvent) { e.RoomID = uuid.Nil },
		"zero user":         func(e *presencestats.PresenceEvent) { e.UserID = uuid.Nil },
		"zero session":      func(e *presencestats.PresenceEvent) { e.SessionID = uuid.Nil },
		"unknown type":      func(e *presencestats.PresenceEvent) { e.Type = "teleported" },
		"no time":           func(e *presencestats.PresenceEvent) { e.TS = time.Time{} },
		"negative online":   func(e *presencestats.PresenceEvent) { e.OnlineAfter = -1 },
		"delta 2":           func(e *presencestats.PresenceEvent) { e.OnlineDelta = 2 },
		"negative duration": func(e *presencestats.PresenceEvent) { e.SessionSeconds = -1 },
	} {
		e := valid
		mutate(&e)
		if got := presencestats.ErrorCode(e.Validate()); got != presencestats.EINVALID {
			t.Errorf("%s: code %q, want %q", name, got, presencestats.EINVALID)
		}
	}
}

func TestGranularityCountBuckets(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		g          presencestats.Granularity
		start, end string
		limit      int
		want       int
	}{
		{presencestats.Hour, "2026-01-01T00:30:00Z", "2026-01-01T03:00:00Z", 0, 3},   // 00, 01, 02
		{presencestats.Hour, "2026-01-01T00:00:00Z", "2026-01-01T03:00:01Z", 0, 4},   // 03 starts inside
		{presencestats.Hour, "0001-01-01T00:00:00Z", "9999-01-01T00:00:00Z", 10, 10}, // bounded
		{presencestats.Day, "2026-01-01T12:00:00Z", "2026-01-08T00:00:00Z", 0, 7},
		{presencestats.Day, "0001-01-01T00:00:00Z", "9999-01-01T00:00:00Z", 100, 100}, // stops early
		{presencestats.Month, "2026-01-31T00:00:00Z", "2026-03-01T00:00:00Z", 0, 2},
		{presencestats.Year, "2026-06-01T00:00:00Z", "2026-06-02T00:00:00Z", 0, 1},
		{presencestats.Week, "2026-01-05T00:00:00Z", "2026-01-05T00:00:00Z", 0, 0}, // empty range
	} {
		if got := tc.g.CountBuckets(at(tc.start), at(tc.end), time.UTC, tc.limit); got != tc.want {
			t.Errorf("%s %s..%s limit %d: %d buckets, want %d", tc.g, tc.start, tc.end, tc.limit, got, tc.want)
		}
	}
}
