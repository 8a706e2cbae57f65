package main

import "testing"

func TestParseBench(t *testing.T) {
	out := `goos: linux
BenchmarkCollectorRecord-2   	2026/12/02 16:24:19 WARN writing presence events at shutdown failed: spooling the rest
2026/12/02 16:24:19 ERROR presence events lost at shutdown: no spool component=event_collector events=118000
  200000	     41291 ns/op	1256197016 max-ns	        80.00 p50-ns	     15400 p99-ns	    1084 B/op	       0 allocs/op
--- BENCH: BenchmarkCollectorRecord-2
    history_bench_test.go:46: engine: local WebAssembly TimescaleDB 2.23.0-dev (PostgreSQL 17.5)
BenchmarkCachedStats-2     	 7721485	       449.8 ns/op	         0 misses	       0 B/op	       0 allocs/op
BenchmarkReportQueries/hour-1room-24h-2         	      20	  17000000 ns/op	        24.00 rows	        16.50 p50-ms	        21.00 p95-ms
BenchmarkReportQueries/hour-24h
BenchmarkReportQueries/hour-24h-2         	      20	  53000000 ns/op	        2400 rows	        53.00 p50-ms	        74.00 p95-ms
PASS
`
	res := parseBench(out)
	for _, tc := range []struct {
		name, unit string
		want       float64
	}{
		{"BenchmarkCollectorRecord", "p99-ns", 15400},
		{"BenchmarkCollectorRecord", "max-ns", 1256197016},
		{"BenchmarkCachedStats", "ns/op", 449.8},
		{"BenchmarkReportQueries/hour-1room-24h", "p95-ms", 21},
		{"BenchmarkReportQueries/hour-24h", "rows", 2400},
	} {
		got, err := need(res, tc.name, tc.unit)
		if err != nil || got != tc.want {
			t.Errorf("%s %s = %v, %v; want %v", tc.name, tc.unit, got, err, tc.want)
		}
	}
	if got, want := res["BenchmarkReportQueries/hour-24h"].N, int64(20); got != want {
		t.Errorf("N = %d, want %d", got, want)
	}
	if got, want := engineOf(out), "local WebAssembly TimescaleDB 2.23.0-dev (PostgreSQL 17.5)"; got != want {
		t.Errorf("engine = %q, want %q", got, want)
	}
	if got, want := num(1234567.891, 1), "1,234,568"; got != want {
		t.Errorf("num = %q, want %q", got, want)
	}
	if got, want := dur(15400), "15.4 µs"; got != want {
		t.Errorf("dur = %q, want %q", got, want)
	}
}

func TestBenchRowsAndLastJSON(t *testing.T) {
	out := "scale: memory ...\nBENCH-ROW\tfig\t**1.0 KiB**\t< 16 KiB\tdev/bench/scale.sh (memory)\tpresenced\nBENCH-ROW\ttoo\tfew\n" +
		"{\"clients\": 1}\nnoise\n{\"clients\": 2000, \"rooms\": 20}\nlast line\n"
	rows := benchRows(out)
	if len(rows) != 1 || rows[0] != (row{Figure: "fig", Value: "**1.0 KiB**", Target: "< 16 KiB", Command: "dev/bench/scale.sh (memory)", Engine: "presenced"}) {
		t.Errorf("benchRows = %+v", rows)
	}
	var res struct{ Clients, Rooms int }
	if err := lastJSON(out, &res); err != nil || res.Clients != 2000 || res.Rooms != 20 {
		t.Errorf("lastJSON = %+v, %v", res, err)
	}
	if err := lastJSON("no json", &res); err == nil {
		t.Error("lastJSON of no JSON: no error")
	}
}
