package main

// The parts that measure the history: the collector, the columnstore and the report queries.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
)

// collectorPart: the outbox consumer's throughput from the streams to the database, and one-row
// vs batched INSERT of the same events in the same run.
func collectorPart(ctx context.Context, r *runner) ([]row, error) {
	var rows []row
	cmd, res, out, err := r.goBench(ctx, "collector", "^BenchmarkOutboxConsumer$", envOr("BENCH_OUTBOX_N", "100000")+"x", "./storage/", "-timeout 30m ")
	if err != nil {
		return nil, err
	}
	rate, err1 := need(res, "BenchmarkOutboxConsumer", "events/s")
	perInsert, err2 := need(res, "BenchmarkOutboxConsumer", "events/insert")
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	rows = append(rows, row{Figure: "outbox consumer: " + envOr("BENCH_OUTBOX_N", "100000") + " events from the Redis streams into the database, acknowledged (one instance, EVENT_BATCH_SIZE 1000)",
		Value:  fmt.Sprintf("**%s events/s** (%s events per INSERT)", num(rate, 0), num(perInsert, 0)),
		Target: "above the load's event rate, zero loss", Command: cmd, Engine: engineOf(out)})

	cmd, res, out, err = r.goBench(ctx, "collector", "^BenchmarkHistoryInsert$", "1x", "./storage/", "-timeout 30m ")
	if err != nil {
		return rows, err
	}
	one, err1 := need(res, "BenchmarkHistoryInsert", "one-row-us/event")
	batched, err2 := need(res, "BenchmarkHistoryInsert", "batched-us/event")
	speedup, err3 := need(res, "BenchmarkHistoryInsert", "batch-speedup-x")
	if err := errors.Join(err1, err2, err3); err != nil {
		return rows, err
	}
	rows = append(rows,
		row{Figure: "history INSERT: one row per statement vs batches of 1,000 (unnest), same events, same run",
			Value:  fmt.Sprintf("%s vs %s µs/event: **%s×**", num(one, 1), num(batched, 1), num(speedup, 1)),
			Target: "batches far cheaper per event", Command: cmd, Engine: engineOf(out)})
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
