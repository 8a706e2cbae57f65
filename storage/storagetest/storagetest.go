// Package storagetest starts the real services tests need: a throw-away WebAssembly TimescaleDB
// (dev/tsdb) on a free port, and Redis servers. Nothing here is a mock.
//
// Redis: tests share the throw-away server that `make test` starts (TEST_REDIS_URL) and isolate
// themselves with a unique key prefix; a test that stops Redis starts its own with StartRedis.
// TimescaleDB: every call of StartTimescale starts a fresh in-memory instance (a few seconds);
// a package shares one with Shared... helpers when its tests only add data under fresh room ids.
// With TEST_DATABASE_URL set (an operator's real server, see server.go), FreshDatabase,
// NewDatabase and SharedDatabase make fresh databases there instead; StartTimescale (the tests
// that stop or freeze their database) stays local.
package storagetest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"presencestats/storage"
)

// RepoRoot returns the directory holding go.mod.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// Timescale is a running throw-away TimescaleDB instance.
type Timescale struct {
	Port int
	cmd  *exec.Cmd
	done chan struct{}
}

// DSN returns a pgx DSN for the instance, sized for its single session.
func (ts *Timescale) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&pool_max_conns=1&default_query_exec_mode=cache_describe", ts.Port)
}

// Stop kills the instance (as a crash would) and waits for it to exit.
func (ts *Timescale) Stop() {
	_ = ts.cmd.Process.Signal(syscall.SIGKILL)
	<-ts.done
}

// Pause freezes the server (SIGSTOP): it keeps its connections and answers nothing, as a hung
// database does. Resume (SIGCONT) lets it go on.
func (ts *Timescale) Pause()  { _ = ts.cmd.Process.Signal(syscall.SIGSTOP) }
func (ts *Timescale) Resume() { _ = ts.cmd.Process.Signal(syscall.SIGCONT) }

// StartTimescale starts a fresh in-memory TimescaleDB on a free port (or on port, when not 0)
// and stops it when the test ends.
func StartTimescale(tb testing.TB, port int) *Timescale {
	tb.Helper()
	ts, err := startTimescale(RepoRoot(tb), port)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(ts.Stop)
	return ts
}

func startTimescale(root string, port int) (*Timescale, error) {
	script := filepath.Join(root, "dev", "tsdb", "server.mjs")
	if _, err := os.Stat(filepath.Join(root, "dev", "tsdb", "node_modules")); err != nil {
		return nil, fmt.Errorf("dev/tsdb/node_modules is missing: run `make test` (it installs the local TimescaleDB)")
	}
	cmd := exec.Command("node", script, "--port", strconv.Itoa(port))
	// The instance must not outlive the test binary, even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &lockedWriter{w: &stderr}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start TimescaleDB: %w", err)
	}
	ts := &Timescale{cmd: cmd, done: make(chan struct{})}
	ready := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var msg struct {
				Ready bool `json:"ready"`
				Port  int  `json:"port"`
			}
			if json.Unmarshal(sc.Bytes(), &msg) == nil && msg.Ready {
				ready <- msg.Port
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(ts.done) }()
	select {
	case ts.Port = <-ready:
		return ts, nil
	case <-ts.done:
		return nil, fmt.Errorf("TimescaleDB exited before it was ready: %s", stderr.String())
	case <-time.After(3 * time.Minute): // a start takes seconds; minutes on a loaded shared box
		ts.Stop()
		return nil, fmt.Errorf("TimescaleDB not ready after 3 minutes: %s", stderr.String())
	}
}

// FreshDatabase returns the DSN of a database of the test's own, empty (nothing migrated): on
// the operator's server (TEST_DATABASE_URL) a fresh CREATE DATABASE, dropped at cleanup; else a
// fresh local instance, stopped at cleanup. A test that stops or freezes its database uses
// StartTimescale instead, which is always local.
func FreshDatabase(tb testing.TB) string {
	tb.Helper()
	server := ServerURL()
	if server == "" {
		return StartTimescale(tb, 0).DSN()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn, drop, err := createDatabase(ctx, server)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := drop(ctx); err != nil {
			tb.Error(err)
		}
	})
	return dsn
}

// NewDatabase returns a pool on a fresh database of the test's own (FreshDatabase), migrated,
// its jobs paused.
func NewDatabase(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	return Connect(tb, FreshDatabase(tb), true)
}

// Connect opens a pool on dsn (closed at cleanup). With migrate, it applies every migration
// first and pauses the schema's jobs (a no-op on the local engine, which has no scheduler).
func Connect(tb testing.TB, dsn string, migrate bool) *pgxpool.Pool {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pool, err := storage.OpenPool(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	if migrate {
		if err := migrateAndPause(ctx, pool); err != nil {
			tb.Fatal(err)
		}
	}
	return pool
}

func migrateAndPause(ctx context.Context, pool *pgxpool.Pool) error {
	// As `presenced migrate up` does: a server that cannot hold the schema says so in one line.
	if err := storage.Preflight(ctx, pool); err != nil {
		return fmt.Errorf("preflight: %w", err)
	}
	if err := storage.MigrateUp(ctx, pool, nil); err != nil {
		return err
	}
	return pauseJobs(ctx, pool)
}

var (
	sharedOnce sync.Once
	sharedPool *pgxpool.Pool
	sharedDrop func(context.Context) error
	sharedErr  error
	mainRuns   bool // Main runs the package's tests: it drops a shared server database at the end
)

// SharedDatabase returns one migrated database for the whole test binary, made on first use.
// Tests using it must isolate their data (fresh room and user ids) and must not change the schema.
// Locally it is an instance that dies with the test binary (Pdeathsig); on the operator's server
// a fresh database, which Main drops when the package's tests end (a package calling
// SharedDatabase must run its tests through Main there).
func SharedDatabase(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	root := RepoRoot(tb)
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		var dsn string
		if server := ServerURL(); server != "" {
			if !mainRuns {
				sharedErr = fmt.Errorf("on a server (%s), a package using SharedDatabase needs func TestMain(m *testing.M) { os.Exit(storagetest.Main(m)) }, or its database is never dropped", ServerEnv)
				return
			}
			dsn, sharedDrop, sharedErr = createDatabase(ctx, server)
		} else {
			var ts *Timescale
			ts, sharedErr = startTimescale(root, 0)
			if sharedErr == nil {
				dsn = ts.DSN()
			}
		}
		if sharedErr != nil {
			return
		}
		pool, err := storage.OpenPool(ctx, dsn)
		if err == nil {
			err = migrateAndPause(ctx, pool)
		}
		if err != nil {
			sharedErr = err
			return
		}
		sharedPool = pool
	})
	if sharedErr != nil {
		tb.Fatalf("shared database: %v", sharedErr)
	}
	return sharedPool
}

// Main runs a package's tests (call it from TestMain) and then closes and drops the database
// SharedDatabase made on the operator's server, if any. It returns the exit code for os.Exit.
func Main(m *testing.M) int {
	mainRuns = true
	code := m.Run()
	if sharedPool != nil {
		sharedPool.Close()
	}
	if sharedDrop != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := sharedDrop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "storagetest:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// RedisURL returns the URL of the shared throw-away Redis that `make test` starts
// (TEST_REDIS_URL), or starts one for this test when it is unset.
func RedisURL(tb testing.TB) string {
	tb.Helper()
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return StartRedis(tb).URL()
}

// KeyPrefix returns a Redis key prefix unique to this test.
func KeyPrefix(tb testing.TB) string {
	return "test:" + uuid.NewString()[:8] + ":"
}

// Redis is a redis-server process owned by one test, which may stop and restart it.
type Redis struct {
	Port int
	tb   testing.TB
	dir  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// URL returns the server's redis:// URL.
func (r *Redis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.Port) }

// StartRedis starts a private redis-server (no persistence) on a free port, stopped at cleanup.
func StartRedis(tb testing.TB) *Redis {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatal("redis-server not found: run `make test` (it installs Redis)")
	}
	r := &Redis{Port: FreePort(tb), tb: tb, dir: tb.TempDir()}
	r.Start()
	tb.Cleanup(r.Stop)
	return r
}

// Start (re)starts the server on its port and waits until it answers.
func (r *Redis) Start() {
	r.tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		r.tb.Fatalf("start redis-server: %v", err)
	}
	r.cmd, r.done = cmd, make(chan struct{})
	done := r.done
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.Port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.tb.Fatalf("redis-server on port %d did not answer", r.Port)
}

// Stop kills the server (its data is lost, as in a crash without persistence).
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
	r.cmd = nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// Engine names the database pool talks to, as every published figure must: "local WebAssembly
// TimescaleDB 2.23.0-dev (PostgreSQL 17.5)" when version() says it was compiled by Emscripten
// (dev/tsdb), "server TimescaleDB 2.28.3 (PostgreSQL 15.18)" otherwise.
func Engine(ctx context.Context, pool *pgxpool.Pool) string {
	var version, ext string
	err := pool.QueryRow(ctx, `SELECT version(),
		coalesce((SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'), 'missing')`).Scan(&version, &ext)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	kind := "server"
	if strings.Contains(strings.ToLower(version), "emscripten") {
		kind = "local WebAssembly"
	}
	pg := version
	if f := strings.Fields(version); len(f) >= 2 {
		pg = f[0] + " " + f[1]
	}
	return fmt.Sprintf("%s TimescaleDB %s (%s)", kind, ext, pg)
}
