// Command table runs the project's benchmarks (make bench) and prints one table of what they
// measured: figure, value, target, command, engine, machine, date.
//
//	go run ./dev/bench/table                      every part
//	go run ./dev/bench/table -parts reports       one part (a comma-separated list works too)
//	go run ./dev/bench/table -skip peer,loadgen   all but some
//
// Parts: presence (storage.Presence vs redis-benchmark, dev/bench/presence-vs-redis-benchmark.sh),
// realtime (the hub's cache and the REST stats endpoint), collector (the outbox consumer's
// throughput, one-row vs batched INSERT), storage (a month of events: columnstore and aggregate sizes),
// reports (BenchmarkReportQueries: a year of 100 rooms; BENCH_REPORT_DSN reuses a seeded
// database), loadgen (end to end, dev/bench/loadgen.sh), scale (one instance at scale: memory per
// connection, a join storm, churn against the truth, the collector; dev/bench/scale.sh,
// BENCH_SIZE=full for 10,000 connections) and peer (-peer-cmd, when given).
//
// Each part's whole output goes to -log-dir/<part>.log; the table goes to stdout (Markdown) and
// -log-dir/table.md. The engine column is what the database answered (version(), the
// timescaledb extension's version): "local WebAssembly TimescaleDB" or "server TimescaleDB".
// A part that fails gives a FAILED row and the exit status 1; the other parts still run.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	only := flag.String("parts", "", "comma-separated parts to run (default: all): presence, realtime, collector, storage, reports, loadgen, scale, peer")
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
	fmt.Fprintf(&md, "`make bench` of %s to %s; %s; Go %s; commit %s. %s\n\n",
		started.Format("2006-01-02 15:04"), time.Now().UTC().Format("15:04 UTC"), machine(), strings.TrimPrefix(runtime.Version(), "go"),
		commit(context.WithoutCancel(ctx)), busyness())
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
