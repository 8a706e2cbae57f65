package storage_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"presencestats"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

// Redis replication is asynchronous: on a Redis Cluster, a change a master acknowledged but had
// not yet sent to its replica when it died is missing on the replica that takes over. The store
// with WaitReplicas (REDIS_WAIT_REPLICAS) does not report such a change as done: WAIT finds no
// replica with it, and the join comes back as an unknown outcome (context.DeadlineExceeded), which
// the hub handles as a lost reply (it joins again, and records the connection if it is missing).
// The replica is frozen (SIGSTOP) and its link cut to hold replication back for certain.
func TestRedisClusterUnreplicatedChange(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	ctx := context.Background()
	cluster := storagetest.StartRedisCluster(t, 3, 1, 2*time.Second)
	prefix := storagetest.KeyPrefix(t)
	open := func(wait int) *storage.Presence {
		rdb, err := storage.OpenRedis(ctx, cluster.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Close() })
		return storage.NewPresence(rdb, storage.PresenceOptions{KeyPrefix: prefix, TTL: time.Minute, WaitReplicas: wait, WaitTimeout: 300 * time.Millisecond})
	}
	plain, waiting := open(0), open(1)
	room := uuid.New()
	join := func(p *storage.Presence) error {
		_, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: uuid.New(), ID: uuid.New()}, true)
		return err
	}
	master := cluster.MasterOfKey(t, storage.RoomHashTag(room))
	replica := cluster.ReplicaOf(t, master)
	if replica == nil {
		t.Fatalf("master %s has no replica", master.Addr())
	}
	if err := join(waiting); err != nil {
		t.Fatalf("join confirmed by the replica: %v", err)
	}
	// Frozen, the replica cannot reconnect; its link cut, what the master writes from now on
	// reaches no replica (what was sent before may still sit in the replica's socket). The joins
	// come at once: a replica silent for cluster-node-timeout is marked failed, and WAIT no longer
	// waits for a failed replica.
	replica.Pause()
	if out := cluster.Do(master, "client", "kill", "type", "replica"); out == "" {
		t.Fatal("CLIENT KILL TYPE replica failed")
	}
	err := join(waiting)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("join with WAIT while the replica is frozen: %v, want an unknown outcome", err)
	}
	if err := join(plain); err != nil {
		t.Fatalf("join without WAIT: %v", err)
	}
	master.Kill()
	replica.Resume()
	deadline := time.Now().Add(30 * time.Second)
	for cluster.MasterOfKey(t, storage.RoomHashTag(room)) != replica {
		if time.Now().After(deadline) {
			t.Fatal("the replica did not take over within 30 s")
		}
		time.Sleep(50 * time.Millisecond) // polling the cluster's view
	}
	var st []presencestats.OnlineStats
	waitUntil(t, 30*time.Second, "counts from the new master", func() bool {
		st, err = plain.Counts(ctx, room)
		return err == nil
	})
	// Only the confirmed join survived: the acknowledged one without WAIT is lost, as is the
	// one WAIT did not confirm (its caller was told the outcome is unknown).
	if st[0].SessionCount != 1 {
		t.Fatalf("sessions after the failover: %d, want 1 (the one a replica confirmed)", st[0].SessionCount)
	}
}

// REDIS_WAIT_REPLICAS on a Redis without replica (or a master left without one after a
// failover) waits for none: changes go on, nothing is reported unknown.
func TestPresenceWaitWithoutReplicas(t *testing.T) {
	ctx := context.Background()
	rdb, err := storage.OpenRedis(ctx, storagetest.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	p := storage.NewPresence(rdb, storage.PresenceOptions{KeyPrefix: storagetest.KeyPrefix(t), TTL: time.Minute, WaitReplicas: 1})
	room := uuid.New()
	for range 3 {
		if _, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: uuid.New(), ID: uuid.New()}, true); err != nil {
			t.Fatalf("join with WAIT and no replica: %v", err)
		}
	}
}

// A manual failover (CLUSTER FAILOVER on a replica: the master steps down, nothing is lost) moves
// a shard channel's slot to another node, which drops the subscription there (SUNSUBSCRIBE):
// Listen reports the loss, subscribes again at the new master, reports it back, and the room's
// updates arrive again.
func TestRedisClusterListenFollowsSlot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cluster := storagetest.StartRedisCluster(t, 3, 1, 2*time.Second)
	rdb, err := storage.OpenRedis(ctx, cluster.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	p := storage.NewPresence(rdb, storage.PresenceOptions{KeyPrefix: storagetest.KeyPrefix(t), TTL: time.Minute})
	room := uuid.New()
	online := make(chan int64, 100)
	states := make(chan bool, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.Listen(ctx, func(s presencestats.OnlineStats) {
			if s.RoomID == room {
				online <- s.OnlineCount
			}
		}, func(uuid.UUID, []byte) {}, func(up bool) { states <- up })
	}()
	waitState := func(want bool) {
		t.Helper()
		select {
		case got := <-states:
			if got != want {
				t.Fatalf("subscription state %v, want %v", got, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no subscription state %v within 30 s", want)
		}
	}
	joinAndHear := func(want int64) {
		t.Helper()
		if _, _, err := p.Join(ctx, presencestats.Session{RoomID: room, UserID: uuid.New(), ID: uuid.New()}, true); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-online:
			if got != want {
				t.Fatalf("update: online %d, want %d", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the room's update did not arrive")
		}
	}
	waitState(true)
	joinAndHear(1)
	master := cluster.MasterOfKey(t, storage.RoomHashTag(room))
	replica := cluster.ReplicaOf(t, master)
	if out := cluster.Do(replica, "cluster", "failover"); !strings.Contains(out, "OK") {
		t.Fatalf("CLUSTER FAILOVER: %q", out)
	}
	waitState(false)
	waitState(true)
	if m := cluster.MasterOfKey(t, storage.RoomHashTag(room)); m != replica {
		t.Fatalf("the room's master is %v, want the promoted replica %s", m, replica.Addr())
	}
	waitUntil(t, 30*time.Second, "a join on the new master", func() bool {
		_, _, err := p.Join(ctx, presencestats.Session{RoomID: uuid.New(), UserID: uuid.New(), ID: uuid.New()}, false)
		return err == nil
	})
	joinAndHear(2)
	cancel()
	<-done
}
