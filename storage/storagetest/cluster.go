package storagetest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// WithRedisOptions appends go-redis URL options ("max_retries=-1&dial_timeout=200ms") to a
// Redis URL, single or cluster (storage.ParseRedisURL).
func WithRedisOptions(url, options string) string {
	if strings.Contains(url, "?") {
		return url + "&" + options
	}
	return url + "?" + options
}

// RedisCluster is a throw-away Redis Cluster owned by one test: masters with replicas, each a
// redis-server on free loopback ports, no persistence, killed at cleanup (and with the test
// binary).
type RedisCluster struct {
	Nodes []*ClusterNode
	tb    testing.TB
}

// ClusterNode is one redis-server of a RedisCluster.
type ClusterNode struct {
	Port int
	cmd  *exec.Cmd
	done chan struct{}
}

// Addr returns the node's host:port.
func (n *ClusterNode) Addr() string { return fmt.Sprintf("127.0.0.1:%d", n.Port) }

// running reports whether the node's process has not exited.
func (n *ClusterNode) running() bool {
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// firstRunning returns the first node whose process runs, nil when none does.
func (c *RedisCluster) firstRunning() *ClusterNode {
	for _, n := range c.Nodes {
		if n.running() {
			return n
		}
	}
	return nil
}

// Kill SIGKILLs the node (a crash: what it had not replicated is lost) and waits for its exit.
func (n *ClusterNode) Kill() {
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// Pause freezes the node (SIGSTOP): a replica paused stops replicating; Resume (SIGCONT).
func (n *ClusterNode) Pause()  { _ = n.cmd.Process.Signal(syscall.SIGSTOP) }
func (n *ClusterNode) Resume() { _ = n.cmd.Process.Signal(syscall.SIGCONT) }

// URL returns the cluster's REDIS_URL: every node's address, comma-separated.
func (c *RedisCluster) URL() string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return "redis://" + strings.Join(addrs, ",")
}

// Node returns the node listening on addr (host:port), or nil.
func (c *RedisCluster) Node(addr string) *ClusterNode {
	for _, n := range c.Nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// StartRedisCluster starts masters x (1 + replicas) redis-server processes in cluster mode with
// cluster-node-timeout nodeTimeout (a failed master is replaced after about that long), joins
// them with `redis-cli --cluster create`, and waits until every node sees the cluster ok and
// every replica is in sync with its master.
func StartRedisCluster(tb testing.TB, masters, replicas int, nodeTimeout time.Duration) *RedisCluster {
	tb.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Fatalf("%s not found: run `make test` (it installs Redis)", bin)
		}
	}
	c := &RedisCluster{tb: tb}
	tb.Cleanup(func() {
		for _, n := range c.Nodes {
			n.Kill()
		}
	})
	dir := tb.TempDir()
	var addrs []string
	for i := range masters * (1 + replicas) {
		n := &ClusterNode{Port: FreePort(tb), done: make(chan struct{})}
		nodeDir := filepath.Join(dir, strconv.Itoa(n.Port))
		if err := os.MkdirAll(nodeDir, 0o755); err != nil {
			tb.Fatal(err)
		}
		// The cluster bus port defaults to port + 10000, which may be taken (or past 65535):
		// it gets a free port of its own.
		n.cmd = exec.Command("redis-server", "--port", strconv.Itoa(n.Port), "--bind", "127.0.0.1",
			"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(FreePort(tb)),
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", strconv.FormatInt(nodeTimeout.Milliseconds(), 10),
			"--save", "", "--appendonly", "no", "--dir", nodeDir, "--logfile", filepath.Join(nodeDir, "redis.log"))
		n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := n.cmd.Start(); err != nil {
			tb.Fatalf("start redis-server %d: %v", i, err)
		}
		go func() { _ = n.cmd.Wait(); close(n.done) }()
		c.Nodes = append(c.Nodes, n)
		addrs = append(addrs, n.Addr())
	}
	for _, n := range c.Nodes {
		waitPort(tb, n.Port)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(tb, 60*time.Second)
	return c
}

// WaitHealthy waits until every running node reports cluster_state:ok and every replica's link
// to its master is up.
func (c *RedisCluster) WaitHealthy(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		problem := ""
		for _, n := range c.Nodes {
			if !n.running() {
				continue // killed
			}
			info := c.cli(n, "cluster", "info")
			if !strings.Contains(info, "cluster_state:ok") {
				problem = n.Addr() + ": cluster state not ok"
				break
			}
			repl := c.cli(n, "info", "replication")
			if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				problem = n.Addr() + ": replica not in sync"
				break
			}
		}
		if problem == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("Redis Cluster not healthy after %s: %s", timeout, problem)
		}
		time.Sleep(100 * time.Millisecond) // polling the cluster's state
	}
}

// MasterOf returns the node that masters slot now, as the first running node sees it; nil when
// the slot has none (its master failed and no replica took over yet).
func (c *RedisCluster) MasterOf(tb testing.TB, slot int) *ClusterNode {
	tb.Helper()
	n := c.firstRunning()
	if n == nil {
		return nil
	}
	for _, line := range strings.Split(c.cli(n, "cluster", "nodes"), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
			continue
		}
		for _, r := range f[8:] {
			lo, hi, _ := strings.Cut(r, "-")
			if hi == "" {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 == nil && err2 == nil && a <= slot && slot <= b {
				addr, _, _ := strings.Cut(f[1], "@")
				return c.Node(addr)
			}
		}
	}
	return nil
}

// MasterOfKey returns the node that masters key's slot now (nil: none, see MasterOf).
func (c *RedisCluster) MasterOfKey(tb testing.TB, key string) *ClusterNode {
	tb.Helper()
	n := c.firstRunning()
	if n == nil {
		tb.Fatal("no Redis Cluster node running")
	}
	slot, err := strconv.Atoi(strings.TrimSpace(c.cli(n, "cluster", "keyslot", key)))
	if err != nil {
		tb.Fatalf("cluster keyslot %s: %v", key, err)
	}
	return c.MasterOf(tb, slot)
}

// ReplicaOf returns a replica of master, or nil.
func (c *RedisCluster) ReplicaOf(tb testing.TB, master *ClusterNode) *ClusterNode {
	tb.Helper()
	lines := strings.Split(c.cli(master, "cluster", "nodes"), "\n")
	id := ""
	for _, line := range lines {
		if f := strings.Fields(line); len(f) > 3 && strings.Contains(f[2], "myself") {
			id = f[0]
		}
	}
	for _, line := range lines {
		if f := strings.Fields(line); len(f) > 3 && id != "" && f[3] == id && strings.Contains(f[2], "slave") {
			addr, _, _ := strings.Cut(f[1], "@")
			return c.Node(addr)
		}
	}
	return nil
}

// Do runs a redis-cli command on node n and returns its output ("" on failure).
func (c *RedisCluster) Do(n *ClusterNode, args ...string) string { return c.cli(n, args...) }

func (c *RedisCluster) cli(n *ClusterNode, args ...string) string {
	out, err := exec.Command("redis-cli", append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(n.Port)}, args...)...).Output()
	if err != nil {
		return ""
	}
	return string(bytes.ReplaceAll(out, []byte("\r"), nil))
}

func waitPort(tb testing.TB, port int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return
		}
		time.Sleep(20 * time.Millisecond) // polling the port
	}
	tb.Fatalf("redis-server on port %d did not answer", port)
}
