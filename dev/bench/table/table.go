package main

// The table: its rows, rendering, and reading `go test -bench` output into figures.

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// row is one line of the table.
type row struct {
	Figure, Value, Target, Command, Engine, Machine, Date string
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
