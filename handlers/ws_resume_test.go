package handlers_test

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"presencestats"
	"presencestats/handlers"
	"presencestats/storage/storagetest"
)

// restartPair is two instances on one Redis and one history, both with RESUME_WINDOW window:
// a is the one that will be stopped.
func restartPair(t *testing.T, window time.Duration) (a, b *presenceServer) {
	t.Helper()
	prefix := storagetest.KeyPrefix(t)
	a = newPresenceServer(t, presenceOpts{prefix: prefix, resumeWindow: window})
	b = newPresenceServer(t, presenceOpts{prefix: prefix, resumeWindow: window, rec: a.rec})
	return a, b
}

// dialResume connects user to room on s asking to resume session (uuid.Nil: no resume) and
// returns the client and its welcome.
func dialResume(t *testing.T, s *presenceServer, room, user, session uuid.UUID) (*wsClient, handlers.WelcomeData) {
	t.Helper()
	url := wsURL(s.URL, room.String()) + "?access_token=" + s.token(t, user)
	if session != uuid.Nil {
		url += "&resume=" + session.String()
	}
	conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	c := startWSClient(t, conn)
	f := c.waitFrame(t, 5*time.Second, "welcome", func(f frame) bool { return f.Type == handlers.TypeWelcome })
	var w handlers.WelcomeData
	if err := json.Unmarshal(f.Data, &w); err != nil {
		t.Fatal(err)
	}
	return c, w
}

// stop shuts s's hub down as SIGTERM does, and waits for c's socket to close with 1012.
func stop(t *testing.T, s *presenceServer, clients ...*wsClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.hub.Close(ctx)
	for _, c := range clients {
		select {
		case <-c.closed:
		case <-time.After(5 * time.Second):
			t.Fatal("socket not closed by the shutdown")
		}
		if got := c.closeCode(); got != handlers.CloseServiceRestart {
			t.Fatalf("close code %d, want %d (service restart)", got, handlers.CloseServiceRestart)
		}
	}
}

// noChangeUntil fails when c gets online_stats with counts other than (online, sessions) before
// one with online_count want (a sentinel's join). Frames with the unchanged counts are allowed:
// every instance confirms its rooms' counts to its members after each heartbeat round.
func noChangeUntil(t *testing.T, c *wsClient, online, sessions, want int64) {
	t.Helper()
	c.waitFrame(t, 5*time.Second, "online_stats with online_count "+itoa(want), func(f frame) bool {
		if f.Type != handlers.TypeOnlineStats {
			return false
		}
		st := f.stats(t)
		if st.OnlineCount == want {
			return true
		}
		if st.OnlineCount != online || st.SessionCount != sessions {
			t.Fatalf("a member got online_stats %+v before the sentinel's count %d, want only %d users, %d sessions", st, want, online, sessions)
		}
		return false
	})
}

func (r *presenceRecorder) ofSession(id uuid.UUID) []presencestats.PresenceEvent {
	var out []presencestats.PresenceEvent
	for _, ev := range r.events() {
		if ev.SessionID == id && ev.Type != presencestats.EventHeartbeat {
			out = append(out, ev)
		}
	}
	return out
}

// A client whose instance stops resumes its session on another instance: same id, no event, no
// change of the counts the room's members see until a sentinel joins, and the session's eventual
// disconnected spans the whole stay.
func TestWSResumeAfterRestart(t *testing.T) {
	a, b := restartPair(t, 10*time.Second)
	room, user := uuid.New(), uuid.New()
	member, _ := dialResume(t, b, room, uuid.New(), uuid.Nil)
	member.waitOnline(t, push, 1)
	x, w := dialResume(t, a, room, user, uuid.Nil)
	if w.Resumed {
		t.Fatal("a first connection says resumed")
	}
	member.waitOnline(t, push, 2)
	x.waitOnline(t, push, 2)
	stop(t, a, x)

	x2, w2 := dialResume(t, b, room, user, w.SessionID)
	if !w2.Resumed || w2.SessionID != w.SessionID {
		t.Fatalf("welcome after resume: %+v, want resumed session %s", w2, w.SessionID)
	}
	if st := x2.waitOnline(t, push, 2); st.SessionCount != 2 {
		t.Fatalf("snapshot after resume: %+v", st)
	}
	// The sentinel: a third user joins; the member's next counts must be its 3.
	dialResume(t, b, room, uuid.New(), uuid.Nil)
	noChangeUntil(t, member, 2, 2, 3)

	x2.conn.Close()
	member.waitOnline(t, push, 2)
	var evs []presencestats.PresenceEvent
	eventually(t, 5*time.Second, "the resumed session's disconnected event", func() bool {
		evs = a.rec.ofSession(w.SessionID)
		return len(evs) >= 2
	})
	if len(evs) != 2 || evs[0].Type != presencestats.EventConnected || evs[1].Type != presencestats.EventDisconnected ||
		evs[1].Reason != presencestats.ReasonClosed {
		t.Fatalf("events of the resumed session: %+v, want connected then disconnected (closed)", evs)
	}
	if got, want := evs[1].SessionSeconds, evs[1].TS.Sub(evs[0].TS).Seconds(); math.Abs(got-want) > 1e-6 {
		t.Errorf("session_seconds %v, want %v (from the first connection)", got, want)
	}
	if got := b.metric(t, "presence_resumed_sessions_total"); got != 1 {
		t.Errorf("presence_resumed_sessions_total on b = %v, want 1", got)
	}
}

// A detached session nobody resumes ends once, with reason server_shutdown, after the window;
// resuming it later is a new session.
func TestWSResumeWindowPasses(t *testing.T) {
	a, b := restartPair(t, 300*time.Millisecond)
	room, user := uuid.New(), uuid.New()
	member, _ := dialResume(t, b, room, uuid.New(), uuid.Nil)
	x, w := dialResume(t, a, room, user, uuid.Nil)
	member.waitOnline(t, push, 2)
	stop(t, a, x)
	eventually(t, 5*time.Second, "the detached session swept", func() bool {
		evs, err := b.store.Sweep(context.Background(), 100) // the sweeper's step
		if err != nil {
			t.Fatal(err)
		}
		return len(evs) > 0
	})
	member.waitOnline(t, push, 1)
	eventually(t, 5*time.Second, "the disconnected event", func() bool { return len(a.rec.ofSession(w.SessionID)) == 2 })
	if evs := a.rec.ofSession(w.SessionID); evs[1].Reason != presencestats.ReasonServerShutdown || evs[1].Type != presencestats.EventDisconnected {
		t.Fatalf("events: %+v, want connected, disconnected (server_shutdown)", evs)
	}
	_, late := dialResume(t, b, room, user, w.SessionID)
	if late.Resumed || late.SessionID == w.SessionID {
		t.Fatalf("resume after the window: %+v, want a new session", late)
	}
	member.waitOnline(t, push, 2)
}

// Another user's resume of a detached session is a new session and leaves the session to its
// user; a resume that is not a UUID is a 400.
func TestWSResumeForeignUser(t *testing.T) {
	a, b := restartPair(t, 10*time.Second)
	room, user := uuid.New(), uuid.New()
	member, _ := dialResume(t, b, room, uuid.New(), uuid.Nil)
	x, w := dialResume(t, a, room, user, uuid.Nil)
	member.waitOnline(t, push, 2)
	stop(t, a, x)

	_, forged := dialResume(t, b, room, uuid.New(), w.SessionID)
	if forged.Resumed || forged.SessionID == w.SessionID {
		t.Fatalf("another user's resume: %+v, want a new session", forged)
	}
	noChangeUntil(t, member, 2, 2, 3) // the forger is a new user; the detached one still counts
	_, own := dialResume(t, b, room, user, w.SessionID)
	if !own.Resumed || own.SessionID != w.SessionID {
		t.Fatalf("the user's own resume after a forged one: %+v", own)
	}
	if n := len(a.rec.ofSession(w.SessionID)); n > 1 {
		t.Errorf("the detached session has %d events, want its connected only", n)
	}

	resp, err := http.Get(b.URL + "/ws/rooms/" + room.String() + "?access_token=" + b.token(t, user) + "&resume=not-a-session")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("resume=not-a-session: status %d, want 400", resp.StatusCode)
	}
}

// Two connections resuming one session at once, on two instances: exactly one owns it.
func TestWSResumeTwice(t *testing.T) {
	prefix := storagetest.KeyPrefix(t)
	a := newPresenceServer(t, presenceOpts{prefix: prefix, resumeWindow: 10 * time.Second})
	b := newPresenceServer(t, presenceOpts{prefix: prefix, resumeWindow: 10 * time.Second, rec: a.rec})
	c := newPresenceServer(t, presenceOpts{prefix: prefix, resumeWindow: 10 * time.Second, rec: a.rec})
	room, user := uuid.New(), uuid.New()
	x, w := dialResume(t, a, room, user, uuid.Nil)
	x.waitOnline(t, push, 1)
	stop(t, a, x)
	var mu sync.Mutex
	var welcomes []handlers.WelcomeData
	var wg sync.WaitGroup
	for _, s := range []*presenceServer{b, c, b, c} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, resp, err := websocket.DefaultDialer.Dial(wsURL(s.URL, room.String())+"?access_token="+s.token(t, user)+"&resume="+w.SessionID.String(), nil)
			if err != nil {
				t.Errorf("dial: %v (%v)", err, resp)
				return
			}
			defer cl.Close()
			var f struct {
				Type string               `json:"type"`
				Data handlers.WelcomeData `json:"data"`
			}
			if err := cl.ReadJSON(&f); err != nil {
				t.Error(err)
				return
			}
			// The snapshot: the session is registered (resumed or joined) before it comes.
			var snap frame
			if err := cl.ReadJSON(&snap); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			welcomes = append(welcomes, f.Data)
			mu.Unlock()
		}()
	}
	wg.Wait()
	resumed := 0
	for _, wd := range welcomes {
		if wd.Resumed {
			resumed++
			if wd.SessionID != w.SessionID {
				t.Errorf("resumed with session %s, want %s", wd.SessionID, w.SessionID)
			}
		} else if wd.SessionID == w.SessionID {
			t.Errorf("a new session took the detached session's id")
		}
	}
	if resumed != 1 || len(welcomes) != 4 {
		t.Fatalf("%d of %d concurrent resumes succeeded, want exactly 1", resumed, len(welcomes))
	}
}

// With RESUME_WINDOW 0 a resume is a new session (and the shutdown ends sessions, closing with
// 1001: TestHubCloseShutsDownSessions).
func TestWSResumeOff(t *testing.T) {
	a, b := restartPair(t, 0)
	room, user := uuid.New(), uuid.New()
	x, w := dialResume(t, a, room, user, uuid.Nil)
	x.waitOnline(t, push, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.hub.Close(ctx)
	<-x.closed
	if got := x.closeCode(); got != websocket.CloseGoingAway {
		t.Errorf("close code %d, want 1001", got)
	}
	_, w2 := dialResume(t, b, room, user, w.SessionID)
	if w2.Resumed || w2.SessionID == w.SessionID {
		t.Fatalf("resume with RESUME_WINDOW 0: %+v", w2)
	}
}
