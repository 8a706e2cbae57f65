package handlers_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"presencestats"
	"presencestats/handlers"
)

// queryRecorder is the ReportSource of the fuzzed report API: it keeps the query it was asked
// and returns no rows (the parser, not the database, is under test).
type queryRecorder struct {
	mu    sync.Mutex
	rooms []uuid.UUID
	got   []presencestats.ReportQuery
}

func (r *queryRecorder) take(q presencestats.ReportQuery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, q)
}

func (r *queryRecorder) Stats(_ context.Context, q presencestats.ReportQuery, _ func(presencestats.ReportRow) error) error {
	r.take(q)
	return nil
}

func (r *queryRecorder) Report(_ context.Context, q presencestats.ReportQuery, _ func(presencestats.ReportRow) error) ([]presencestats.TotalsRow, []presencestats.PeakHour, error) {
	r.take(q)
	return nil, nil, nil
}

func (r *queryRecorder) Rooms(context.Context) ([]uuid.UUID, error) { return r.rooms, nil }

// memoryAudit is an AuditLog in memory: the fuzzer checks that every answered request left a row
// with the status it got.
type memoryAudit struct {
	mu   sync.Mutex
	rows []presencestats.AuditEntry
}

func (m *memoryAudit) Record(_ context.Context, e presencestats.AuditEntry) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows = append(m.rows, e)
	return int64(len(m.rows)), nil
}

func (m *memoryAudit) Complete(context.Context, int64, int, time.Duration, map[string]any) error {
	return nil
}

func (m *memoryAudit) List(context.Context, presencestats.AuditQuery) ([]presencestats.AuditEntry, error) {
	return nil, nil
}

// fuzzZones are REPORT_TIMEZONE values with every kind of offset: half and three-quarter hours,
// +14 and -11, DST of 30 minutes, DST at midnight, and a zone that skipped a whole day.
var fuzzZones = []string{
	"UTC", "Asia/Shanghai", "America/New_York", "America/St_Johns", "Asia/Kathmandu", "Pacific/Chatham",
	"Australia/Lord_Howe", "America/Sao_Paulo", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Pacific/Apia", "Asia/Tehran",
}

// reportAPI is the admin API over a queryRecorder, as the service wires it.
type reportAPI struct {
	h      http.Handler
	src    *queryRecorder
	audit  *memoryAudit
	tok    string
	loc    *time.Location
	points int
}

func newReportAPI(tb testing.TB, loc *time.Location, maxPoints, rooms int) *reportAPI {
	tb.Helper()
	auth := handlers.NewTokenAuthority(fuzzSecret)
	api := &reportAPI{src: &queryRecorder{}, audit: &memoryAudit{}, loc: loc, points: maxPoints}
	for range rooms {
		api.src.rooms = append(api.src.rooms, uuid.New())
	}
	log := slog.New(slog.DiscardHandler)
	admin := handlers.NewAdmin(handlers.AdminConfig{
		Auth: auth, Logger: log, Reports: api.src, Audit: api.audit, Location: loc, MaxPoints: maxPoints,
	})
	api.h = handlers.NewRouter(handlers.RouterConfig{Logger: log, Registry: prometheus.NewRegistry(), Features: []handlers.Feature{admin}})
	var err error
	if api.tok, err = auth.Mint(uuid.New(), handlers.RoleAdmin, time.Hour); err != nil {
		tb.Fatal(err)
	}
	return api
}

// get answers GET /admin/api/stats/reports?rawQuery; q is the query the source was asked, if any.
func (api *reportAPI) get(rawQuery string) (res *httptest.ResponseRecorder, q *presencestats.ReportQuery) {
	req := httptest.NewRequest(http.MethodGet, "/admin/api/stats/reports", nil)
	req.URL.RawQuery = rawQuery
	req.Header.Set("Authorization", "Bearer "+api.tok)
	rec := httptest.NewRecorder()
	api.src.got = nil
	api.h.ServeHTTP(rec, req)
	if len(api.src.got) > 0 {
		q = &api.src.got[0]
	}
	return rec, q
}

// queryString writes q back as the API's parameters.
func queryString(q presencestats.ReportQuery, format string) string {
	v := url.Values{}
	var ids, metrics []string
	for _, id := range q.RoomIDs {
		ids = append(ids, id.String())
	}
	for _, m := range q.Metrics {
		metrics = append(metrics, string(m))
	}
	if len(ids) > 0 {
		v.Set("room_ids", strings.Join(ids, ","))
	}
	v.Set("start_time", q.Start.Format(time.RFC3339Nano))
	v.Set("end_time", q.End.Format(time.RFC3339Nano))
	v.Set("granularity", string(q.Granularity))
	v.Set("metrics", strings.Join(metrics, ","))
	if format != "" {
		v.Set("format", format)
	}
	return v.Encode()
}

// FuzzReportQuery sends the report API any parameters (each one fuzzed, plus any raw query
// string after them) in any REPORT_TIMEZONE, REPORT_MAX_POINTS and room count. The answer is 200
// with a query that keeps every rule of the contract, or 400 "invalid" naming a parameter; never
// a 5xx or a panic; every answer is audited with its status; and an accepted query, written back
// as parameters, is accepted again as the same query.
func FuzzReportQuery(f *testing.F) {
	room := "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	f.Add("", room, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "hour", "", "", uint8(0), uint32(1000), uint8(1))
	f.Add("csv", room+","+room, "2026-01-01t00:00:00z", "2026-02-01T00:00:00+08:00", "Day", "online_count,peak_hours", "", uint8(1), uint32(100000), uint8(1))
	f.Add("xlsx", "", "2025-03-30T00:00:00+01:00", "2026-03-30T00:00:00Z", "week", "unique_users", "", uint8(7), uint32(100000), uint8(3))
	f.Add("pdf", room, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "hour", "", "", uint8(0), uint32(1000), uint8(1))
	f.Add("", "not-a-uuid", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "hour", "", "", uint8(0), uint32(1000), uint8(1))
	f.Add("", "00000000-0000-0000-0000-000000000000", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "hour", "", "", uint8(0), uint32(1000), uint8(1))
	f.Add("", room, "0001-01-01T00:30:00+01:00", "0001-01-01T05:00:00Z", "hour", "", "", uint8(0), uint32(1000), uint8(1))
	f.Add("", room, "9999-12-31T22:00:00Z", "9999-12-31T23:00:00-23:00", "hour", "", "", uint8(0), uint32(1000), uint8(1))
	f.Add("", room, "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "year", "", "", uint8(4), uint32(100000), uint8(0))
	f.Add("", room, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "month", "bogus", "", uint8(0), uint32(1000), uint8(1))
	f.Add("", room, "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "hour", "", "granularity=day&start_time=x", uint8(2), uint32(1000), uint8(1))
	f.Add("JSON", " "+room+" ,, ", " 2026-01-01T00:00:00.123456789+05:45 ", "2026-01-01T01:00:00Z", " HOUR ", " , Online_Count ,", "access_token=x&%zz", uint8(4), uint32(1), uint8(2))
	f.Add("", "", "2011-12-29T00:00:00-10:00", "2012-01-01T00:00:00+14:00", "day", "", "", uint8(10), uint32(100), uint8(0))
	f.Fuzz(func(t *testing.T, format, rooms, start, end, gran, metrics, extra string, zone uint8, maxPoints uint32, nRooms uint8) {
		loc, err := time.LoadLocation(fuzzZones[int(zone)%len(fuzzZones)])
		if err != nil {
			t.Skip("no tzdata:", err)
		}
		points := 1 + int(maxPoints%50000)
		api := newReportAPI(t, loc, points, int(nRooms%4))
		v := url.Values{}
		for k, s := range map[string]string{"format": format, "room_ids": rooms, "start_time": start, "end_time": end, "granularity": gran, "metrics": metrics} {
			if s != "" {
				v.Set(k, s)
			}
		}
		raw := v.Encode()
		if extra != "" {
			raw += "&" + extra
		}
		res, q := api.get(raw)
		body := res.Body.Bytes()
		if len(api.audit.rows) != 1 || api.audit.rows[0].Status != res.Code {
			t.Fatalf("%s: status %d, audit rows %+v", raw, res.Code, api.audit.rows)
		}
		if strings.Contains(string(api.audit.rows[0].Parameters), "access_token") {
			t.Fatalf("%s: access_token audited: %s", raw, api.audit.rows[0].Parameters)
		}
		switch res.Code {
		case http.StatusOK:
		case http.StatusBadRequest:
			var eb handlers.ErrorBody
			if err := json.Unmarshal(body, &eb); err != nil || eb.Error.Code != presencestats.EINVALID {
				t.Fatalf("%s: 400 with body %s", raw, body)
			}
			param, _, _ := strings.Cut(eb.Error.Message, ":")
			switch param {
			case "format", "room_ids", "start_time", "end_time", "granularity", "metrics", "start_time/end_time/granularity":
			default:
				t.Fatalf("%s: 400 message %q names no parameter", raw, eb.Error.Message)
			}
			if q != nil {
				t.Fatalf("%s: refused (%s) after querying the source", raw, eb.Error.Message)
			}
			return
		default:
			t.Fatalf("%s: status %d: %s", raw, res.Code, body)
		}
		if q == nil {
			t.Fatalf("%s: 200 without asking the source", raw)
		}
		checkReportQuery(t, raw, *q, api)

		// Round trip: the accepted query, written back as parameters, is the same query.
		fmtName := strings.ToLower(strings.TrimSpace(v.Get("format")))
		if fmtName == "json" {
			fmtName = ""
		}
		raw2 := queryString(*q, fmtName)
		res2, q2 := api.get(raw2)
		if res2.Code != http.StatusOK || q2 == nil {
			t.Fatalf("%s accepted as %+v, but %s got %d: %s", raw, *q, raw2, res2.Code, res2.Body.Bytes())
		}
		if !sameQuery(*q, *q2) {
			t.Fatalf("%s -> %+v -> %s -> %+v", raw, *q, raw2, *q2)
		}
	})
}

// checkReportQuery holds an accepted query to the contract, independently of the parser.
func checkReportQuery(t *testing.T, raw string, q presencestats.ReportQuery, api *reportAPI) {
	t.Helper()
	if !q.End.After(q.Start) {
		t.Fatalf("%s: accepted an empty range %s..%s", raw, q.Start, q.End)
	}
	if _, err := presencestats.ParseGranularity(string(q.Granularity)); err != nil || string(q.Granularity) != strings.ToLower(string(q.Granularity)) {
		t.Fatalf("%s: accepted granularity %q", raw, q.Granularity)
	}
	first := q.Granularity.Truncate(q.Start, api.loc)
	for _, tm := range []time.Time{first, first.UTC(), q.End.Add(-1), q.End.Add(-1).UTC()} {
		if y := tm.Year(); y < 1 || y > 9999 {
			t.Fatalf("%s: accepted a range outside the years 1 to 9999: %s", raw, tm)
		}
	}
	if len(q.Metrics) == 0 {
		t.Fatalf("%s: accepted without metrics", raw)
	}
	seenM := map[presencestats.Metric]bool{}
	for _, m := range q.Metrics {
		if _, err := presencestats.ParseMetric(string(m)); err != nil || seenM[m] || string(m) != strings.ToLower(string(m)) {
			t.Fatalf("%s: metrics %v", raw, q.Metrics)
		}
		seenM[m] = true
	}
	if len(q.RoomIDs) > handlers.MaxReportRooms {
		t.Fatalf("%s: %d rooms accepted", raw, len(q.RoomIDs))
	}
	seenR := map[uuid.UUID]bool{}
	for _, id := range q.RoomIDs {
		if id == uuid.Nil || seenR[id] {
			t.Fatalf("%s: room ids %v", raw, q.RoomIDs)
		}
		seenR[id] = true
	}
	rooms := len(q.RoomIDs)
	if rooms == 0 {
		if len(q.EveryRoom) != len(api.src.rooms) {
			t.Fatalf("%s: every room = %v, want the source's %v", raw, q.EveryRoom, api.src.rooms)
		}
		rooms = max(len(api.src.rooms), 1)
	} else if q.EveryRoom != nil {
		t.Fatalf("%s: rooms picked and every room set", raw)
	}
	// Buckets counted by walking them, not by the parser's CountBuckets.
	n := 0
	for b := first; b.Before(q.End) && n*rooms <= api.points; b = q.Granularity.Next(b) {
		n++
	}
	if n*rooms > api.points {
		t.Fatalf("%s: %d buckets x %d rooms accepted with REPORT_MAX_POINTS %d", raw, n, rooms, api.points)
	}
}

func sameQuery(a, b presencestats.ReportQuery) bool {
	if !a.Start.Equal(b.Start) || !a.End.Equal(b.End) || a.Granularity != b.Granularity ||
		len(a.RoomIDs) != len(b.RoomIDs) || len(a.Metrics) != len(b.Metrics) {
		return false
	}
	for i := range a.RoomIDs {
		if a.RoomIDs[i] != b.RoomIDs[i] {
			return false
		}
	}
	for i := range a.Metrics {
		if a.Metrics[i] != b.Metrics[i] {
			return false
		}
	}
	return true
}
