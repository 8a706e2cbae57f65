package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// OpenRedis parses REDIS_URL (see ParseRedisURL) and returns a client: a plain one for one
// address, a Redis Cluster client for several. It does not wait for the server: the service
// starts, and stays up, while Redis is down (presence degrades, see Presence).
func OpenRedis(ctx context.Context, rawURL string) (redis.UniversalClient, error) {
	single, cluster, err := ParseRedisURL(rawURL)
	if err != nil {
		return nil, err
	}
	if cluster != nil {
		c := redis.NewClusterClient(cluster)
		c.AddHook(layoutReload{c})
		return c, nil
	}
	return redis.NewClient(single), nil
}

// ParseRedisURL reads REDIS_URL. One address, redis://[user:password@]host:port[/db][?options],
// is one Redis server (single is set). Several comma-separated addresses,
// redis://[user:password@]host1:port1,host2:port2,...[?options], name a Redis Cluster (cluster
// is set): they are the seeds the client asks for the cluster's layout (any masters or replicas;
// name at least two, so that one node down does not stop a start), and the client follows the
// cluster's slots from there. A cluster has only database 0: a /db other than /0 is an error.
// The options are go-redis's URL options (dial_timeout=, max_retries=, pool_size=, ...).
func ParseRedisURL(rawURL string) (single *redis.Options, cluster *redis.ClusterOptions, err error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, nil, fmt.Errorf("parse REDIS_URL: want redis://host:port[,host:port...][/db][?options]")
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hosts := "", authority
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		userinfo, hosts = authority[:at+1], authority[at+1:]
	}
	addrs := strings.Split(hosts, ",")
	if len(addrs) == 1 {
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, nil, fmt.Errorf("parse REDIS_URL: %w", err)
		}
		return opt, nil, nil
	}
	for _, a := range addrs {
		if a == "" {
			return nil, nil, fmt.Errorf("parse REDIS_URL: empty address in the cluster list %q", hosts)
		}
	}
	// go-redis reads a cluster URL as its first address plus one addr= option per other address.
	u, err := url.Parse(scheme + "://" + userinfo + addrs[0] + tail)
	if err != nil {
		return nil, nil, fmt.Errorf("parse REDIS_URL: %w", err)
	}
	if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
		return nil, nil, fmt.Errorf("parse REDIS_URL: a Redis Cluster has only database 0, not /%s", p)
	}
	u.Path = ""
	q := u.Query()
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	u.RawQuery = q.Encode()
	opt, err := redis.ParseClusterURL(u.String())
	if err != nil {
		return nil, nil, fmt.Errorf("parse REDIS_URL: %w", err)
	}
	return nil, opt, nil
}

// isCluster says whether rdb is a Redis Cluster client: sharded channels must then be subscribed
// to on the node owning their slot, one slot per SSUBSCRIBE (see Presence.Listen).
func isCluster(rdb redis.UniversalClient) bool {
	_, ok := rdb.(*redis.ClusterClient)
	return ok
}

// layoutReload has a cluster client reload the cluster's layout (which node masters which slot)
// when a command or a pipeline fails on the network or with CLUSTERDOWN: after a failover the
// client would otherwise keep dialing the dead master for pipelines (go-redis reloads the layout
// by itself on MOVED, and on a failed single command, not on a failed pipeline). The reload is
// lazy: at most one runs at a time.
type layoutReload struct{ c *redis.ClusterClient }

func (h layoutReload) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h layoutReload) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, err)
		return err
	}
}

func (h layoutReload) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(ctx, err)
		return err
	}
}

func (h layoutReload) check(ctx context.Context, err error) {
	var ne net.Error
	if err != nil && (errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		redis.HasErrorPrefix(err, "CLUSTERDOWN")) {
		h.c.ReloadState(ctx)
	}
}
