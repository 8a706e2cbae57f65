package storage_test

import (
	"context"
	"errors"
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
func TestPresenceClusterUnreplicatedChange(t *testing.T) {
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
