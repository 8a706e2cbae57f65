package storage_test

import (
	"context"
	"math"
	"regexp"
	"testing"
	"time"

	"github.com/google/uuid"

	"presencestats"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

// TestReportMaterializedTables checks what reports read from the tables TimescaleDB materializes
// aggregates into, below their last materialized bucket, with the aggregates for the rest:
//   - the unique users of month and year reports while the month and year are in progress, which
//     report_recent_users.sql counts from tiles of monthly, daily and weekly per-user rows: visits
//     on the month's first day (a Sunday, before its first whole week), in each of its whole weeks,
//     in the week in progress and today, in the month before, and users in both rooms;
//   - the online count at a report's start (report_online_start.sql), for a room whose only event
//     is a connection the year before and one whose only event is a connection the month before.
//
// Neither may depend on how far the aggregates have been materialized: none yet, the per-user
// weekly and monthly ones partly, the room monthly one but not the yearly one, and everything up
// to this week.
func TestReportMaterializedTables(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.NewDatabase(t)
	day := func(d, h int) time.Time { return time.Date(2026, 3, d, h, 0, 0, 0, time.UTC) }
	now := day(18, 12) // a Wednesday; March 2026 starts on a Sunday, its whole weeks on the 2nd and 9th
	roomA, roomB := uuid.New(), uuid.New()
	roomLastYear, roomLastMonth := uuid.New(), uuid.New() // one user connects and stays
	users := make([]uuid.UUID, 10)
	for i := range users {
		users[i] = uuid.New()
	}
	visits := []struct {
		room uuid.UUID
		user int
		at   time.Time
		stay bool // connected and never left
	}{
		{roomA, 1, time.Date(2026, 2, 10, 9, 0, 0, 0, time.UTC), false}, // the month before only
		{roomA, 2, day(1, 22), false},                                   // before the first whole week
		{roomA, 3, day(4, 10), false}, {roomB, 3, day(4, 11), false},    // first whole week, both rooms
		{roomB, 4, day(12, 8), false},                                                                    // second whole week
		{roomA, 5, day(17, 7), false},                                                                    // the week in progress
		{roomA, 6, time.Date(2026, 2, 20, 15, 0, 0, 0, time.UTC), false}, {roomA, 6, day(10, 15), false}, // both months
		{roomB, 7, day(18, 10), false}, // today
		{roomB, 2, day(2, 0), false},   // the first whole week's first hour
		{roomLastYear, 8, time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC), true},
		{roomLastMonth, 9, time.Date(2026, 2, 20, 10, 0, 0, 0, time.UTC), true},
	}
	// The expected counts, straight from the visits: per room and month/year, and across rooms.
	type key struct {
		room   uuid.UUID // uuid.Nil: every room; roomsAB: rooms A and B
		bucket time.Time
	}
	roomsAB := uuid.New()
	want := map[presencestats.Granularity]map[key]int64{}
	for _, g := range []presencestats.Granularity{presencestats.Month, presencestats.Year} {
		seen := map[key]map[int]bool{}
		for _, v := range visits {
			b := g.Truncate(v.at, time.UTC)
			keys := []key{{v.room, b}, {uuid.Nil, b}}
			if v.room == roomA || v.room == roomB {
				keys = append(keys, key{roomsAB, b})
			}
			for _, k := range keys {
				if seen[k] == nil {
					seen[k] = map[int]bool{}
				}
				seen[k][v.user] = true
			}
		}
		want[g] = map[key]int64{}
		for k, s := range seen {
			want[g][k] = int64(len(s))
		}
	}
	if n := want[presencestats.Month][key{uuid.Nil, day(1, 0)}]; n != 6 {
		t.Fatalf("scenario: %d users in March, want 6", n)
	}
	for i, v := range visits {
		insert := `
			INSERT INTO presence_events (event_id, ts, room_id, user_id, session_id, event_type, online_after, online_delta, session_seconds, reason)
			VALUES (gen_random_uuid(), $1, $2, $3, $4, 'connected', 1, 1, NULL, NULL),
			       (gen_random_uuid(), $1::timestamptz + interval '10 minutes', $2, $3, $4, 'disconnected', 0, -1, 600, 'closed')`
		if v.stay {
			insert = `
			INSERT INTO presence_events (event_id, ts, room_id, user_id, session_id, event_type, online_after, online_delta, session_seconds, reason)
			VALUES (gen_random_uuid(), $1, $2, $3, $4, 'connected', 1, 1, NULL, NULL)`
		}
		if _, err := pool.Exec(ctx, insert, v.at.Add(time.Duration(i)*time.Second), v.room, users[v.user], uuid.New()); err != nil {
			t.Fatal(err)
		}
	}

	reports := storage.NewReports(pool, time.UTC)
	reports.Now = func() time.Time { return now }
	check := func(t *testing.T) {
		for _, g := range []presencestats.Granularity{presencestats.Month, presencestats.Year} {
			for _, rooms := range [][]uuid.UUID{nil, {roomA}, {roomA, roomB}} {
				q := presencestats.ReportQuery{RoomIDs: rooms, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), End: now,
					Granularity: g, Metrics: presencestats.Metrics}
				selected := map[uuid.UUID]bool{}
				for _, r := range rooms {
					selected[r] = true
				}
				totals, _, err := reports.Report(ctx, q, func(row presencestats.ReportRow) error {
					if w := want[g][key{row.RoomID, row.Bucket}]; row.UniqueUsers != w {
						t.Errorf("%s, rooms %v: room %s at %s: %d unique users, want %d", g, rooms, row.RoomID, row.Bucket.Format(time.DateOnly), row.UniqueUsers, w)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				for _, row := range totals {
					var w int64
					switch len(rooms) {
					case 0: // every room
						w = want[g][key{uuid.Nil, row.Bucket}]
					case 1: // room A alone
						w = want[g][key{roomA, row.Bucket}]
					case 2: // rooms A and B
						w = want[g][key{roomsAB, row.Bucket}]
					}
					if row.UniqueUsers != w {
						t.Errorf("%s, rooms %v: total at %s: %d unique users, want %d", g, rooms, row.Bucket.Format(time.DateOnly), row.UniqueUsers, w)
					}
				}
			}
		}
		// The rooms whose one user stays: online 1 in every bucket after the connection (a bucket
		// of the year 2026 began before the one in February), from their counts at the start.
		for _, g := range presencestats.Granularities {
			for _, rooms := range [][]uuid.UUID{nil, {roomLastYear, roomLastMonth}} {
				q := presencestats.ReportQuery{RoomIDs: rooms, Start: day(10, 5), End: now, Granularity: g, Metrics: presencestats.Metrics}
				if g == presencestats.Hour {
					q.Start = day(17, 5)
				}
				err := reports.Stats(ctx, q, func(row presencestats.ReportRow) error {
					stayed := row.RoomID == roomLastYear || (row.RoomID == roomLastMonth && g != presencestats.Year)
					if stayed && (row.PeakOnline != 1 || math.Abs(row.AvgOnline-1) > 1e-9) {
						t.Errorf("%s, rooms %v: room %s at %s: peak %d, average %v; want 1 and 1", g, rooms, row.RoomID, row.Bucket, row.PeakOnline, row.AvgOnline)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	t.Run("nothing materialized", check)
	refreshAggregates(ctx, t, pool, day(9, 0), regexp.MustCompile(`^presence_user_(weekly|monthly)$`).MatchString)
	t.Run("February and the first whole week materialized", check)
	refreshAggregates(ctx, t, pool, day(9, 0), regexp.MustCompile(`^presence_room_monthly$`).MatchString)
	t.Run("room months materialized, not years", check)
	refreshAggregates(ctx, t, pool, day(16, 0), nil)
	t.Run("everything up to this week materialized", check)
}

// TestReportYearTiles checks the unique users of a year in progress in December, when a report
// counts them from quarterly rows (migration 10), monthly rows, the weekly row of the week the
// month's first day is in (Monday 30 November, which overlaps November) and daily rows: a user in
// every quarter, one in the first week of December only, one on 1 December and in that week's
// November days, one today, one last year only; two rooms sharing users. The counts may not depend
// on how far the per-user aggregates are materialized.
func TestReportYearTiles(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.NewDatabase(t)
	at := func(m time.Month, d, h int) time.Time { return time.Date(2026, m, d, h, 0, 0, 0, time.UTC) }
	now := at(12, 7, 10) // a Monday
	roomA, roomB := uuid.New(), uuid.New()
	users := make([]uuid.UUID, 8)
	for i := range users {
		users[i] = uuid.New()
	}
	visits := []struct {
		room uuid.UUID
		user int
		at   time.Time
	}{
		{roomA, 0, at(2, 3, 9)}, {roomA, 0, at(5, 4, 9)}, {roomA, 0, at(8, 5, 9)}, {roomA, 0, at(10, 6, 9)}, // every quarter
		{roomB, 0, at(11, 7, 9)},
		{roomA, 1, at(3, 31, 23)}, {roomB, 1, at(7, 1, 0)}, // the last hour of a quarter, the first of the next
		{roomA, 2, at(12, 1, 8)},                            // 1 December only (the week of 30 November)
		{roomB, 3, at(11, 30, 8)}, {roomB, 3, at(12, 2, 8)}, // that week, in both months
		{roomA, 4, at(12, 7, 8)}, {roomB, 4, at(12, 7, 9)}, // today
		{roomA, 5, time.Date(2025, 12, 20, 9, 0, 0, 0, time.UTC)}, // last year only
		{roomB, 6, at(11, 29, 23)},                                // the Sunday before that week
		{roomA, 7, at(9, 30, 12)},                                 // the third quarter's last day
	}
	type key struct {
		room   uuid.UUID // uuid.Nil: every room; roomsAB: both
		bucket time.Time
	}
	roomsAB := uuid.New()
	seen := map[key]map[int]bool{}
	for _, v := range visits {
		b := presencestats.Year.Truncate(v.at, time.UTC)
		for _, k := range []key{{v.room, b}, {uuid.Nil, b}, {roomsAB, b}} {
			if seen[k] == nil {
				seen[k] = map[int]bool{}
			}
			seen[k][v.user] = true
		}
	}
	if n := len(seen[key{uuid.Nil, at(1, 1, 0)}]); n != 7 {
		t.Fatalf("scenario: %d users in 2026, want 7", n)
	}
	for i, v := range visits {
		if _, err := pool.Exec(ctx, `
			INSERT INTO presence_events (event_id, ts, room_id, user_id, session_id, event_type, online_after, online_delta, session_seconds, reason)
			VALUES (gen_random_uuid(), $1, $2, $3, $4, 'connected', 1, 1, NULL, NULL),
			       (gen_random_uuid(), $1::timestamptz + interval '10 minutes', $2, $3, $4, 'disconnected', 0, -1, 600, 'closed')`,
			v.at.Add(time.Duration(i)*time.Second), v.room, users[v.user], uuid.New()); err != nil {
			t.Fatal(err)
		}
	}
	reports := storage.NewReports(pool, time.UTC)
	reports.Now = func() time.Time { return now }
	check := func(t *testing.T) {
		for _, rooms := range [][]uuid.UUID{nil, {roomA}, {roomA, roomB}} {
			q := presencestats.ReportQuery{RoomIDs: rooms, Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), End: now,
				Granularity: presencestats.Year, Metrics: presencestats.Metrics}
			totals, _, err := reports.Report(ctx, q, func(row presencestats.ReportRow) error {
				if w := int64(len(seen[key{row.RoomID, row.Bucket}])); row.UniqueUsers != w {
					t.Errorf("rooms %v: room %s in %d: %d unique users, want %d", rooms, row.RoomID, row.Bucket.Year(), row.UniqueUsers, w)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			total := map[int]uuid.UUID{0: uuid.Nil, 1: roomA, 2: roomsAB}[len(rooms)]
			for _, row := range totals {
				if w := int64(len(seen[key{total, row.Bucket}])); row.UniqueUsers != w {
					t.Errorf("rooms %v: total in %d: %d unique users, want %d", rooms, row.Bucket.Year(), row.UniqueUsers, w)
				}
			}
		}
	}
	t.Run("nothing materialized", check)
	refreshAggregates(ctx, t, pool, at(11, 30, 0), regexp.MustCompile(`^presence_user_(weekly|monthly|quarterly)$`).MatchString)
	t.Run("quarters to September, months to October, weeks to 23 November", check)
	refreshAggregates(ctx, t, pool, at(12, 7, 0), nil)
	t.Run("everything up to today materialized", check)
}
