package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// procSample is a server process's resident memory and CPU time so far, from /proc.
type procSample struct {
	rss int64         // bytes (VmRSS)
	cpu time.Duration // user + system
}

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat: 100 on Linux (x86, arm).
const clockTicks = 100

func readProc(pid int) (procSample, error) {
	var s procSample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("server process: %w", err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return s, fmt.Errorf("VmRSS %q: %w", v, err)
			}
			s.rss = kb * 1024
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("server process: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces: fields count after it.
	rest := stat[bytes.LastIndexByte(stat, ')')+2:]
	f := strings.Fields(string(rest))
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return s, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	s.cpu = time.Duration(utime+stime) * time.Second / clockTicks
	return s, nil
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
