package handlers

// Internal: pushWindow is the arithmetic of the coalescing window; the WebSocket tests
// (ws_coalesce_test.go) check what members receive with it.

import (
	"testing"
	"time"
)

func TestPushWindow(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		interval time.Duration
		rate     int
		sessions int64
		want     time.Duration
	}{
		// The defaults: 1 ms up to 25 sessions, 0.04 ms a session above, 1 s from 25,000.
		{ms, 25000, 0, ms},
		{ms, 25000, 25, ms},
		{ms, 25000, 50, 2 * ms},
		{ms, 25000, 1000, 40 * ms},
		{ms, 25000, 25000, time.Second},
		{ms, 25000, 1 << 40, time.Second},
		// The defaults before 2026-12-07 (5 ms, 10,000 a second).
		{5 * ms, 10000, 0, 5 * ms},
		{5 * ms, 10000, 1, 5 * ms},
		{5 * ms, 10000, 50, 5 * ms},
		{5 * ms, 10000, 51, 5100 * time.Microsecond},
		{5 * ms, 10000, 1000, 100 * ms},
		{5 * ms, 10000, 9999, 999900 * time.Microsecond},
		{5 * ms, 10000, 10000, time.Second},
		{5 * ms, 10000, 1 << 40, time.Second},
		// STATS_PUSH_INTERVAL is the window as set, even when longer than the cap.
		{10 * time.Second, 10000, 3, 10 * time.Second},
		{10 * time.Second, 10000, 1 << 20, 10 * time.Second},
		{2 * time.Second, 1, 1, 2 * time.Second},
		// STATS_PUSH_ROOM_RATE 0: no widening.
		{5 * ms, 0, 1 << 20, 5 * ms},
		{5 * ms, 1 << 30, 1 << 20, 5 * ms},
		{100 * ms, 1000, 50, 100 * ms},
		{100 * ms, 1000, 500, 500 * ms},
	} {
		if got := pushWindow(c.interval, c.rate, c.sessions); got != c.want {
			t.Errorf("pushWindow(%s, %d, %d) = %s, want %s", c.interval, c.rate, c.sessions, got, c.want)
		}
	}
}
