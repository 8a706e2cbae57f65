package storage_test

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"presencestats"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

// The oracle: a seeded random scenario is written through the Collector; every metric at every
// granularity read through Reports must equal a pure-Go recomputation from the sessions (the
// online count is derived from each user's open sessions, not from online_after): exact for
// counts, peaks and unique users, within 1% for averages.

type simSession struct {
	room, user, id uuid.UUID
	start, end     time.Time // end is the disconnect; for a session still open, the scenario's now
	open           bool
}

type scenario struct {
	loc        *time.Location
	start, now time.Time
	rooms      []uuid.UUID // the rooms the reports are checked on
	crowd      []uuid.UUID // the other rooms: reports on rooms never count their rows
	sessions   []simSession
	events     []presencestats.PresenceEvent // in time order, with online_after/online_delta
}

// simulate builds sessions crossing hour, day, week (Monday 2025-12-29), month and year
// boundaries, with several tabs per user, timeouts, users in two rooms at once, a room quiet for
// days, and sessions still open at now; then a crowd of other rooms, many more than those, with a
// few sessions each, some of their users also in the first rooms, so that a report on the first
// rooms (a small minority) that let another room's rows in is caught; then the events the live
// service would record: connected, a heartbeat every 5 minutes, disconnected.
func simulate(rng *rand.Rand, loc *time.Location) scenario {
	sc := scenario{
		loc:   loc,
		start: time.Date(2025, 12, 27, 0, 0, 0, 0, loc),
		now:   time.Date(2026, 1, 2, 6, 0, 0, 0, loc),
	}
	for range 5 {
		sc.rooms = append(sc.rooms, uuid.New())
	}
	span := sc.now.Sub(sc.start)
	used := map[uuid.UUID]map[int64]bool{} // room -> timestamps (µs) taken: one event per instant
	for _, r := range sc.rooms {
		used[r] = map[int64]bool{}
	}
	stamp := func(room uuid.UUID, t time.Time) time.Time {
		t = t.Add(time.Duration(rng.IntN(1_000_000)) * time.Microsecond).Truncate(time.Microsecond)
		for used[room][t.UnixMicro()] {
			t = t.Add(time.Microsecond)
		}
		used[room][t.UnixMicro()] = true
		return t
	}
	addSession := func(room, user uuid.UUID, s time.Time, d time.Duration) {
		ss := simSession{room: room, user: user, id: uuid.New(), start: stamp(room, s)}
		end := ss.start.Add(max(d, 2*time.Minute))
		if end.Before(sc.now) {
			ss.end = stamp(room, end)
		} else {
			ss.end, ss.open = sc.now, true
		}
		sc.sessions = append(sc.sessions, ss)
	}
	for range 200 {
		user := uuid.New()
		rooms := []uuid.UUID{sc.rooms[rng.IntN(len(sc.rooms))]}
		if rng.IntN(3) == 0 {
			rooms = append(rooms, sc.rooms[rng.IntN(len(sc.rooms))])
		}
		for _, room := range rooms {
			for range 1 + rng.IntN(3) {
				var visit time.Time
				if room == sc.rooms[4] { // quiet room: active on the first day and the last hours only
					if rng.IntN(2) == 0 {
						visit = sc.start.Add(time.Duration(rng.Int64N(int64(20 * time.Hour))))
					} else {
						visit = sc.now.Add(-time.Duration(rng.Int64N(int64(8 * time.Hour))))
					}
				} else {
					visit = sc.start.Add(time.Duration(rng.Int64N(int64(span))))
				}
				// Log-uniform from 10 minutes to 30 hours: many short sessions, some across days.
				d := time.Duration(float64(10*time.Minute) * math.Pow(180, rng.Float64()))
				for tab := range 1 + rng.IntN(3) {
					s := visit
					td := d
					if tab > 0 {
						s = visit.Add(time.Duration(rng.Int64N(int64(d))))
						td = time.Duration(float64(d) * (0.2 + rng.Float64()))
					}
					if !s.Before(sc.now.Add(-time.Minute)) {
						continue
					}
					addSession(room, user, s, td)
				}
			}
		}
	}
	// The crowd: 40 rooms of 3 sessions each, one user in three from the first rooms.
	var users []uuid.UUID
	for _, s := range sc.sessions {
		users = append(users, s.user)
	}
	for range 40 {
		room := uuid.New()
		sc.crowd = append(sc.crowd, room)
		used[room] = map[int64]bool{}
		for range 3 {
			user := uuid.New()
			if rng.IntN(3) == 0 {
				user = users[rng.IntN(len(users))]
			}
			visit := sc.start.Add(time.Duration(rng.Int64N(int64(span))))
			if visit.Before(sc.now.Add(-time.Minute)) {
				addSession(room, user, visit, time.Duration(float64(10*time.Minute)*math.Pow(180, rng.Float64())))
			}
		}
	}
	// Events of every session, then online_after/online_delta by replaying them in time order.
	for _, s := range sc.sessions {
		sc.events = append(sc.events, presencestats.PresenceEvent{
			EventID: uuid.New(), TS: s.start, RoomID: s.room, UserID: s.user, SessionID: s.id,
			Type: presencestats.EventConnected, UserAgent: "oracle",
		})
		for t := s.start.Add(5 * time.Minute); t.Before(s.end); t = t.Add(5 * time.Minute) {
			ts := t
			if used[s.room][ts.UnixMicro()] {
				ts = stamp(s.room, t)
			}
			used[s.room][ts.UnixMicro()] = true
			if !ts.Before(s.end) {
				break
			}
			sc.events = append(sc.events, presencestats.PresenceEvent{
				EventID: uuid.New(), TS: ts, RoomID: s.room, UserID: s.user, SessionID: s.id,
				Type: presencestats.EventHeartbeat,
			})
		}
		if !s.open {
			reason := presencestats.ReasonClosed
			if rng.IntN(6) == 0 {
				reason = presencestats.ReasonTimeout
			}
			sc.events = append(sc.events, presencestats.PresenceEvent{
				EventID: uuid.New(), TS: s.end, RoomID: s.room, UserID: s.user, SessionID: s.id,
				Type: presencestats.EventDisconnected, SessionSeconds: s.end.Sub(s.start).Seconds(), Reason: reason,
			})
		}
	}
	slices.SortFunc(sc.events, func(a, b presencestats.PresenceEvent) int { return a.TS.Compare(b.TS) })
	tabs := map[[2]uuid.UUID]int{}
	online := map[uuid.UUID]int{}
	for i := range sc.events {
		e := &sc.events[i]
		k := [2]uuid.UUID{e.RoomID, e.UserID}
		switch e.Type {
		case presencestats.EventConnected:
			if tabs[k]++; tabs[k] == 1 {
				online[e.RoomID]++
				e.OnlineDelta = 1
			}
		case presencestats.EventDisconnected:
			if tabs[k]--; tabs[k] == 0 {
				online[e.RoomID]--
				e.OnlineDelta = -1
			}
		}
		e.OnlineAfter = online[e.RoomID]
	}
	return sc
}

// oracle computes the expected report rows from the scenario's sessions and events.
type oracle struct {
	sc       scenario
	union    map[uuid.UUID]map[uuid.UUID][][2]time.Time  // room -> user -> merged online intervals
	events   map[uuid.UUID][]presencestats.PresenceEvent // room -> its events in time order
	sessions map[uuid.UUID][]simSession                  // room -> its sessions
}

func newOracle(sc scenario) *oracle {
	o := &oracle{sc: sc, union: map[uuid.UUID]map[uuid.UUID][][2]time.Time{},
		events: map[uuid.UUID][]presencestats.PresenceEvent{}, sessions: map[uuid.UUID][]simSession{}}
	for _, e := range sc.events {
		o.events[e.RoomID] = append(o.events[e.RoomID], e)
	}
	per := map[[2]uuid.UUID][][2]time.Time{}
	for _, s := range sc.sessions {
		o.sessions[s.room] = append(o.sessions[s.room], s)
		k := [2]uuid.UUID{s.room, s.user}
		per[k] = append(per[k], [2]time.Time{s.start, s.end})
	}
	for k, iv := range per {
		slices.SortFunc(iv, func(a, b [2]time.Time) int { return a[0].Compare(b[0]) })
		var merged [][2]time.Time
		for _, x := range iv {
			if n := len(merged); n > 0 && !x[0].After(merged[n-1][1]) {
				if x[1].After(merged[n-1][1]) {
					merged[n-1][1] = x[1]
				}
				continue
			}
			merged = append(merged, x)
		}
		if o.union[k[0]] == nil {
			o.union[k[0]] = map[uuid.UUID][][2]time.Time{}
		}
		o.union[k[0]][k[1]] = merged
	}
	return o
}

// onlineAt is the number of users of room online at t (intervals are [start, end)).
func (o *oracle) onlineAt(room uuid.UUID, t time.Time) int64 {
	var n int64
	for _, iv := range o.union[room] {
		for _, x := range iv {
			if !t.Before(x[0]) && t.Before(x[1]) {
				n++
				break
			}
		}
	}
	return n
}

type expected struct {
	presencestats.ReportRow
	ended   int64
	seconds float64
	users   map[uuid.UUID]bool
}

func (o *oracle) row(room uuid.UUID, g presencestats.Granularity, b0 time.Time) expected {
	b1 := g.Next(b0)
	end := b1
	if end.After(o.sc.now) {
		end = o.sc.now
	}
	e := expected{ReportRow: presencestats.ReportRow{RoomID: room, Bucket: b0, Granularity: g}, users: map[uuid.UUID]bool{}}
	if length := end.Sub(b0).Seconds(); length > 0 {
		var integral float64
		e.PeakOnline = o.onlineAt(room, b0)
		for _, iv := range o.union[room] {
			for _, x := range iv {
				lo, hi := maxTime(x[0], b0), minTime(x[1], end)
				if hi.After(lo) {
					integral += hi.Sub(lo).Seconds()
				}
				if !x[0].Before(b0) && x[0].Before(end) {
					e.PeakOnline = max(e.PeakOnline, o.onlineAt(room, x[0]))
				}
			}
		}
		e.AvgOnline = integral / length
	}
	for _, s := range o.sessions[room] {
		if !s.start.Before(b0) && s.start.Before(b1) {
			e.TotalConnections++
		}
		if !s.open && !s.end.Before(b0) && s.end.Before(b1) {
			e.ended++
			e.seconds += s.end.Sub(s.start).Seconds()
		}
	}
	evs := o.events[room]
	i, _ := slices.BinarySearchFunc(evs, b0, func(e presencestats.PresenceEvent, t time.Time) int { return e.TS.Compare(t) })
	for ; i < len(evs) && evs[i].TS.Before(b1); i++ {
		e.users[evs[i].UserID] = true
	}
	e.UniqueUsers = int64(len(e.users))
	if e.ended > 0 {
		e.AvgSessionDuration = e.seconds / float64(e.ended)
	}
	return e
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// sameFloat: equal but for rounding (the same sums added in another order).
func sameFloat(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

func sameTotalsRow(a, b presencestats.TotalsRow) bool {
	return a.Bucket.Equal(b.Bucket) && a.PeakOnline == b.PeakOnline && a.TotalConnections == b.TotalConnections &&
		a.UniqueUsers == b.UniqueUsers && sameFloat(a.AvgOnline, b.AvgOnline) && sameFloat(a.AvgSessionDuration, b.AvgSessionDuration)
}

func samePeakHour(a, b presencestats.PeakHour) bool {
	return a.Hour == b.Hour && a.PeakOnline == b.PeakOnline && sameFloat(a.AvgOnline, b.AvgOnline)
}

// checkReport: Report answers what Stats, Totals and PeakHours answer one by one (its totals are
// summed from its stats rows, Totals' from the aggregates, and an hourly report's peak hours are
// grouped from its totals: floats may differ in their last bits).
func checkReport(ctx context.Context, t *testing.T, reports *storage.Reports, q presencestats.ReportQuery) {
	t.Helper()
	q.Metrics = presencestats.Metrics
	var rows, wantRows []presencestats.ReportRow
	totals, hours, err := reports.Report(ctx, q, func(r presencestats.ReportRow) error { rows = append(rows, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := reports.Stats(ctx, q, func(r presencestats.ReportRow) error { wantRows = append(wantRows, r); return nil }); err != nil {
		t.Fatal(err)
	}
	wantTotals, err := reports.Totals(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	wantHours, err := reports.PeakHours(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rows, wantRows) || !slices.EqualFunc(totals, wantTotals, sameTotalsRow) || !slices.EqualFunc(hours, wantHours, samePeakHour) {
		t.Fatalf("Report differs from Stats, Totals and PeakHours:\n got  %+v\n      %+v\n      %+v\n want %+v\n      %+v\n      %+v",
			rows, totals, hours, wantRows, wantTotals, wantHours)
	}
}

func closeEnough(got, want float64) bool {
	if want == 0 {
		return math.Abs(got) < 1e-9
	}
	return math.Abs(got-want) <= 0.01*math.Abs(want)
}

func TestHistoryOracle(t *testing.T) {
	ctx := context.Background()
	loc, err := time.LoadLocation("Asia/Kolkata") // +05:30: hour buckets at :30 UTC
	if err != nil {
		t.Fatal(err)
	}
	pool := storagetest.Connect(t, storagetest.FreshDatabase(t), false)
	if err := storage.MigrateUp(ctx, pool, loc); err != nil {
		t.Fatal(err)
	}
	sc := simulate(rand.New(rand.NewPCG(20251227, 4)), loc)
	t.Logf("scenario: %d rooms checked among %d, %d sessions, %d events", len(sc.rooms), len(sc.rooms)+len(sc.crowd), len(sc.sessions), len(sc.events))
	everyRoom := slices.Concat(sc.rooms, sc.crowd)

	// Events up to the start of 2026 are recorded and materialised in the room and per-user
	// aggregates; the last 30 hours are recorded after, so the reports read them through the
	// real-time part of every level (the year 2026 bucket: monthly -> daily -> hourly -> raw).
	// The checks run three times: before the unique-user count and all-rooms aggregates built on
	// those are refreshed (so reports count unique users from the per-user rows, a year's from
	// its monthly rows), after they are refreshed up to 2026 too (as the refresh policies would
	// have left them), and with everything materialised.
	cutoff := time.Date(2026, 1, 1, 0, 0, 0, 0, loc)
	split, _ := slices.BinarySearchFunc(sc.events, cutoff, func(e presencestats.PresenceEvent, t time.Time) int { return e.TS.Compare(t) })
	t0 := time.Now()
	c := newCollector(t, pool, func(cfg *storage.CollectorConfig) { cfg.BatchSize, cfg.WriteTimeout = 1000, time.Minute })
	record := func(events []presencestats.PresenceEvent) {
		if err := c.WriteEvents(ctx, events); err != nil {
			t.Fatal(err)
		}
		if got := c.Counts(); got.Dropped != 0 {
			t.Fatalf("the database rejected %d events", got.Dropped)
		}
	}
	record(sc.events[:split])
	refreshAggregates(ctx, t, pool, cutoff, roomAndUserAggregate.MatchString)
	record(sc.events[split:])
	t.Logf("recorded, written and refreshed in %v", time.Since(t0).Round(time.Millisecond))

	o := newOracle(sc)
	reports := storage.NewReports(pool, loc)
	reports.Now = func() time.Time { return sc.now }
	check := func(t *testing.T) {
		for _, g := range presencestats.Granularities {
			for _, rng := range []struct {
				name       string
				start, end time.Time
			}{
				{"all", sc.start.AddDate(0, 0, -2), sc.now},
				{"middle", time.Date(2025, 12, 30, 13, 30, 0, 0, loc), time.Date(2026, 1, 1, 20, 0, 0, 0, loc)},
			} {
				t.Run(fmt.Sprintf("%s/%s", g, rng.name), func(t *testing.T) {
					// The checked rooms are 5 of 45: a report that let the crowd's rows in fails.
					q := presencestats.ReportQuery{RoomIDs: sc.rooms, Start: rng.start, End: rng.end, Granularity: g}
					checkStats(ctx, t, reports, o, q)
					checkTotals(ctx, t, reports, o, q)
					// One room of 45 (most rows in every aggregate are other rooms'): its rows, its
					// totals and its report alone.
					one := q
					one.RoomIDs = sc.rooms[:1]
					checkStats(ctx, t, reports, o, one)
					checkTotals(ctx, t, reports, o, one)
					checkReport(ctx, t, reports, one)
					// No rooms means every room: the same totals as every room listed, unique users
					// from the all-users aggregate.
					all, listed := q, q
					all.RoomIDs, listed.RoomIDs = nil, everyRoom
					got, err := reports.Totals(ctx, all)
					if err != nil {
						t.Fatal(err)
					}
					want, err := reports.Totals(ctx, listed)
					if err != nil {
						t.Fatal(err)
					}
					// The all-rooms aggregate adds the same numbers in another order: floats may differ in
					// their last bits.
					if !slices.EqualFunc(got, want, sameTotalsRow) {
						t.Fatalf("totals of every room differ from totals of the rooms listed:\n got  %+v\n want %+v", got, want)
					}
					checkReport(ctx, t, reports, q)
					checkReport(ctx, t, reports, all)
				})
			}
		}
		t.Run("peak hours", func(t *testing.T) {
			q := presencestats.ReportQuery{RoomIDs: sc.rooms, Start: sc.start, End: sc.now, Granularity: presencestats.Day}
			checkPeakHours(ctx, t, reports, o, q)
			one := q
			one.RoomIDs = sc.rooms[1:2]
			checkPeakHours(ctx, t, reports, o, one)
			// Every room (the all-rooms aggregate) gives the same hours as every room listed.
			all, listed := q, q
			all.RoomIDs, listed.RoomIDs = nil, everyRoom
			got, err := reports.PeakHours(ctx, all)
			if err != nil {
				t.Fatal(err)
			}
			want, err := reports.PeakHours(ctx, listed)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, want, samePeakHour) {
				t.Fatalf("peak hours of every room differ from those of the rooms listed:\n got  %+v\n want %+v", got, want)
			}
		})
		t.Run("peak hours start at the hourly retention", func(t *testing.T) {
			// presence_room_hourly keeps 6 months: a range starting a year back counts the hours
			// from the first whole hour after now - 6 months, like a range starting there.
			horizon := sc.now.UTC().AddDate(0, -6, 0)
			from := presencestats.Hour.Truncate(horizon, loc)
			if from.Before(horizon) {
				from = from.Add(time.Hour)
			}
			for _, rooms := range [][]uuid.UUID{sc.rooms, nil} {
				got, err := reports.PeakHours(ctx, presencestats.ReportQuery{RoomIDs: rooms, Start: sc.now.AddDate(-1, 0, 0), End: sc.now})
				if err != nil {
					t.Fatal(err)
				}
				want, err := reports.PeakHours(ctx, presencestats.ReportQuery{RoomIDs: rooms, Start: from, End: sc.now})
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 24 || !slices.Equal(got, want) {
					t.Fatalf("peak hours from a year back (rooms %d):\n got  %+v\n want %+v", len(rooms), got, want)
				}
				// A report over that year walks its peak hours from the end of its last bucket
				// (every room) or reads the counts at the horizon (rooms listed), or (hours) groups
				// its own totals from the horizon on: the same hours.
				for _, g := range []presencestats.Granularity{presencestats.Hour, presencestats.Day, presencestats.Month} {
					checkReport(ctx, t, reports, presencestats.ReportQuery{RoomIDs: rooms, Start: sc.now.AddDate(-1, 0, 0), End: sc.now, Granularity: g})
				}
			}
		})
		t.Run("all rooms", func(t *testing.T) {
			rooms, err := reports.Rooms(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(everyRoom)
			slices.SortFunc(want, func(a, b uuid.UUID) int { return cmp.Compare(a.String(), b.String()) })
			if !slices.Equal(rooms, want) {
				t.Fatalf("Rooms: got %v, want %v", rooms, want)
			}
		})
	}
	t0 = time.Now()
	t.Run("real-time, counts not refreshed", check)
	t.Logf("real-time checks, counts not refreshed, in %v", time.Since(t0).Round(time.Millisecond))
	refreshAggregates(ctx, t, pool, cutoff, nil)
	t0 = time.Now()
	t.Run("real-time", check)
	t.Logf("real-time checks in %v", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	refreshAggregates(ctx, t, pool, time.Time{}, nil)
	t.Logf("refreshed every aggregate in %v", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	t.Run("materialized", check)
	t.Logf("materialized checks in %v", time.Since(t0).Round(time.Millisecond))
}

// roomAndUserAggregate matches the room and per-user aggregates, not the unique-user count and
// all-rooms aggregates built on them.
var roomAndUserAggregate = regexp.MustCompile(`^presence_(room|user)_(hourly|daily|weekly|monthly|yearly)$`)

func checkStats(ctx context.Context, t *testing.T, reports *storage.Reports, o *oracle, q presencestats.ReportQuery) {
	t.Helper()
	var got []presencestats.ReportRow
	if err := reports.Stats(ctx, q, func(r presencestats.ReportRow) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	rooms := slices.Clone(q.RoomIDs)
	slices.SortFunc(rooms, func(a, b uuid.UUID) int { return cmp.Compare(a.String(), b.String()) })
	var want []expected
	for _, room := range rooms {
		for b := q.Granularity.Truncate(q.Start, o.sc.loc); b.Before(q.End); b = q.Granularity.Next(b) {
			want = append(want, o.row(room, q.Granularity, b))
		}
	}
	if len(got) != len(want) || len(got) != len(rooms)*reports.CountBuckets(q) {
		t.Fatalf("rows: got %d, want %d (CountBuckets %d x %d rooms)", len(got), len(want), reports.CountBuckets(q), len(rooms))
	}
	bad := 0
	for i, w := range want {
		g := got[i]
		if g.RoomID != w.RoomID || !g.Bucket.Equal(w.Bucket) || g.Granularity != w.Granularity ||
			g.PeakOnline != w.PeakOnline || g.TotalConnections != w.TotalConnections || g.UniqueUsers != w.UniqueUsers ||
			!closeEnough(g.AvgOnline, w.AvgOnline) || !closeEnough(g.AvgSessionDuration, w.AvgSessionDuration) {
			if bad++; bad <= 5 {
				t.Errorf("row %d:\n got  %+v\n want %+v", i, g, w.ReportRow)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d rows differ", bad, len(want))
	}
}

func checkTotals(ctx context.Context, t *testing.T, reports *storage.Reports, o *oracle, q presencestats.ReportQuery) {
	t.Helper()
	got, err := reports.Totals(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var want []presencestats.TotalsRow
	for b := q.Granularity.Truncate(q.Start, o.sc.loc); b.Before(q.End); b = q.Granularity.Next(b) {
		tr := presencestats.TotalsRow{Bucket: b}
		users := map[uuid.UUID]bool{}
		var ended int64
		var secs float64
		for _, room := range q.RoomIDs {
			e := o.row(room, q.Granularity, b)
			tr.PeakOnline += e.PeakOnline
			tr.AvgOnline += e.AvgOnline
			tr.TotalConnections += e.TotalConnections
			ended += e.ended
			secs += e.seconds
			for u := range e.users {
				users[u] = true
			}
		}
		tr.UniqueUsers = int64(len(users))
		if ended > 0 {
			tr.AvgSessionDuration = secs / float64(ended)
		}
		want = append(want, tr)
	}
	if len(got) != len(want) {
		t.Fatalf("totals rows: got %d, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if !g.Bucket.Equal(w.Bucket) || g.PeakOnline != w.PeakOnline || g.TotalConnections != w.TotalConnections ||
			g.UniqueUsers != w.UniqueUsers || !closeEnough(g.AvgOnline, w.AvgOnline) || !closeEnough(g.AvgSessionDuration, w.AvgSessionDuration) {
			t.Fatalf("totals row %d:\n got  %+v\n want %+v", i, g, w)
		}
	}
}

func checkPeakHours(ctx context.Context, t *testing.T, reports *storage.Reports, o *oracle, q presencestats.ReportQuery) {
	t.Helper()
	got, err := reports.PeakHours(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var sum [24]float64
	var peak [24]int64
	var n [24]int
	for b := presencestats.Hour.Truncate(q.Start, o.sc.loc); b.Before(q.End); b = b.Add(time.Hour) {
		var avg float64
		var pk int64
		for _, room := range q.RoomIDs {
			e := o.row(room, presencestats.Hour, b)
			avg += e.AvgOnline
			pk += e.PeakOnline
		}
		h := b.In(o.sc.loc).Hour()
		sum[h] += avg
		n[h]++
		peak[h] = max(peak[h], pk)
	}
	var want []presencestats.PeakHour
	for h := range 24 {
		if n[h] > 0 {
			want = append(want, presencestats.PeakHour{Hour: h, AvgOnline: sum[h] / float64(n[h]), PeakOnline: peak[h]})
		}
	}
	if len(got) != len(want) {
		t.Fatalf("peak hours: got %d, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Hour != want[i].Hour || got[i].PeakOnline != want[i].PeakOnline || !closeEnough(got[i].AvgOnline, want[i].AvgOnline) {
			t.Fatalf("peak hour %d:\n got  %+v\n want %+v", i, got[i], want[i])
		}
	}
}
