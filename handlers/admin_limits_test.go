package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"presencestats"
	"presencestats/handlers"
	"presencestats/storage/storagetest"
)

// heldReports is a ReportSource whose queries run until the test lets them go: each call says
// it started on started, then waits for a token on release (or its context's end).
type heldReports struct {
	room    uuid.UUID
	started chan string
	release chan struct{}
}

func newHeldReports() *heldReports {
	return &heldReports{room: uuid.New(), started: make(chan string, 100), release: make(chan struct{})}
}

func (h *heldReports) hold(ctx context.Context, what string) error {
	h.started <- what
	select {
	case <-h.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *heldReports) Stats(ctx context.Context, q presencestats.ReportQuery, fn func(presencestats.ReportRow) error) error {
	if err := h.hold(ctx, "stats"); err != nil {
		return err
	}
	return fn(presencestats.ReportRow{RoomID: h.room, Bucket: q.Start, Granularity: q.Granularity})
}

func (h *heldReports) Report(ctx context.Context, q presencestats.ReportQuery, fn func(presencestats.ReportRow) error) ([]presencestats.TotalsRow, []presencestats.PeakHour, error) {
	return nil, nil, h.Stats(ctx, q, fn)
}

func (h *heldReports) Rooms(context.Context) ([]uuid.UUID, error) { return []uuid.UUID{h.room}, nil }

func heldPath(room uuid.UUID, format string) string {
	p := map[string]string{
		"room_ids": room.String(), "granularity": "hour",
		"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T02:00:00Z",
	}
	if format != "" {
		p["format"] = format
	}
	return reportPath(p)
}

func gauge(t testing.TB, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// REPORT_CONCURRENCY 4: four reports (JSON, CSV, XLSX, JSON) hold the four slots; a fifth waits
// REPORT_QUEUE_TIMEOUT, then gets 429 with Retry-After (audited); with a longer wait, a fifth is
// served as soon as one of the four ends. The queries are held by the test, not by timing.
func TestReportConcurrency(t *testing.T) {
	pool := storagetest.SharedDatabase(t)
	for _, tc := range []struct {
		name  string
		wait  time.Duration
		freed bool // one of the four ends while the fifth waits
	}{
		{"the fifth gets 429", 200 * time.Millisecond, false},
		{"the fifth is served when a slot frees", time.Minute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newHeldReports()
			reg := prometheus.NewRegistry()
			e := newAdminEnvWith(t, pool, src, handlers.AdminConfig{
				Limits: handlers.NewReportLimits(handlers.ReportLimitsConfig{Concurrency: 4, QueueTimeout: tc.wait, Timeout: time.Minute}, reg),
			})
			type answer struct {
				status int
				header http.Header
				body   []byte
			}
			answers := make(chan answer, 5)
			var wg sync.WaitGroup
			get := func(format string) {
				wg.Go(func() {
					res, body := e.get(heldPath(src.room, format), e.adminTok)
					answers <- answer{res.StatusCode, res.Header, body}
				})
			}
			for _, f := range []string{"", "csv", "xlsx", ""} {
				get(f)
			}
			for range 4 {
				select {
				case <-src.started:
				case <-time.After(30 * time.Second):
					t.Fatal("the four reports did not all start")
				}
			}
			if got := gauge(t, reg, "presence_report_running"); got != 4 {
				t.Fatalf("presence_report_running %v, want 4", got)
			}
			// finish lets every held query go and checks that the others were all served.
			finish := func() {
				t.Helper()
				close(src.release)
				wg.Wait()
				close(answers)
				for a := range answers {
					if a.status != http.StatusOK {
						t.Errorf("status %d %s, want every other report 200", a.status, a.body)
					}
				}
			}
			get("csv") // the fifth
			eventually(t, 10*time.Second, "the fifth waiting", func() bool {
				return gauge(t, reg, "presence_report_waiting") == 1 || gauge(t, reg, "presence_report_refused_total") == 1
			})
			if tc.freed {
				src.release <- struct{}{} // one of the four ends
				select {
				case what := <-src.started:
					if what != "stats" {
						t.Fatalf("started %q", what)
					}
				case <-time.After(30 * time.Second):
					t.Fatal("the fifth never started after a slot freed")
				}
				finish()
				return
			}
			var fifth answer
			select {
			case fifth = <-answers:
			case <-time.After(30 * time.Second):
				t.Fatal("the fifth got no answer")
			}
			if fifth.status != http.StatusTooManyRequests {
				t.Fatalf("fifth: %d %s, want 429", fifth.status, fifth.body)
			}
			var eb handlers.ErrorBody
			if err := json.Unmarshal(fifth.body, &eb); err != nil || eb.Error.Code != presencestats.ETOOMANY {
				t.Fatalf("fifth's body %s", fifth.body)
			}
			if ra, err := strconv.Atoi(fifth.header.Get("Retry-After")); err != nil || ra < 1 {
				t.Errorf("Retry-After %q", fifth.header.Get("Retry-After"))
			}
			if got := gauge(t, reg, "presence_report_refused_total"); got != 1 {
				t.Errorf("presence_report_refused_total %v, want 1", got)
			}
			finish()
			refused := 0
			for _, r := range auditRows(t, pool, e.adminID) {
				if r.Status == http.StatusTooManyRequests {
					refused++
				}
			}
			if refused != 1 {
				t.Errorf("%d audit rows with 429, want 1", refused)
			}
		})
	}
}

// slowReports is a ReportSource whose query produces its first row only when its context ends
// (a huge query), or, with rows set, streams rows with a pause longer than REPORT_TIMEOUT after
// the first.
type slowReports struct {
	room  uuid.UUID
	pause time.Duration // > 0: stream two rows, pause between them
}

func (s *slowReports) Stats(ctx context.Context, q presencestats.ReportQuery, fn func(presencestats.ReportRow) error) error {
	if s.pause == 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	if err := fn(presencestats.ReportRow{RoomID: s.room, Bucket: q.Start, Granularity: q.Granularity}); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(s.pause):
	}
	return fn(presencestats.ReportRow{RoomID: s.room, Bucket: q.Start.Add(time.Hour), Granularity: q.Granularity})
}

func (s *slowReports) Report(ctx context.Context, q presencestats.ReportQuery, fn func(presencestats.ReportRow) error) ([]presencestats.TotalsRow, []presencestats.PeakHour, error) {
	return nil, nil, s.Stats(ctx, q, fn)
}

func (s *slowReports) Rooms(context.Context) ([]uuid.UUID, error) { return []uuid.UUID{s.room}, nil }

// REPORT_TIMEOUT: a query that does not end is cut off and answered 504 with the JSON body, in
// every format; the slot is free again. A CSV whose rows have begun to stream is not cut off by
// it (the client's pace is the stall guard's business).
func TestReportTimeout(t *testing.T) {
	pool := storagetest.SharedDatabase(t)
	src := &slowReports{room: uuid.New()}
	reg := prometheus.NewRegistry()
	e := newAdminEnvWith(t, pool, src, handlers.AdminConfig{
		Limits: handlers.NewReportLimits(handlers.ReportLimitsConfig{Concurrency: 1, QueueTimeout: time.Minute, Timeout: 100 * time.Millisecond}, reg),
	})
	for i, format := range []string{"", "csv", "xlsx"} {
		res, body := e.get(heldPath(src.room, format), e.adminTok)
		if res.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("format %q: %d %s, want 504", format, res.StatusCode, body)
		}
		var eb handlers.ErrorBody
		if err := json.Unmarshal(body, &eb); err != nil || eb.Error.Code != presencestats.ETIMEOUT {
			t.Fatalf("format %q: body %s", format, body)
		}
		if got := gauge(t, reg, "presence_report_timeouts_total"); got != float64(i+1) {
			t.Errorf("presence_report_timeouts_total %v, want %d", got, i+1)
		}
	}
	src.pause = 500 * time.Millisecond // five times REPORT_TIMEOUT, after the first row
	res, body := e.get(heldPath(src.room, "csv"), e.adminTok)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("streaming csv: %d %s", res.StatusCode, body)
	}
	if lines := len(splitLines(string(body))); lines != 3 {
		t.Fatalf("streaming csv: %d lines, want header + 2 rows:\n%s", lines, body)
	}
	if got := gauge(t, reg, "presence_report_running"); got != 0 {
		t.Errorf("presence_report_running %v after every report ended, want 0", got)
	}
}

func splitLines(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
}
