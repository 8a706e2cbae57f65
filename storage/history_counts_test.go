package storage_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"presencestats"
	queries "presencestats/sql"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

// seedLastCounts writes, for each room, events on three days (three chunks) whose newest is not
// the one written last, and returns online_after of each room's newest event.
func seedLastCounts(tb testing.TB, rooms []uuid.UUID, now time.Time) []int64 {
	tb.Helper()
	pool := storagetest.SharedDatabase(tb)
	c, err := storage.NewCollector(pool, storage.CollectorConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	want := make([]int64, len(rooms))
	var evs []presencestats.PresenceEvent
	for i, room := range rooms {
		ev := func(ts time.Time, online int) presencestats.PresenceEvent {
			return presencestats.PresenceEvent{EventID: uuid.New(), TS: ts, RoomID: room, UserID: uuid.New(), SessionID: uuid.New(),
				Type: presencestats.EventHeartbeat, OnlineAfter: online}
		}
		want[i] = int64(10 + i)
		// The newest first, then older ones: the answer must follow ts, not the order of writing.
		evs = append(evs, ev(now.Add(-time.Minute), 10+i), ev(now.Add(-26*time.Hour), 50), ev(now.Add(-50*time.Hour), 60),
			ev(now.Add(-2*time.Minute), 70))
	}
	if err := c.WriteEvents(context.Background(), evs); err != nil {
		tb.Fatal(err)
	}
	return want
}

// The history's last count of each room is its newest event's online_after, in the order asked,
// zero for a room without events; and the query reads presence_events through the (room_id, ts)
// index of each chunk, never a scan of the hypertable.
func TestHistoryLastCounts(t *testing.T) {
	ctx := context.Background()
	pool := storagetest.SharedDatabase(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	rooms := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	want := seedLastCounts(t, rooms, now)
	empty := uuid.New()
	asked := []uuid.UUID{rooms[2], empty, rooms[0], rooms[1]}
	got, err := storage.NewHistoryCounts(pool).LastCounts(ctx, asked)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(asked) {
		t.Fatalf("%d answers for %d rooms", len(got), len(asked))
	}
	for i, w := range []int64{want[2], 0, want[0], want[1]} {
		st := got[i]
		if st.RoomID != asked[i] || st.OnlineCount != w || st.SessionCount != w || st.Source != presencestats.SourceDatabase || st.Degraded {
			t.Errorf("room %d: %+v, want %s with %d online from the database", i, st, asked[i], w)
		}
		if w != 0 && !st.Timestamp.Equal(now.Add(-time.Minute)) {
			t.Errorf("room %d: timestamp %s, want the newest event's %s", i, st.Timestamp, now.Add(-time.Minute))
		}
	}

	// Enough rows that a scan would cost more than the index: the plan must probe the index.
	var filler []uuid.UUID
	for range 200 {
		filler = append(filler, uuid.New())
	}
	seedLastCounts(t, filler, now)
	if _, err := pool.Exec(ctx, "ANALYZE presence_events"); err != nil {
		t.Fatal(err)
	}
	var plan strings.Builder
	rows, err := pool.Query(ctx, "EXPLAIN "+queries.Must("history_last_counts.sql"), asked)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	p := plan.String()
	if !strings.Contains(p, "presence_events_room_ts_idx") || strings.Contains(p, "Seq Scan on _hyper") || strings.Contains(p, "Seq Scan on presence_events") {
		t.Errorf("the plan does not probe (room_id, ts DESC) in every chunk:\n%s", p)
	}
	t.Logf("engine %s, plan:\n%s", storagetest.Engine(ctx, pool), p)
}
