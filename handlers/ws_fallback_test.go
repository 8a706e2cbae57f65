package handlers_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"presencestats"
	"presencestats/handlers"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

// switchableHistory is the real history with a switch that makes it unreachable.
type switchableHistory struct {
	h    handlers.HistoryCounts
	down atomic.Bool
}

func (s *switchableHistory) LastCounts(ctx context.Context, rooms []uuid.UUID) ([]presencestats.OnlineStats, error) {
	if s.down.Load() {
		return nil, presencestats.Wrap(presencestats.EUNAVAILABLE, errors.New("switched off"), "database unavailable")
	}
	return s.h.LastCounts(ctx, rooms)
}

// While Redis is unreachable, a room this instance has never counted is answered from the
// history (its newest stored online_after, degraded, source "database"), not zero; a room it has
// counted keeps its cached count (source "cache"). The history's answer is reused for 2 s, then
// read again; with the database away too the older answer stays, and a room never answered is
// zero (source "none"). REST for one room and many, and the WebSocket snapshot of a join.
func TestRedisOutageFallsBackToTheDatabase(t *testing.T) {
	r := storagetest.StartRedis(t)
	pool := storagetest.SharedDatabase(t)
	history := &switchableHistory{h: storage.NewHistoryCounts(pool)}
	clock := newFakeClock() // the hub's time: the fallback's 2 s reuse ends when the test says
	s := newPresenceServer(t, presenceOpts{redisURL: r.URL(), clock: clock, history: history})
	tok := s.token(t, uuid.New())
	seen, stored, unknown, never := uuid.New(), uuid.New(), uuid.New(), uuid.New()

	// The history of stored: its newest event says 4 online; an older one, written after it, 9.
	collector, err := storage.NewCollector(pool, storage.CollectorConfig{})
	if err != nil {
		t.Fatal(err)
	}
	newest := time.Now().UTC().Truncate(time.Microsecond).Add(-time.Minute)
	event := func(ts time.Time, online int) presencestats.PresenceEvent {
		return presencestats.PresenceEvent{EventID: uuid.New(), TS: ts, RoomID: stored, UserID: uuid.New(), SessionID: uuid.New(),
			Type: presencestats.EventConnected, OnlineAfter: online, OnlineDelta: 1}
	}
	if err := collector.WriteEvents(context.Background(), []presencestats.PresenceEvent{event(newest, 4), event(newest.Add(-2*time.Hour), 9)}); err != nil {
		t.Fatal(err)
	}

	a := dialWS(t, s, seen, uuid.New())
	a.waitOnline(t, push, 1)
	var st presencestats.OnlineStats
	if code := s.getJSON(t, "/api/rooms/"+seen.String()+"/stats", tok, &st); code != http.StatusOK || st.Degraded || st.Source != presencestats.SourceRedis || st.OnlineCount != 1 {
		t.Fatalf("before the outage: %d %+v, want 1 online from redis", code, st)
	}

	r.Stop()
	eventually(t, 5*time.Second, "a degraded answer", func() bool {
		st = presencestats.OnlineStats{}
		return s.getJSON(t, "/api/rooms/"+seen.String()+"/stats", tok, &st) == http.StatusOK && st.Degraded
	})
	if st.Source != presencestats.SourceCache || st.OnlineCount != 1 || st.SessionCount != 1 {
		t.Errorf("a room this instance counted: %+v, want its cached 1 online, source cache", st)
	}
	st = presencestats.OnlineStats{}
	if code := s.getJSON(t, "/api/rooms/"+stored.String()+"/stats", tok, &st); code != http.StatusOK {
		t.Fatalf("stored room: %d", code)
	}
	if !st.Degraded || st.Source != presencestats.SourceDatabase || st.OnlineCount != 4 || st.SessionCount != 4 || !st.Timestamp.Equal(newest) || st.RoomID != stored {
		t.Errorf("a room never counted here: %+v, want 4 online at %s from the database, degraded", st, newest)
	}
	var many handlers.RoomsStats
	if code := s.getJSON(t, "/api/rooms/stats?room_id="+seen.String()+"&room_id="+stored.String()+"&room_id="+unknown.String(), tok, &many); code != http.StatusOK || len(many.Rooms) != 3 {
		t.Fatalf("many rooms: %d %+v", code, many)
	}
	for i, w := range []struct {
		source string
		online int64
	}{{presencestats.SourceCache, 1}, {presencestats.SourceDatabase, 4}, {presencestats.SourceDatabase, 0}} {
		if got := many.Rooms[i]; !got.Degraded || got.Source != w.source || got.OnlineCount != w.online {
			t.Errorf("many rooms, room %d: %+v, want %d online from %s, degraded", i, got, w.online, w.source)
		}
	}
	// stored was read once, its second answer reused; unknown read once.
	if got := s.metric(t, "presence_stats_history_reads_total"); got != 2 {
		t.Errorf("history reads: %v, want 2 (stored, then unknown)", got)
	}

	// A join during the outage: its snapshot is the history's count, degraded.
	b := dialWS(t, s, stored, uuid.New())
	f := b.waitFrame(t, push, "snapshot", func(f frame) bool { return f.Type == handlers.TypeOnlineStats })
	if got := f.stats(t); !got.Degraded || got.Source != presencestats.SourceDatabase || got.OnlineCount != 4 {
		t.Errorf("snapshot of a join during the outage: %s, want 4 online from the database, degraded", f.Data)
	}

	// A newer event: seen only once the reuse has run out.
	if err := collector.WriteEvents(context.Background(), []presencestats.PresenceEvent{event(newest.Add(30*time.Second), 6)}); err != nil {
		t.Fatal(err)
	}
	if st = (presencestats.OnlineStats{}); s.getJSON(t, "/api/rooms/"+stored.String()+"/stats", tok, &st) != http.StatusOK || st.OnlineCount != 4 {
		t.Errorf("within 2 s of the read: %+v, want the reused 4", st)
	}
	clock.Advance(3 * time.Second)
	if st = (presencestats.OnlineStats{}); s.getJSON(t, "/api/rooms/"+stored.String()+"/stats", tok, &st) != http.StatusOK || st.OnlineCount != 6 || st.Source != presencestats.SourceDatabase {
		t.Errorf("after 2 s: %+v, want the newer 6 from the database", st)
	}

	// The database away too: the older answer stays; a room never answered is zero, source none.
	history.down.Store(true)
	clock.Advance(3 * time.Second)
	if st = (presencestats.OnlineStats{}); s.getJSON(t, "/api/rooms/"+stored.String()+"/stats", tok, &st) != http.StatusOK || st.OnlineCount != 6 || st.Source != presencestats.SourceDatabase || !st.Degraded {
		t.Errorf("database away, room answered before: %+v, want its last 6 from the database", st)
	}
	if st = (presencestats.OnlineStats{}); s.getJSON(t, "/api/rooms/"+never.String()+"/stats", tok, &st) != http.StatusOK || st.OnlineCount != 0 || st.Source != presencestats.SourceNone || !st.Degraded {
		t.Errorf("database away, room never answered: %+v, want 0, source none, degraded", st)
	}
	history.down.Store(false)

	// Redis back: live counts again (b joined during the outage and is registered now).
	r.Start()
	eventually(t, 10*time.Second, "live counts after the restart", func() bool {
		st = presencestats.OnlineStats{}
		ok := s.getJSON(t, "/api/rooms/"+stored.String()+"/stats", tok, &st) == http.StatusOK
		return ok && !st.Degraded && st.Source == presencestats.SourceRedis && st.OnlineCount == 1
	})
}
