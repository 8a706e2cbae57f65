package handlers_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"presencestats"
	"presencestats/handlers"
)

// lostJoinReply is the real store, except that its first Join is applied and then answered with
// a timeout, as when Redis stalls past the command timeout and then runs the command.
type lostJoinReply struct {
	handlers.PresenceStore
	lost atomic.Bool
}

func (s *lostJoinReply) Join(ctx context.Context, sess presencestats.Session, record bool) (presencestats.PresenceEvent, presencestats.OnlineStats, error) {
	ev, st, err := s.PresenceStore.Join(ctx, sess, record)
	if err == nil && s.lost.CompareAndSwap(false, true) {
		return presencestats.PresenceEvent{}, presencestats.OnlineStats{}, presencestats.Wrap(presencestats.EUNAVAILABLE,
			fmt.Errorf("presence join: %w", context.DeadlineExceeded), "presence store unavailable")
	}
	return ev, st, err
}

// TestWSLostJoinReply: a client whose join was applied by Redis but answered with a timeout, and
// who leaves before the hub joins it again, is removed from Redis (not left counted until the
// sweeper expires it) and its history has both events, the connected one as Redis applied it
// (time, delta, count), so the room's online_delta sum stays right.
func TestWSLostJoinReply(t *testing.T) {
	s := newPresenceServer(t, presenceOpts{wrapStore: func(st handlers.PresenceStore) handlers.PresenceStore {
		return &lostJoinReply{PresenceStore: st}
	}})
	room := uuid.New()
	c := dialWS(t, s, room, uuid.New())
	// The snapshot comes after the join (welcome before it): closing on welcome could leave before
	// the join is tried, and such a session has nothing in Redis or the history to undo.
	c.waitFrame(t, push, "snapshot after the lost join", func(f frame) bool {
		return f.Type == handlers.TypeOnlineStats && f.stats(t).Degraded
	})
	c.conn.Close()
	eventually(t, 5*time.Second, "connected and disconnected recorded", func() bool {
		return s.rec.count(presencestats.EventConnected, "") == 1 && s.rec.count(presencestats.EventDisconnected, "") == 1
	})
	evs := s.rec.events()
	var sum int
	for _, ev := range evs {
		sum += ev.OnlineDelta
	}
	conn := evs[0]
	if conn.Type != presencestats.EventConnected || conn.OnlineDelta != 1 || conn.OnlineAfter != 1 || sum != 0 {
		t.Fatalf("events %+v: want connected (+1, 1 online) then disconnected, deltas summing to 0", evs)
	}
	if !evs[1].TS.After(conn.TS) {
		t.Fatalf("disconnected at %s is not after connected at %s", evs[1].TS, conn.TS)
	}
	st, err := s.store.Counts(context.Background(), room)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].OnlineCount != 0 || st[0].SessionCount != 0 {
		t.Fatalf("Redis after the client left: %+v, want 0 online", st[0])
	}
}

// TestWSLostJoinReplyRetried: the same lost reply, with the client staying: when the hub joins it
// again (Redis answering), the connected event recorded is the one Redis applied (delta +1), not
// a heartbeat turned into a connection with delta 0.
func TestWSLostJoinReplyRetried(t *testing.T) {
	s := newPresenceServer(t, presenceOpts{ttl: 3 * time.Second, wrapStore: func(st handlers.PresenceStore) handlers.PresenceStore {
		return &lostJoinReply{PresenceStore: st}
	}})
	room := uuid.New()
	c := dialWS(t, s, room, uuid.New())
	c.waitOnline(t, 5*time.Second, 1)
	eventually(t, 5*time.Second, "connected recorded", func() bool { return s.rec.count(presencestats.EventConnected, "") == 1 })
	if ev := s.rec.events()[0]; ev.OnlineDelta != 1 || ev.OnlineAfter != 1 {
		t.Fatalf("connected event %+v: want the applied join's delta +1 and count 1", ev)
	}
}
