package storage

// Presence changes confirmed by replicas (WAIT), for REDIS_WAIT_REPLICAS.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// replicaCache holds how many replicas each master has, asked at most once a second per master:
// WAIT asks for no more than that, so a master without replica (one that took over from a dead
// master, until that one comes back as its replica) is not waited on in vain. On a cluster these
// are the master's replicas in the cluster's configuration that are not failed (a replica
// disconnected for a moment is still waited for: it could win the next election without the
// change); on one server, its connected replicas (ROLE).
type replicaCache struct {
	mu sync.Mutex
	m  map[string]replicaCount
}

type replicaCount struct {
	n  int
	at time.Time
}

// of returns the replicas of node (want on an error: WAIT decides).
func (rc *replicaCache) of(ctx context.Context, node *redis.Client, cluster bool, want int) int {
	addr := node.Options().Addr
	rc.mu.Lock()
	e, ok := rc.m[addr]
	rc.mu.Unlock()
	if ok && time.Since(e.at) < time.Second {
		return e.n
	}
	n := want
	if cluster {
		if id, err := node.Do(ctx, "CLUSTER", "MYID").Text(); err == nil {
			if lines, err := node.Do(ctx, "CLUSTER", "REPLICAS", id).StringSlice(); err == nil {
				n = 0
				for _, line := range lines {
					if f := strings.Fields(line); len(f) > 2 && !slices.Contains(strings.Split(f[2], ","), "fail") {
						n++
					}
				}
			}
		}
	} else if role, err := node.Do(ctx, "ROLE").Slice(); err == nil && len(role) >= 3 && role[0] == "master" {
		// ROLE on a master: ["master", offset, [[ip, port, offset], ...]].
		if list, ok := role[2].([]any); ok {
			n = len(list)
		}
	}
	rc.mu.Lock()
	if rc.m == nil {
		rc.m = map[string]replicaCount{}
	}
	rc.m[addr] = replicaCount{n: n, at: time.Now()}
	rc.mu.Unlock()
	return n
}

// evalAndWait runs the script and WAIT on one connection to the master of keys (one round trip):
// WAIT counts the replicas that have every write of that connection so far. Fewer than asked
// within the timeout: the change may be lost if the master dies now, so its outcome is unknown.
func (p *Presence) evalAndWait(ctx context.Context, s *redis.Script, keys []string, args []any) (*redis.Cmd, error) {
	var node *redis.Client
	switch c := p.rdb.(type) {
	case *redis.ClusterClient:
		m, err := c.MasterForKey(ctx, keys[0])
		if err != nil {
			return nil, err
		}
		node = m
	case *redis.Client:
		node = c
	default:
		return s.EvalSha(ctx, p.rdb, keys, args...), nil
	}
	_, cluster := p.rdb.(*redis.ClusterClient)
	want := min(p.waitN, p.replicas.of(ctx, node, cluster, p.waitN))
	if want == 0 {
		return s.EvalSha(ctx, node, keys, args...), nil
	}
	pipe := node.Pipeline()
	cmd := s.EvalSha(ctx, pipe, keys, args...)
	wait := pipe.Do(ctx, "WAIT", want, p.waitMS)
	_, _ = pipe.Exec(ctx)
	if err := cmd.Err(); err != nil {
		if c, ok := p.rdb.(*redis.ClusterClient); ok && (redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK")) {
			c.ReloadState(ctx) // the slot moved (a failover): the next call finds its new master
		}
		return cmd, nil
	}
	if n, err := wait.Int(); err != nil || n < want {
		return nil, fmt.Errorf("%d of %d replicas confirmed the change within %dms (WAIT: %v): %w",
			n, want, p.waitMS, err, context.DeadlineExceeded)
	}
	return cmd, nil
}
