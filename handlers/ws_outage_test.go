package handlers_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"presencestats"
	"presencestats/handlers"
	"presencestats/storage/storagetest"
)

// Redis stopped and restarted under load: WebSockets stay up, REST keeps answering 200 with the
// last counts marked degraded, /readyz says Redis is down; after the restart (Redis lost its
// data) the instance registers its live sessions again and counts are exact, no reconnects.
func TestRedisOutageUnderLoad(t *testing.T) {
	r := storagetest.StartRedis(t)
	s := newPresenceServer(t, presenceOpts{redisURL: r.URL()})
	room := uuid.New()
	a := dialWS(t, s, room, uuid.New())
	b := dialWS(t, s, room, uuid.New())
	c := dialWS(t, s, room, uuid.New())
	a.waitOnline(t, push, 3)
	// Their connected events have left Redis's outbox for the history before Redis loses its
	// data (an outbox not yet relayed is lost with it: a known limit, docs/history.md).
	eventually(t, push, "a, b and c's connected events", func() bool { return s.rec.count(presencestats.EventConnected, "") == 3 })
	tok := s.token(t, uuid.New())

	// Load: REST reads and chat all through the outage; every REST answer must be a 200.
	ctx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var bad, reads atomic.Int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if code := s.getJSON(t, "/api/rooms/"+room.String()+"/stats", tok, nil); code != http.StatusOK {
				bad.Add(1)
			}
			reads.Add(1)
		}
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			<-tick.C
			_ = b.conn.WriteJSON(handlers.ClientFrame{Type: handlers.TypeMessage, Text: "still here"})
		}
	}()
	defer func() { stopLoad(); wg.Wait() }()

	r.Stop()
	var st presencestats.OnlineStats
	eventually(t, 5*time.Second, "degraded REST answer", func() bool {
		st = presencestats.OnlineStats{}
		return s.getJSON(t, "/api/rooms/"+room.String()+"/stats", tok, &st) == http.StatusOK && st.Degraded
	})
	if st.OnlineCount != 3 {
		t.Errorf("degraded answer %+v, want the last known count 3", st)
	}
	if code := s.getJSON(t, "/readyz", "", nil); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the outage: %d, want 503", code)
	}
	// During the outage: c leaves, d joins (its snapshot says degraded), a stays up.
	c.conn.Close()
	d := dialWS(t, s, room, uuid.New())
	f := d.waitFrame(t, push, "snapshot", func(f frame) bool { return f.Type == handlers.TypeOnlineStats })
	if !f.stats(t).Degraded {
		t.Errorf("snapshot during the outage not degraded: %s", f.Data)
	}

	r.Start()
	eventually(t, 10*time.Second, "exact counts after the restart", func() bool {
		st = presencestats.OnlineStats{}
		ok := s.getJSON(t, "/api/rooms/"+room.String()+"/stats", tok, &st) == http.StatusOK
		return ok && !st.Degraded && st.OnlineCount == 3 && st.SessionCount == 3
	})
	got, err := s.store.Counts(context.Background(), room)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].OnlineCount != 3 {
		t.Errorf("Redis after resync: %+v, want a, b and d", got[0])
	}
	a.waitOnline(t, push, 3) // members are told, on the connections they kept
	if code := s.getJSON(t, "/readyz", "", nil); code != http.StatusOK {
		t.Errorf("/readyz after the restart: %d", code)
	}
	stopLoad()
	wg.Wait()
	if bad.Load() > 0 {
		t.Errorf("%d of %d REST reads were not 200", bad.Load(), reads.Load())
	}
	select {
	case <-a.closed:
		t.Error("a's WebSocket was closed by the outage")
	default:
	}
	// d joined during the outage: its connected event is recorded once Redis is back.
	eventually(t, push, "d's connected event", func() bool { return s.rec.count(presencestats.EventConnected, "") == 4 })
}
