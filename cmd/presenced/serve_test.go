package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"presencestats/storage/storagetest"
)

// startServer runs `presenced serve` in-process against the given services and returns its base
// URL; the server is shut down (and must stop cleanly) when the test ends.
func startServer(t *testing.T, extra map[string]string) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", storagetest.FreePort(t))
	vars := map[string]string{
		"JWT_SECRET": testSecret,
		"HTTP_ADDR":  addr,
		"SPOOL_DIR":  t.TempDir(),
		"LOG_LEVEL":  "warn",
	}
	for k, v := range extra {
		vars[k] = v
	}
	cfg, err := LoadConfig(env(vars))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() { done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))) }()
	base := "http://" + addr
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("serve did not stop within 30s")
		}
	})
	waitFor(t, 30*time.Second, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return base
}

type readyBody struct {
	Status       string `json:"status"`
	Dependencies map[string]struct {
		Status string `json:"status"`
	} `json:"dependencies"`
}

// waitReady waits until the instance at base answers /readyz with 200 (a started instance is ready
// once its dependencies answer and it hears the rooms' channels) and returns that answer.
func waitReady(t *testing.T, base string) readyBody {
	t.Helper()
	var body readyBody
	waitFor(t, 10*time.Second, func() bool {
		var code int
		code, body = getReady(t, base)
		return code == http.StatusOK
	})
	return body
}

func getReady(t *testing.T, base string) (int, readyBody) {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body readyBody
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("readyz body %q: %v", b, err)
	}
	return resp.StatusCode, body
}

func TestReadyzFollowsRedis(t *testing.T) {
	redis := storagetest.StartRedis(t)
	dsn := storagetest.FreshDatabase(t)
	storagetest.Connect(t, dsn, true)
	base := startServer(t, map[string]string{"REDIS_URL": redis.URL(), "DATABASE_URL": dsn})

	body := waitReady(t, base)
	if body.Dependencies["redis"].Status != "up" || body.Dependencies["database"].Status != "up" ||
		body.Dependencies["channels"].Status != "up" {
		t.Fatalf("with everything up: %+v", body)
	}

	redis.Stop()
	var code int
	var last readyBody
	// The ping fails at once; the subscription notices its connection's end a moment later.
	waitFor(t, 10*time.Second, func() bool {
		code, last = getReady(t, base)
		return code == http.StatusServiceUnavailable && last.Dependencies["redis"].Status == "down" &&
			last.Dependencies["channels"].Status == "down"
	})
	if got := last.Dependencies["database"].Status; got != "up" {
		t.Errorf("database while Redis is down: %q, want up", got)
	}

	redis.Start()
	waitFor(t, 10*time.Second, func() bool {
		code, last = getReady(t, base)
		return code == http.StatusOK
	})
	if got := last.Dependencies["channels"].Status; got != "up" {
		t.Errorf("channels once Redis is back and /readyz is 200: %q, want up", got)
	}

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte("presence_http_requests_total")) {
		t.Fatalf("/metrics: %d, no presence_http_requests_total", resp.StatusCode)
	}
}

func TestReadyzFollowsDatabase(t *testing.T) {
	ts := storagetest.StartTimescale(t, 0)
	storagetest.Connect(t, ts.DSN(), true)
	base := startServer(t, map[string]string{"REDIS_URL": storagetest.RedisURL(t), "DATABASE_URL": ts.DSN()})
	waitReady(t, base) // with everything up
	ts.Stop()
	waitFor(t, 10*time.Second, func() bool {
		code, body := getReady(t, base)
		return code == http.StatusServiceUnavailable && body.Dependencies["database"].Status == "down"
	})
}

// TestShutdownWithHungDatabase: with the database hanging, a graceful shutdown still ends within
// SHUTDOWN_TIMEOUT (the outbox's write in flight is cancelled at its deadline); closing the
// connections to a database that answers nothing used to add several seconds on top.
func TestShutdownWithHungDatabase(t *testing.T) {
	ts := storagetest.StartTimescale(t, 0)
	storagetest.Connect(t, ts.DSN(), true)
	addr := fmt.Sprintf("127.0.0.1:%d", storagetest.FreePort(t))
	cfg, err := LoadConfig(env(map[string]string{
		"JWT_SECRET": testSecret, "HTTP_ADDR": addr, "SPOOL_DIR": t.TempDir(), "LOG_LEVEL": "warn",
		"REDIS_URL": storagetest.RedisURL(t), "DATABASE_URL": ts.DSN(), "SHUTDOWN_TIMEOUT": "2s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() { done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))) }()
	base := "http://" + addr
	waitFor(t, 30*time.Second, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	ts.Pause()
	defer ts.Resume()                                                        // so that Stop at cleanup finds it running
	if code, _ := getReady(t, base); code != http.StatusServiceUnavailable { // leaves a query hanging
		t.Fatalf("readyz with the database hung: %d, want 503", code)
	}
	start := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop within 20 s")
	}
	// SHUTDOWN_TIMEOUT 2 s, and 5 s of slack for a loaded machine (make test runs the packages
	// side by side); it took 15 s before.
	if took := time.Since(start); took > 7*time.Second {
		t.Fatalf("shutdown took %v with SHUTDOWN_TIMEOUT 2s", took.Round(time.Millisecond))
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// METRICS_ADDR: /metrics is served there only, with the limits' metrics, and its listener is
// shut down with the rest; the main port answers 404 for it. Without METRICS_ADDR it stays on the
// main port.
func TestMetricsAddr(t *testing.T) {
	dsn := storagetest.SharedDatabase(t).Config().ConnString()
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", storagetest.FreePort(t))
	t.Cleanup(func() { // runs after the server's own cleanup has stopped it
		if c, err := net.DialTimeout("tcp", metricsAddr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after the shutdown", metricsAddr)
		}
	})
	base := startServer(t, map[string]string{
		"REDIS_URL": storagetest.RedisURL(t), "DATABASE_URL": dsn, "METRICS_ADDR": metricsAddr,
		"MAX_CONNECTIONS": "1234",
	})
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(base + "/metrics"); code != http.StatusNotFound {
		t.Errorf("main port /metrics: %d, want 404 with METRICS_ADDR set", code)
	}
	code, body := get("http://" + metricsAddr + "/metrics")
	if code != http.StatusOK {
		t.Fatalf("METRICS_ADDR /metrics: %d", code)
	}
	for _, want := range []string{
		`presence_limit{setting="MAX_CONNECTIONS"} 1234`, `presence_ws_refused_total{cause="user_limit"} 0`,
		`presence_report_limit{setting="REPORT_CONCURRENCY"} 4`, `presence_report_limit{setting="REPORT_TIMEOUT"} 30`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if code, _ := get("http://" + metricsAddr + "/readyz"); code != http.StatusNotFound {
		t.Errorf("METRICS_ADDR serves /readyz too: %d", code)
	}

	plain := startServer(t, map[string]string{"REDIS_URL": storagetest.RedisURL(t), "DATABASE_URL": dsn})
	if code, body := get(plain + "/metrics"); code != http.StatusOK || !strings.Contains(body, "presence_ws_refused_total") {
		t.Errorf("without METRICS_ADDR, main port /metrics: %d", code)
	}
}
