package main

// The parts of make bench: what each runs and the rows it makes of the output. The database
// ones (collector, storage, reports) are in parts_history.go.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// part is one benchmark (or a few run by one command); run returns its rows.
type part struct {
	name string
	run  func(ctx context.Context, r *runner) ([]row, error)
}

func parts(peerCmd string) []part {
	ps := []part{
		{"presence", presencePart},
		{"realtime", realtimePart},
		{"collector", collectorPart},
		{"storage", storagePart},
		{"reports", reportsPart},
		{"loadgen", loadgenPart},
		{"scale", scalePart},
	}
	if peerCmd != "" {
		ps = append(ps, part{"peer", func(ctx context.Context, r *runner) ([]row, error) { return peerPart(ctx, r, peerCmd) }})
	}
	return ps
}

func hasPart(ps []part, name string) bool {
	for _, p := range ps {
		if p.name == name {
			return true
		}
	}
	return false
}

// presencePart: the presence store's Lua join+leave against redis-benchmark on the same Redis,
// in the same run.
func presencePart(ctx context.Context, r *runner) ([]row, error) {
	cmd := "dev/bench/presence-vs-redis-benchmark.sh"
	out, err := r.sh(ctx, "presence", cmd)
	if err != nil {
		return nil, err
	}
	base := regexp.MustCompile(`redis-benchmark join\+leave mix: ([0-9.]+) scripts/s`).FindStringSubmatch(out)
	if base == nil {
		return nil, errors.New("no redis-benchmark figure in the output")
	}
	baseV, _ := strconv.ParseFloat(base[1], 64)
	var rows []row
	// Each "== go test ... REDIS_URL=..." block has its own figures.
	blocks := strings.Split(out, "== go test")
	for _, blk := range blocks[1:] {
		proto := "RESP3 (go-redis default)"
		if strings.Contains(strings.SplitN(blk, "\n", 2)[0], "protocol=2") {
			proto = "RESP2 (?protocol=2)"
		}
		m := regexp.MustCompile(`presence store: ([0-9.]+) scripts/s`).FindStringSubmatch(blk)
		if m == nil {
			return rows, fmt.Errorf("no presence store figure for %s", proto)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		rows = append(rows, row{
			Figure: "Lua join+leave through storage.Presence vs redis-benchmark EVALSHA of the same scripts, 50 clients, same Redis, same run; " + proto,
			Value:  fmt.Sprintf("ratio **%.2f** (%s vs %s scripts/s)", v/baseV, num(v, 0), num(baseV, 0)),
			Target: "ratio ≥ 0.8", Command: cmd, Engine: r.redis + " (throw-away)",
		})
	}
	return rows, nil
}

// realtimePart: the hub's cached count and the REST stats endpoint on loopback.
func realtimePart(ctx context.Context, r *runner) ([]row, error) {
	cmd, res, _, err := r.goBench(ctx, "realtime", "^(BenchmarkCachedStats|BenchmarkRoomStatsREST)$", envOr("BENCH_REALTIME_TIME", "3s"), "./handlers/", "")
	if err != nil {
		return nil, err
	}
	var rows []row
	if ns, err := need(res, "BenchmarkCachedStats", "ns/op"); err == nil {
		allocs := res["BenchmarkCachedStats"].Metrics["allocs/op"]
		rows = append(rows, row{Figure: "cached live count (the hub's in-process cache)", Value: fmt.Sprintf("**%s**/op, %s allocs/op", dur(ns), num(allocs, 0)),
			Target: "µs", Command: cmd + " (BenchmarkCachedStats)", Engine: "in process (" + r.redis + " behind)"})
	} else {
		return rows, err
	}
	p50, err1 := need(res, "BenchmarkRoomStatsREST", "p50-µs")
	p99, err2 := need(res, "BenchmarkRoomStatsREST", "p99-µs")
	if err := errors.Join(err1, err2); err != nil {
		return rows, err
	}
	rows = append(rows, row{Figure: "REST GET /api/rooms/:id/stats, loopback, keep-alive, one at a time",
		Value: fmt.Sprintf("p50 %s, p99 **%s**", dur(p50*1e3), dur(p99*1e3)), Target: "p99 < 1 ms",
		Command: cmd + " (BenchmarkRoomStatsREST)", Engine: "presenced handlers + " + r.redis})
	return rows, nil
}

// loadgenPart: end to end, a throw-away Redis and presenced, then cmd/loadgen's steps scenario
// (LOADGEN_ARGS: its flags), read from its -json result.
func loadgenPart(ctx context.Context, r *runner) ([]row, error) {
	cmd := strings.TrimSpace("dev/bench/loadgen.sh " + os.Getenv("LOADGEN_ARGS"))
	out, err := r.sh(ctx, "loadgen", cmd+" -json")
	if err != nil {
		return nil, err
	}
	var res struct {
		Clients             int     `json:"clients"`
		Rooms               int     `json:"rooms"`
		JoinP50MS           float64 `json:"join_p50_ms"`
		JoinP99MS           float64 `json:"join_p99_ms"`
		RSSPerConnKiB       float64 `json:"rss_per_conn_kib"`
		HeapStackPerConnKiB float64 `json:"heap_stack_per_conn_kib"`
		HeapPerConnKiB      float64 `json:"heap_per_conn_kib"`
		StackPerConnKiB     float64 `json:"stack_per_conn_kib"`
	}
	if err := lastJSON(out, &res); err != nil {
		return nil, fmt.Errorf("the load generator's result: %w", err)
	}
	engine := "presenced + " + r.redis + ", no database (events wait in the Redis outbox)"
	rows := []row{{Figure: fmt.Sprintf("end to end: %s WebSocket clients in %d rooms, join → every member has the new count", num(float64(res.Clients), 0), res.Rooms),
		Value:  fmt.Sprintf("p50 %s ms, p99 **%s ms**", num(res.JoinP50MS, 1), num(res.JoinP99MS, 1)),
		Target: "p99 < 250 ms", Command: cmd, Engine: engine}}
	if res.HeapStackPerConnKiB > 0 {
		rows = append(rows, row{Figure: "server memory per open WebSocket connection (after GC)",
			Value:  fmt.Sprintf("**%s KiB** (live heap %s + stacks %s); RSS %s KiB", num(res.HeapStackPerConnKiB, 1), num(res.HeapPerConnKiB, 1), num(res.StackPerConnKiB, 1), num(res.RSSPerConnKiB, 1)),
			Target: "< 16 KiB at 10,000 (the scale part); here a smaller crowd shares the fixed costs", Command: cmd, Engine: engine})
	}
	return rows, nil
}

// lastJSON decodes the last line of out that is a JSON object into v.
func lastJSON(out string, v any) error {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); strings.HasPrefix(l, "{") {
			return json.Unmarshal([]byte(l), v)
		}
	}
	return errors.New("no JSON line in the output")
}

// scalePart: one instance at scale (dev/bench/scale.sh): memory per connection, a join storm,
// steady churn with the truth checked, the collector against the truth. Its sizes come from
// BENCH_SIZE: "quick" (the default: 2,000 connections in 20 rooms, a storm of 1,000, 30 s of
// hold, about 3 minutes) or "full" (10,000 connections in 100 rooms, 2 minutes of hold: the
// issue's targets, about 6 minutes); SCALE_* variables set each size alone.
func scalePart(ctx context.Context, r *runner) ([]row, error) {
	env := []string{}
	cmd := "dev/bench/scale.sh"
	if envOr("BENCH_SIZE", "quick") != "full" {
		for k, v := range map[string]string{"SCALE_CLIENTS": "2000", "SCALE_ROOMS": "20", "SCALE_RAMP": "20s", "SCALE_HOLD": "30s", "SCALE_SESSION_MEDIAN": "40s"} {
			if os.Getenv(k) == "" {
				env = append(env, k+"="+v)
			}
		}
		slices.Sort(env)
		cmd = strings.Join(env, " ") + " " + cmd
	}
	out, err := r.sh(ctx, "scale", "dev/bench/scale.sh", env...)
	r.last = cmd
	rows := benchRows(out)
	for i := range rows {
		rows[i].Command = cmd + strings.TrimPrefix(rows[i].Command, "dev/bench/scale.sh")
	}
	if err == nil && len(rows) == 0 {
		err = errors.New("dev/bench/scale.sh printed no BENCH-ROW line")
	}
	return rows, err
}

// benchRows reads the lines "BENCH-ROW<TAB>figure<TAB>value<TAB>target<TAB>command<TAB>engine".
func benchRows(out string) []row {
	var rows []row
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Split(strings.TrimSpace(line), "\t"); len(f) == 6 && f[0] == "BENCH-ROW" {
			rows = append(rows, row{Figure: f[1], Value: f[2], Target: f[3], Command: f[4], Engine: f[5]})
		}
	}
	return rows
}

// peerPart runs the peer benchmark command. Its rows: every BENCH-ROW line it prints (benchRows),
// and, without any, one row per `go test -bench` result line.
func peerPart(ctx context.Context, r *runner, command string) ([]row, error) {
	out, err := r.sh(ctx, "peer", command)
	rows := benchRows(out)
	if len(rows) == 0 {
		res := parseBench(out)
		for _, name := range sortedKeys(res) {
			var ms []string
			for _, unit := range sortedKeys(res[name].Metrics) {
				ms = append(ms, num(res[name].Metrics[unit], 2)+" "+unit)
			}
			rows = append(rows, row{Figure: name, Value: strings.Join(ms, ", "), Command: command, Engine: engineOf(out)})
		}
	}
	if err == nil && len(rows) == 0 {
		err = errors.New("the peer benchmark printed no BENCH-ROW nor benchmark line")
	}
	return rows, err
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
