// Command table runs the project's benchmarks (make bench) and prints one table of what they
// measured: figure, value, target, command, engine, machine, date.
//
//	go run ./dev/bench/table                      every part
//	go run ./dev/bench/table -parts reports       one part (a comma-separated list works too)
//	go run ./dev/bench/table -skip peer,loadgen   all but some
//
// Parts: presence (storage.Presence vs redis-benchmark, dev/bench/presence-vs-redis-benchmark.sh),
// realtime (the hub's cache and the REST stats endpoint), collector (Record latency, one-row vs
// batched INSERT, sustained rate), storage (a month of events: columnstore and aggregate sizes),
// reports (BenchmarkReportQueries: a year of 100 rooms; BENCH_REPORT_DSN reuses a seeded
// database), loadgen (end to end, dev/bench/loadgen.sh) and peer (-peer-cmd, when given).
//
// Each part's whole output goes to -log-dir/<part>.log; the table goes to stdout (Markdown) and
// -log-dir/table.md. The engine column is what the database answered (version(), the
// timescaledb extension's version): "local WebAssembly TimescaleDB" or "server TimescaleDB".
// A part that fails gives a FAILED row and the exit status 1; the other parts still run.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// row is one line of the table.
type row struct {
	Figure, Value, Target, Command, Engine, Machine, Date string
}

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
	}
	if peerCmd != "" {
		ps = append(ps, part{"peer", func(ctx context.Context, r *runner) ([]row, error) { return peerPart(ctx, r, peerCmd) }})
	}
	return ps
}

func main() {
	only := flag.String("parts", "", "comma-separated parts to run (default: all): presence, realtime, collector, storage, reports, loadgen, peer")
	skip := flag.String("skip", "", "comma-separated parts not to run")
	logDir := flag.String("log-dir", "", "where each part's output and the table go (default: bench-results/<UTC time>)")
	peerCmd := flag.String("peer-cmd", "", "shell command of the peer benchmark part (make bench passes `make bench-peer` when that target exists)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	started := time.Now().UTC()
	if *logDir == "" {
		*logDir = filepath.Join("bench-results", started.Format("20060102T150405Z"))
	}
	if err := os.MkdirAll(*logDir, 0o755); err != nil {
		fatal(err)
	}
	want, skipped := set(*only), set(*skip)
	all := parts(*peerCmd)
	for name := range want {
		if !hasPart(all, name) && !(name == "peer" && *peerCmd == "") {
			fatal(fmt.Errorf("unknown part %q", name))
		}
	}
	r := &runner{logDir: *logDir, redis: redisVersion(ctx)}
	var rows []row
	failed := false
	for _, p := range all {
		if (len(want) > 0 && !want[p.name]) || skipped[p.name] {
			continue
		}
		r.machine, r.date = machine(), time.Now().UTC().Format("2006-01-02 15:04 UTC")
		t0 := time.Now()
		fmt.Fprintf(os.Stderr, "bench: %s: started %s (log %s)\n", p.name, r.date, filepath.Join(*logDir, p.name+".log"))
		got, err := p.run(ctx, r)
		for i := range got {
			if got[i].Machine == "" {
				got[i].Machine = r.machine
			}
			if got[i].Date == "" {
				got[i].Date = r.date
			}
		}
		rows = append(rows, got...)
		if err != nil {
			failed = true
			fmt.Fprintf(os.Stderr, "bench: %s: FAILED after %s: %v\n", p.name, time.Since(t0).Round(time.Second), err)
			rows = append(rows, row{Figure: p.name, Value: "FAILED: " + oneLine(err.Error(), 160), Command: r.last,
				Machine: r.machine, Date: r.date})
		} else {
			fmt.Fprintf(os.Stderr, "bench: %s: done in %s\n", p.name, time.Since(t0).Round(time.Second))
		}
		if ctx.Err() != nil {
			break
		}
	}
	var md bytes.Buffer
	fmt.Fprintf(&md, "`make bench` of %s to %s; %s; Go %s; commit %s. Figures measured on a machine shared with other engineers: noisy.\n\n",
		started.Format("2006-01-02 15:04"), time.Now().UTC().Format("15:04 UTC"), machine(), strings.TrimPrefix(runtime.Version(), "go"), commit(context.WithoutCancel(ctx)))
	writeTable(&md, rows)
	os.Stdout.Write(md.Bytes())
	if err := os.WriteFile(filepath.Join(*logDir, "table.md"), md.Bytes(), 0o644); err != nil {
		fatal(err)
	}
	if failed || ctx.Err() != nil {
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(2)
}

func set(list string) map[string]bool {
	m := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" && s != "all" {
			m[s] = true
		}
	}
	return m
}

func hasPart(ps []part, name string) bool {
	for _, p := range ps {
		if p.name == name {
			return true
		}
	}
	return false
}

// runner runs a part's commands, logging their output.
type runner struct {
	logDir        string
	redis         string // "Redis 7.0.15"
	machine, date string // of the part running
	last          string // the last command run, for a FAILED row
}

// sh runs command (bash) with extra environment, appending its output to the part's log, and
// returns the output.
func (r *runner) sh(ctx context.Context, logName, command string, env ...string) (string, error) {
	r.last = command
	f, err := os.OpenFile(filepath.Join(r.logDir, logName+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fmt.Fprintf(f, "$ %s\n", strings.TrimSpace(strings.Join(env, " ")+" "+command))
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", "-c", command)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = io.MultiWriter(&out, f)
	cmd.Stderr = io.MultiWriter(&out, f)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s: %w (last lines: %s)", command, err, oneLine(lastLines(out.String(), 3), 300))
	}
	return out.String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

// machine is "2 cores, 23.4 GiB, load 3.1": nproc, MemTotal and the 1-minute load average now.
func machine() string {
	s := fmt.Sprintf("%d cores", runtime.NumCPU())
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
					s += fmt.Sprintf(", %.1f GiB", kb/(1<<20))
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			s += ", load " + f[0]
		}
	}
	return s
}

func redisVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "redis-server", "--version").Output()
	if m := regexp.MustCompile(`v=(\S+)`).FindSubmatch(out); err == nil && m != nil {
		return "Redis " + string(m[1])
	}
	return "Redis"
}

func commit(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}

func writeTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| figure | value | target | command | engine | machine | date |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	cell := func(s string) string {
		if s == "" {
			return "—"
		}
		return strings.ReplaceAll(s, "|", `\|`)
	}
	for _, r := range rows {
		cmd := r.Command
		if cmd != "" {
			cmd = "`" + strings.ReplaceAll(cmd, "`", "'") + "`"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", cell(r.Figure), cell(r.Value), cell(r.Target), cell(cmd),
			cell(r.Engine), cell(r.Machine), cell(r.Date))
	}
}

// bench is one `go test -bench` result line: iterations and every metric by unit.
type bench struct {
	N       int64
	Metrics map[string]float64
}

var (
	benchName   = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?(?:\s+(.*))?$`)
	benchResult = regexp.MustCompile(`^(\d+)\s+([-+0-9.eE]+\s+\S+.*)$`)
)

// parseBench reads the result lines of `go test -bench` output (the stable format of
// golang.org/x/perf/benchfmt: name, iterations, then value-unit pairs), by name without the
// GOMAXPROCS suffix. A benchmark that logs while it runs has its name and its figures on
// different lines, with the log lines between them: the figures go to the last name seen.
func parseBench(out string) map[string]bench {
	res := map[string]bench{}
	pending := ""
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		rest := line
		if m := benchName.FindStringSubmatch(line); m != nil {
			pending, rest = m[1], m[2]
		}
		m := benchResult.FindStringSubmatch(rest)
		if m == nil || pending == "" {
			continue
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		b := bench{N: n, Metrics: map[string]float64{}}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				b.Metrics[f[i+1]] = v
			}
		}
		res[pending] = b
		pending = ""
	}
	return res
}

var engineLine = regexp.MustCompile(`engine: (.+)$`)

// engineOf returns what the benchmarks logged as "engine: ..." (storagetest.Engine).
func engineOf(out string) string {
	var engines []string
	for _, line := range strings.Split(out, "\n") {
		if m := engineLine.FindStringSubmatch(strings.TrimSpace(line)); m != nil && !slices.Contains(engines, m[1]) {
			engines = append(engines, m[1])
		}
	}
	if len(engines) == 0 {
		return "unknown (the benchmark did not say)"
	}
	return strings.Join(engines, "; ")
}

// need returns the metric unit of benchmark name, or an error naming what is missing.
func need(res map[string]bench, name, unit string) (float64, error) {
	b, ok := res[name]
	if !ok {
		return 0, fmt.Errorf("no result line for %s", name)
	}
	v, ok := b.Metrics[unit]
	if !ok {
		return 0, fmt.Errorf("%s reported no %s", name, unit)
	}
	return v, nil
}

// num writes v with thousands separators and at most prec decimals (fewer for big values).
func num(v float64, prec int) string {
	if v >= 100 {
		prec = 0
	} else if v >= 10 {
		prec = min(prec, 1)
	}
	s := strconv.FormatFloat(v, 'f', prec, 64)
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	s = b.String()
	if neg {
		s = "-" + s
	}
	if frac != "" {
		s += "." + frac
	}
	return s
}

// dur writes a duration in ns as the unit that suits it.
func dur(ns float64) string {
	switch {
	case ns >= 1e9:
		return num(ns/1e9, 2) + " s"
	case ns >= 1e6:
		return num(ns/1e6, 1) + " ms"
	case ns >= 1e3:
		return num(ns/1e3, 1) + " µs"
	}
	return num(ns, 0) + " ns"
}

// goBench runs `go test -run '^$' -bench` in pkg and parses the result.
func (r *runner) goBench(ctx context.Context, logName, pattern, benchtime, pkg string, extra string, env ...string) (string, map[string]bench, string, error) {
	cmd := fmt.Sprintf("go test -run '^$' -bench '%s' -benchtime %s -benchmem -count 1 %s%s", pattern, benchtime, extra, pkg)
	out, err := r.sh(ctx, logName, cmd, env...)
	return cmd, parseBench(out), out, err
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
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

// collectorPart: Record's latency, one-row vs batched INSERT of the same events in the same run,
// and the collector's sustained rate.
func collectorPart(ctx context.Context, r *runner) ([]row, error) {
	var rows []row
	cmd, res, out, err := r.goBench(ctx, "collector", "^BenchmarkCollectorRecord$", envOr("BENCH_RECORD_N", "200000")+"x", "./storage/", "")
	if err != nil {
		return nil, err
	}
	p50, err1 := need(res, "BenchmarkCollectorRecord", "p50-ns")
	p99, err2 := need(res, "BenchmarkCollectorRecord", "p99-ns")
	mx, err3 := need(res, "BenchmarkCollectorRecord", "max-ns")
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, err
	}
	rows = append(rows, row{Figure: "collector Record latency (the real-time path's only history cost; batches written behind it)",
		Value:  fmt.Sprintf("p50 %s, p99 **%s**, max %s", dur(p50), dur(p99), dur(mx)),
		Target: "µs: never waits for the database", Command: cmd, Engine: engineOf(out)})

	cmd, res, out, err = r.goBench(ctx, "collector", "^BenchmarkHistoryInsert$", "1x", "./storage/", "-timeout 30m ")
	if err != nil {
		return rows, err
	}
	one, err1 := need(res, "BenchmarkHistoryInsert", "one-row-us/event")
	batched, err2 := need(res, "BenchmarkHistoryInsert", "batched-us/event")
	speedup, err3 := need(res, "BenchmarkHistoryInsert", "batch-speedup-x")
	rate, err4 := need(res, "BenchmarkHistoryInsert", "sustained-events/s")
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return rows, err
	}
	engine := engineOf(out)
	rows = append(rows,
		row{Figure: "history INSERT: one row per statement vs batches of 1,000 (unnest), same events, same run",
			Value:  fmt.Sprintf("%s vs %s µs/event: **%s×**", num(one, 1), num(batched, 1), num(speedup, 1)),
			Target: "batches far cheaper per event", Command: cmd, Engine: engine},
		row{Figure: "collector sustained rate, 100,000 events Record → written",
			Value:  fmt.Sprintf("**%s events/s**", num(rate, 0)),
			Target: "above the load's event rate, zero loss", Command: cmd, Engine: engine})
	return rows, nil
}

// storagePart: a month of events, columnstore and the aggregates' size.
func storagePart(ctx context.Context, r *runner) ([]row, error) {
	cmd, res, out, err := r.goBench(ctx, "storage", "^BenchmarkHistoryStorage$", "1x", "./storage/", "-timeout 30m ")
	if err != nil {
		return nil, err
	}
	const name = "BenchmarkHistoryStorage"
	events, err1 := need(res, name, "events")
	raw, err2 := need(res, name, "raw-MiB")
	comp, err3 := need(res, name, "raw-columnstore-MiB")
	saved, err4 := need(res, name, "saved-%")
	aggs, err5 := need(res, name, "aggregates-MiB")
	ratio, err6 := need(res, name, "aggregates/raw-%")
	if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil {
		return nil, err
	}
	engine := engineOf(out)
	rooms := envOr("BENCH_MONTH_ROOMS", "10")
	return []row{
		{Figure: fmt.Sprintf("columnstore on a month of events (%s rooms, %s events with heartbeats)", rooms, num(events, 0)),
			Value: fmt.Sprintf("%s → %s MiB: **%s%% saved**", num(raw, 1), num(comp, 1), num(saved, 0)), Target: "most of it saved",
			Command: cmd, Engine: engine},
		{Figure: "every continuous aggregate against the raw events, same month",
			Value: fmt.Sprintf("%s MiB = **%s%%** of the raw events", num(aggs, 1), num(ratio, 1)), Target: "a small fraction",
			Command: cmd, Engine: engine},
	}, nil
}

// reportCases are BenchmarkReportQueries' sub-benchmarks: what each is, the seed design's bound
// on a report (p95) where it sets one.
var reportCases = []struct{ sub, what, bound string }{
	{"hour", "every room, hour, 7 days", "< 100 ms"},
	{"hour-24h", "every room, hour, 24 hours", "< 100 ms"},
	{"day", "every room, day, 90 days", "< 500 ms"},
	{"week", "every room, week, 1 year", ""},
	{"month", "every room, month, 1 year", "< 2,000 ms"},
	{"year", "every room, year, 1 year", "< 5,000 ms"},
	{"hour-1room-24h", "1 room, hour, 24 hours (the seed's acceptance test)", "< 100 ms"},
	{"hour-1room-7d", "1 room, hour, 7 days", "< 100 ms"},
	{"hour-10rooms-7d", "10 rooms, hour, 7 days", "< 100 ms"},
	{"day-1room-90d", "1 room, day, 90 days", "< 500 ms"},
	{"month-1room-all", "1 room, month, 1 year", "< 2,000 ms"},
	{"year-1room-all", "1 room, year, 1 year", "< 5,000 ms"},
}

// reportsPart: BenchmarkReportQueries, the whole report per granularity on a year of 100 rooms,
// or on each kept database of BENCH_REPORT_DSN (several DSNs separated by spaces, e.g. one seeded
// with 100 rooms and one with 1,000: one run each, rows named by the rooms the run reported), with
// the engine's CPU time per report when BENCH_REPORT_ENGINE_PID names its pid (one per DSN).
func reportsPart(ctx context.Context, r *runner) ([]row, error) {
	runs := envOr("BENCH_REPORT_RUNS", "20")
	extra := "-timeout 60m "
	dsns := strings.Fields(os.Getenv("BENCH_REPORT_DSN"))
	if len(dsns) == 0 {
		dsns = []string{""}
	}
	// BENCH_REPORT_ENGINE_PID: the local engine's pid per DSN, in the same order (its CPU time per report).
	pids := strings.Fields(os.Getenv("BENCH_REPORT_ENGINE_PID"))
	if len(pids) > 1 && len(pids) != len(dsns) {
		return nil, fmt.Errorf("BENCH_REPORT_ENGINE_PID has %d pids for %d BENCH_REPORT_DSN databases", len(pids), len(dsns))
	}
	var rows []row
	var errs []error
	for i, dsn := range dsns {
		var env []string
		if dsn != "" {
			env = []string{"BENCH_REPORT_DSN=" + dsn}
		}
		if len(pids) > 1 {
			env = append(env, "BENCH_REPORT_ENGINE_PID="+pids[i])
		}
		cmd, res, out, err := r.goBench(ctx, "reports", "^BenchmarkReportQueries$", runs+"x", "./storage/", extra, env...)
		if dsn != "" {
			cmd = "BENCH_REPORT_DSN=… " + cmd
		}
		engine := engineOf(out)
		n := len(rows)
		for _, c := range reportCases {
			name := "BenchmarkReportQueries/" + c.sub
			p50, err1 := need(res, name, "p50-ms")
			p95, err2 := need(res, name, "p95-ms")
			if errors.Join(err1, err2) != nil {
				continue
			}
			target := "p95 < 200 ms (aim)"
			if c.bound != "" {
				target = "p95 " + c.bound + " (seed bound); < 200 ms (aim)"
			}
			rooms := "100"
			if v, ok := res[name].Metrics["rooms"]; ok {
				rooms = num(v, 0)
			}
			value := fmt.Sprintf("p50 %s ms, p95 **%s ms** (%d runs)", num(p50, 1), num(p95, 1), res[name].N)
			if cpu50, ok := res[name].Metrics["engine-cpu-p50-ms"]; ok { // BENCH_REPORT_ENGINE_PID
				value += fmt.Sprintf("; engine CPU p50 %s ms, p95 %s ms", num(cpu50, 1), num(res[name].Metrics["engine-cpu-p95-ms"], 1))
			}
			rows = append(rows, row{
				Figure: fmt.Sprintf("report (stats + totals + peak hours), year of %s rooms: %s, %s rows", rooms, c.what, num(res[name].Metrics["rows"], 0)),
				Value:  value,
				Target: target, Command: cmd + " (" + c.sub + ")", Engine: engine,
			})
		}
		if err == nil && len(rows) == n {
			err = errors.New("no BenchmarkReportQueries result lines")
		}
		errs = append(errs, err)
	}
	return rows, errors.Join(errs...)
}

// loadgenPart: end to end, a throw-away Redis and presenced, then cmd/loadgen
// (LOADGEN_ARGS: its flags).
func loadgenPart(ctx context.Context, r *runner) ([]row, error) {
	cmd := strings.TrimSpace("dev/bench/loadgen.sh " + os.Getenv("LOADGEN_ARGS"))
	out, err := r.sh(ctx, "loadgen", cmd)
	if err != nil {
		return nil, err
	}
	var rows []row
	engine := "presenced + " + r.redis + ", no database (events spooled)"
	what := "join → every member has the new count"
	if m := regexp.MustCompile(`clients (\d+) in (\d+) rooms`).FindStringSubmatch(out); m != nil {
		what = fmt.Sprintf("%s WebSocket clients in %s rooms, %s", m[1], m[2], what)
	}
	lat := regexp.MustCompile(`every member has the count: p50 (\S+)\s+p90 (\S+)\s+p99 (\S+)\s+max (\S+)`).FindStringSubmatch(out)
	if lat == nil {
		return nil, errors.New("no latency line in the load generator's output")
	}
	rows = append(rows, row{Figure: "end to end: " + what,
		Value:  fmt.Sprintf("p50 %s, p90 %s, p99 **%s**, max %s", lat[1], lat[2], lat[3], lat[4]),
		Target: "p99 < 250 ms", Command: cmd, Engine: engine})
	if m := regexp.MustCompile(`memory per connection: live heap \+ stacks ([0-9.]+) KiB \(live heap ([0-9.]+), stacks ([0-9.]+)\); RSS ([0-9.]+) KiB`).FindStringSubmatch(out); m != nil {
		rows = append(rows, row{Figure: "server memory per open WebSocket connection (after GC)",
			Value:  fmt.Sprintf("**%s KiB** (live heap %s + stacks %s); RSS %s KiB", m[1], m[2], m[3], m[4]),
			Target: "< 16 KiB", Command: cmd, Engine: engine})
	}
	return rows, nil
}

// peerPart runs the peer benchmark command. Its rows: every line "BENCH-ROW<TAB>figure<TAB>value
// <TAB>target<TAB>command<TAB>engine" it prints, and, for each `go test -bench` result line, one
// row of its metrics.
func peerPart(ctx context.Context, r *runner, command string) ([]row, error) {
	out, err := r.sh(ctx, "peer", command)
	var rows []row
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Split(strings.TrimSpace(line), "\t"); len(f) == 6 && f[0] == "BENCH-ROW" {
			rows = append(rows, row{Figure: f[1], Value: f[2], Target: f[3], Command: f[4], Engine: f[5]})
		}
	}
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
