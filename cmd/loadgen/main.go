// Command loadgen measures real-time presence end to end against a running presenced on this
// machine: it opens WebSocket clients in rooms, one join at a time per room (rooms in parallel),
// and for every join measures the time until every member of the room has the new online_count.
// It reports p50/p99 of that, and the server's memory per open connection from its /metrics.
//
//	JWT_SECRET=... go run ./cmd/loadgen -url http://127.0.0.1:8080 -clients 2000 -rooms 20
//
// It only talks to loopback addresses, opens at most 20,000 connections and stops at -timeout.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"presencestats/handlers"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

type config struct {
	base    string
	secret  string
	clients int
	rooms   int
	timeout time.Duration
	joinMax time.Duration
}

func run() error {
	var c config
	flag.StringVar(&c.base, "url", "http://127.0.0.1:8080", "presenced base URL (loopback only)")
	flag.StringVar(&c.secret, "secret", os.Getenv("JWT_SECRET"), "the server's JWT_SECRET (default: $JWT_SECRET)")
	flag.IntVar(&c.clients, "clients", 2000, "WebSocket clients in total")
	flag.IntVar(&c.rooms, "rooms", 20, "rooms the clients are spread over")
	flag.DurationVar(&c.timeout, "timeout", 3*time.Minute, "stop after this long")
	flag.DurationVar(&c.joinMax, "join-timeout", 5*time.Second, "a join whose count is not seen by all within this fails the run")
	flag.Parse()
	u, err := url.Parse(c.base)
	if err != nil {
		return fmt.Errorf("parse -url: %w", err)
	}
	if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-url must be a loopback address, got %q", u.Hostname())
	}
	if c.clients < 1 || c.clients > 20000 || c.rooms < 1 || c.rooms > c.clients {
		return errors.New("need 1 <= -rooms <= -clients <= 20000")
	}
	if c.secret == "" {
		return errors.New("set -secret or JWT_SECRET to the server's secret")
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()

	before, err := liveHeap(ctx, c.base)
	if err != nil {
		return err
	}
	auth := handlers.NewTokenAuthority(c.secret)
	start := time.Now()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		members   []*member
		wg        sync.WaitGroup
		firstErr  error
	)
	for r := range c.rooms {
		n := c.clients / c.rooms
		if r < c.clients%c.rooms {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			room := &roomState{id: uuid.New()}
			room.cond = sync.NewCond(&room.mu)
			lat, ms, err := fillRoom(ctx, c, auth, room, n)
			mu.Lock()
			defer mu.Unlock()
			latencies = append(latencies, lat...)
			members = append(members, ms...)
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	ramp := time.Since(start)
	defer func() {
		for _, m := range members {
			m.conn.Close()
		}
	}()
	if firstErr != nil {
		return firstErr
	}
	after, err := liveHeap(ctx, c.base)
	if err != nil {
		return err
	}
	slices.Sort(latencies)
	pct := func(p float64) time.Duration { return latencies[min(len(latencies)-1, int(float64(len(latencies))*p))] }
	n := float64(len(members))
	fmt.Printf("clients %d in %d rooms, ramp %s\n", len(members), c.rooms, ramp.Round(time.Millisecond))
	fmt.Printf("join -> every member has the count: p50 %s  p90 %s  p99 %s  max %s  (%d joins)\n",
		pct(0.50).Round(time.Microsecond), pct(0.90).Round(time.Microsecond), pct(0.99).Round(time.Microsecond),
		latencies[len(latencies)-1].Round(time.Microsecond), len(latencies))
	fmt.Printf("server presence_ws_connections %.0f\n", after["presence_ws_connections"])
	heap := after["live_heap"] - before["live_heap"]
	stack := after["go_memstats_stack_inuse_bytes"] - before["go_memstats_stack_inuse_bytes"]
	rss := after["process_resident_memory_bytes"] - before["process_resident_memory_bytes"]
	fmt.Printf("server memory per connection: live heap + stacks %.1f KiB (live heap %.1f, stacks %.1f); RSS %.1f KiB (includes garbage not yet collected)\n",
		(heap+stack)/n/1024, heap/n/1024, stack/n/1024, rss/n/1024)
	return nil
}

type roomState struct {
	id      uuid.UUID
	mu      sync.Mutex
	cond    *sync.Cond
	members []*member
}

type member struct {
	conn *websocket.Conn
	max  int64 // highest online_count seen (guarded by the room's mu)
}

// fillRoom joins n clients to room one after the other; for each join it waits until every
// member has seen the new count and records how long that took from the dial.
func fillRoom(ctx context.Context, c config, auth *handlers.TokenAuthority, room *roomState, n int) ([]time.Duration, []*member, error) {
	wsBase := "ws" + strings.TrimPrefix(c.base, "http") + "/ws/rooms/" + room.id.String() + "?access_token="
	var lats []time.Duration
	for k := 1; k <= n; k++ {
		if ctx.Err() != nil {
			return lats, room.members, ctx.Err()
		}
		tok, err := auth.Mint(uuid.New(), handlers.RoleUser, time.Hour)
		if err != nil {
			return lats, room.members, err
		}
		t0 := time.Now()
		conn, _, err := websocket.DefaultDialer.DialContext(ctx, wsBase+tok, nil)
		if err != nil {
			return lats, room.members, fmt.Errorf("dial (join %d of room %s): %w", k, room.id, err)
		}
		m := &member{conn: conn}
		room.mu.Lock()
		room.members = append(room.members, m)
		room.mu.Unlock()
		go read(room, m)
		want := int64(k)
		deadline := time.AfterFunc(c.joinMax, func() { room.mu.Lock(); room.cond.Broadcast(); room.mu.Unlock() })
		room.mu.Lock()
		for !allSeen(room, want) && time.Since(t0) < c.joinMax {
			room.cond.Wait()
		}
		ok := allSeen(room, want)
		room.mu.Unlock()
		deadline.Stop()
		if !ok {
			return lats, room.members, fmt.Errorf("room %s: not every member saw online_count %d within %s", room.id, want, c.joinMax)
		}
		lats = append(lats, time.Since(t0))
	}
	return lats, room.members, nil
}

func allSeen(room *roomState, want int64) bool {
	for _, m := range room.members {
		if m.max < want {
			return false
		}
	}
	return true
}

func read(room *roomState, m *member) {
	for {
		_, b, err := m.conn.ReadMessage()
		if err != nil {
			return
		}
		var f struct {
			Type string `json:"type"`
			Data struct {
				OnlineCount int64 `json:"online_count"`
			} `json:"data"`
		}
		if json.Unmarshal(b, &f) != nil || f.Type != handlers.TypeOnlineStats {
			continue
		}
		room.mu.Lock()
		if f.Data.OnlineCount > m.max {
			m.max = f.Data.OnlineCount
			room.cond.Broadcast()
		}
		room.mu.Unlock()
	}
}

// liveHeap scrapes /metrics right after the second garbage collection of the server, which it provokes
// with cheap REST requests (each allocates a little) until go_memstats_last_gc_time_seconds
// moves; the live heap is then next_gc / (1 + GOGC/100) = next_gc / 2 at the default GOGC.
// heap_inuse alone would count the garbage of the ramp.
func liveHeap(ctx context.Context, base string) (map[string]float64, error) {
	m, err := scrape(ctx, base)
	if err != nil {
		return nil, err
	}
	last := m["go_memstats_last_gc_time_seconds"]
	gcs := 0
	client := &http.Client{}
	for i := 0; i < 200000; i++ {
		if i%500 == 499 {
			if m, err = scrape(ctx, base); err != nil {
				return nil, err
			}
			if m["go_memstats_last_gc_time_seconds"] != last {
				// Two collections: the first after the ramp may still find its garbage, and
				// each one shrinks goroutine stacks that use less than a quarter of theirs.
				if gcs++; gcs == 2 {
					m["live_heap"] = m["go_memstats_next_gc_bytes"] / 2
					return m, nil
				}
				last = m["go_memstats_last_gc_time_seconds"]
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return nil, errors.New("no garbage collection of the server observed")
}

// scrape reads the numeric samples without labels of the server's /metrics.
func scrape(ctx context.Context, base string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read %s/metrics: %w", base, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.Contains(line, "{") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = f
		}
	}
	return out, sc.Err()
}
