package storagetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PlainPostgresBin is where Debian 12's postgresql-15 package puts its server binaries: a plain
// PostgreSQL 15, without TimescaleDB (what an operator has before installing it).
const PlainPostgresBin = "/usr/lib/postgresql/15/bin"

// Postgres is a plain PostgreSQL server owned by one test.
type Postgres struct {
	Port int
}

// DSN returns a DSN for database name on the server.
func (p *Postgres) DSN(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, name)
}

// StartPlainPostgres starts Debian's PostgreSQL 15 (no TimescaleDB) in a fresh data directory on
// a free port, stopped at cleanup; it skips the test, in one line, where the binaries are absent.
// PostgreSQL refuses to run as root: under root the server runs as the postgres user.
func StartPlainPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	if _, err := os.Stat(filepath.Join(PlainPostgresBin, "postgres")); err != nil {
		tb.Skipf("no plain PostgreSQL 15 in %s (apt-get install postgresql-15 to run this test)", PlainPostgresBin)
	}
	var cred *syscall.Credential
	dir, err := os.MkdirTemp("", "presence-pg15-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			tb.Skipf("running as root and no postgres user to run PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			tb.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(PlainPostgresBin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}
	p := &Postgres{Port: FreePort(tb)}
	srv := exec.Command(filepath.Join(PlainPostgresBin, "postgres"), "-D", data, "-p", strconv.Itoa(p.Port),
		"-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "shared_buffers=16MB")
	srv.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	logs := &lockedWriter{w: &strings.Builder{}}
	srv.Stdout, srv.Stderr = logs, logs
	if err := srv.Start(); err != nil {
		tb.Fatalf("start PostgreSQL 15: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Wait(); close(done) }()
	tb.Cleanup(func() {
		_ = srv.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = srv.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := pgx.Connect(ctx, p.DSN("postgres"))
		if err == nil {
			c.Close(ctx)
			cancel()
			return p
		}
		cancel()
		select {
		case <-done:
			tb.Fatalf("PostgreSQL 15 exited: %s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("PostgreSQL 15 not answering after 60 s: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
