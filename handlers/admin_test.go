package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"presencestats"
	"presencestats/handlers"
	"presencestats/storage"
	"presencestats/storage/storagetest"
)

const testSecret = "admin-test-secret-0123456789"

// adminEnv is a running service with the admin API on a real database.
type adminEnv struct {
	t        *testing.T
	srv      *httptest.Server
	pool     *pgxpool.Pool
	adminID  uuid.UUID
	userID   uuid.UUID
	adminTok string
	userTok  string
}

// newAdminEnv serves the admin API over pool, reading reports from src (storage.Reports when nil).
func newAdminEnv(t *testing.T, pool *pgxpool.Pool, src handlers.ReportSource, maxPoints int) *adminEnv {
	t.Helper()
	return newAdminEnvWith(t, pool, src, handlers.AdminConfig{MaxPoints: maxPoints})
}

// newAdminEnvWith is newAdminEnv with more of the admin API's settings (cfg; the rest is filled in).
func newAdminEnvWith(t *testing.T, pool *pgxpool.Pool, src handlers.ReportSource, cfg handlers.AdminConfig) *adminEnv {
	t.Helper()
	if src == nil {
		src = storage.NewReports(pool, time.UTC)
	}
	auth := handlers.NewTokenAuthority(testSecret)
	log := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.Auth, cfg.Logger, cfg.Reports, cfg.Audit, cfg.Location = auth, log, src, storage.NewAudit(pool), time.UTC
	admin := handlers.NewAdmin(cfg)
	rooms := handlers.NewWebAPI(src, log, admin.Guard(handlers.ActionRoomsList)...)
	router := handlers.NewRouter(handlers.RouterConfig{
		Logger: log, Registry: prometheus.NewRegistry(), Features: []handlers.Feature{admin, rooms},
	})
	srv := httptest.NewServer(router)
	t.Cleanup(srv.Close)
	e := &adminEnv{t: t, srv: srv, pool: pool, adminID: uuid.New(), userID: uuid.New()}
	var err error
	if e.adminTok, err = auth.Mint(e.adminID, handlers.RoleAdmin, time.Hour); err != nil {
		t.Fatal(err)
	}
	if e.userTok, err = auth.Mint(e.userID, handlers.RoleUser, time.Hour); err != nil {
		t.Fatal(err)
	}
	return e
}

// testLog sends the service's warnings and errors to the test's log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// get sends GET path with token (none when empty) and returns the answer with its body read.
func (e *adminEnv) get(path, token string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("User-Agent", "admin-test/1.0")
	// Forged: the test server trusts no proxy, so the audited client IP must stay the peer's.
	req.Header.Set("X-Forwarded-For", "198.51.100.66")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("GET %s: read body: %v", path, err)
	}
	return res, body
}

// auditRow is an admin_audit_log row as the tests read it straight from the table.
type auditRow struct {
	ID         int64
	AdminID    uuid.UUID
	Action     string
	Parameters map[string]any
	ClientIP   string
	UserAgent  string
	Status     int
	DurationMS float64
}

// auditRows returns the rows of admin (oldest first).
func auditRows(t *testing.T, pool *pgxpool.Pool, admin uuid.UUID) []auditRow {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT id, admin_id, action, parameters::text, coalesce(host(client_ip), ''), coalesce(user_agent, ''), status, duration_ms
		FROM admin_audit_log WHERE admin_id = $1 ORDER BY id`, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var r auditRow
		var params string
		if err := rows.Scan(&r.ID, &r.AdminID, &r.Action, &params, &r.ClientIP, &r.UserAgent, &r.Status, &r.DurationMS); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(params), &r.Parameters); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func reportPath(params map[string]string) string {
	v := url.Values{}
	for k, s := range params {
		v.Set(k, s)
	}
	return "/admin/api/stats/reports?" + v.Encode()
}

func errorMessage(t *testing.T, body []byte) string {
	t.Helper()
	var b handlers.ErrorBody
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return b.Error.Message
}

func TestAdminReportAuth(t *testing.T) {
	e := newAdminEnv(t, storagetest.SharedDatabase(t), nil, 0)
	path := reportPath(map[string]string{
		"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-02T00:00:00Z", "granularity": "hour",
		"room_ids": uuid.NewString(),
	})
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"invalid token", e.adminTok + "x", http.StatusUnauthorized},
		{"regular user", e.userTok, http.StatusForbidden},
		{"admin", e.adminTok, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := e.get(path, tc.token)
			if got, want := res.StatusCode, tc.want; got != want {
				t.Fatalf("status = %d, want %d: %s", got, want, body)
			}
		})
	}
	// The regular user's refused attempt is audited under its subject; 401s name nobody.
	rows := auditRows(t, e.pool, e.userID)
	if len(rows) != 1 || rows[0].Status != http.StatusForbidden || rows[0].Action != handlers.ActionReport {
		t.Fatalf("audit rows of the regular user = %+v, want one 403 %s", rows, handlers.ActionReport)
	}
	if rows := auditRows(t, e.pool, e.adminID); len(rows) != 1 || rows[0].Status != http.StatusOK {
		t.Fatalf("audit rows of the admin = %+v, want one 200", rows)
	}
}

func TestAdminReportValidation(t *testing.T) {
	e := newAdminEnv(t, storagetest.SharedDatabase(t), nil, 1000)
	room := uuid.NewString()
	base := map[string]string{
		"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-02T00:00:00Z", "granularity": "hour", "room_ids": room,
	}
	manyRooms := make([]string, handlers.MaxReportRooms+1)
	for i := range manyRooms {
		manyRooms[i] = uuid.NewString()
	}
	for _, tc := range []struct {
		name    string
		set     map[string]string
		message string // a part of the error message
	}{
		{"unknown granularity", map[string]string{"granularity": "minute"}, `granularity: "minute" is not one of hour, day, week, month, year`},
		{"missing granularity", map[string]string{"granularity": ""}, "granularity: is required"},
		{"unknown metric", map[string]string{"metrics": "online_count,bogus"}, `metrics: "bogus" is not one of`},
		{"malformed room id", map[string]string{"room_ids": room + ",not-a-uuid"}, `room_ids: "not-a-uuid" is not a room UUID`},
		{"too many room ids", map[string]string{"room_ids": strings.Join(manyRooms, ",")}, "room_ids: more than 1000 rooms"},
		{"malformed start", map[string]string{"start_time": "2026-01-01"}, `start_time: "2026-01-01" is not an RFC 3339 time`},
		{"missing end", map[string]string{"end_time": ""}, "end_time: is required"},
		{"malformed end", map[string]string{"end_time": "tomorrow"}, `end_time: "tomorrow" is not an RFC 3339 time`},
		{"end equals start", map[string]string{"end_time": "2026-01-01T00:00:00Z"}, "end_time: 2026-01-01T00:00:00Z is not after start_time"},
		{"end before start", map[string]string{"end_time": "2025-12-31T00:00:00Z"}, "is not after start_time"},
		{"too many buckets", map[string]string{"end_time": "2026-03-01T00:00:00Z"}, "start_time/end_time/granularity: at least 1001 buckets x 1 rooms is more than 1000 rows (REPORT_MAX_POINTS)"},
		{"too many rooms x buckets", map[string]string{"room_ids": strings.Join(manyRooms[:50], ","), "end_time": "2026-01-01T23:00:00Z"}, "21 buckets x 50 rooms is more than 1000 rows"},
		{"unknown format", map[string]string{"format": "pdf"}, `format: "pdf" is not csv or xlsx`},
		// A NUL byte cannot be stored in the audit row as sent; the request is still audited (400).
		{"NUL room id", map[string]string{"room_ids": "\x00"}, `room_ids: "\x00" is not a room UUID`},
		// Buckets must start in the years 1 to 9999 in UTC (and REPORT_TIMEZONE): JSON and CSV
		// cannot write other years.
		{"first bucket before year 1", map[string]string{"start_time": "0001-01-01T00:30:00+01:00", "end_time": "0001-01-01T05:00:00Z"},
			"start_time: 0001-01-01T00:30:00+01:00: its hour bucket would start before the year 1"},
		{"end after year 9999", map[string]string{"start_time": "9999-12-31T22:00:00Z", "end_time": "9999-12-31T23:00:00-23:00"},
			"end_time: 9999-12-31T23:00:00-23:00 is after the year 9999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := map[string]string{}
			for k, v := range base {
				p[k] = v
			}
			for k, v := range tc.set {
				p[k] = v
			}
			res, body := e.get(reportPath(p), e.adminTok)
			if got, want := res.StatusCode, http.StatusBadRequest; got != want {
				t.Fatalf("status = %d, want %d: %s", got, want, body)
			}
			if got := errorMessage(t, body); !strings.Contains(got, tc.message) {
				t.Fatalf("message = %q, want it to contain %q", got, tc.message)
			}
		})
	}
	// Every rejected request left a 400 row.
	rows := auditRows(t, e.pool, e.adminID)
	if got, want := len(rows), 16; got != want {
		t.Fatalf("audit rows = %d, want %d", got, want)
	}
	for _, r := range rows {
		if r.Status != http.StatusBadRequest {
			t.Fatalf("audit row %+v: status %d, want 400", r, r.Status)
		}
	}
}

// TestAdminReportOddInput: what RFC 3339 and HTTP allow is served, and a client's bytes that
// PostgreSQL cannot store (a NUL in a parameter, a User-Agent that is not UTF-8) are audited with
// U+FFFD in their place rather than refused as an unwritable audit row (503).
func TestAdminReportOddInput(t *testing.T) {
	e := newAdminEnv(t, storagetest.SharedDatabase(t), nil, 0)
	path := reportPath(map[string]string{
		"start_time": "2026-01-01t00:00:00z", "end_time": "2026-01-02T00:00:00z", "granularity": "Hour",
		"room_ids": uuid.NewString(), "note": "a\x00b",
	})
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.adminTok)
	req.Header.Set("User-Agent", "odd-agent \xff\xfe")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200: %s", res.StatusCode, body)
	}
	rows := auditRows(t, e.pool, e.adminID)
	if len(rows) != 1 {
		t.Fatalf("audit rows = %+v, want one", rows)
	}
	if got, want := rows[0].UserAgent, "odd-agent \uFFFD"; got != want {
		t.Errorf("audited user agent = %q, want %q", got, want)
	}
	if got, want := rows[0].Parameters["note"], "a\uFFFDb"; got != want {
		t.Errorf("audited note = %q, want %q", got, want)
	}
	if got := rows[0].Parameters["start_time"]; got != "2026-01-01t00:00:00z" {
		t.Errorf("audited start_time = %q, want it as sent", got)
	}
}

// TestAdminCSVStalledClient: a client that stops reading a CSV download is cut off after
// StallTimeout, which ends the query and frees its database connection (the only one locally),
// instead of holding them for as long as it keeps the connection open.
func TestAdminCSVStalledClient(t *testing.T) {
	pool := storagetest.SharedDatabase(t)
	e := newAdminEnvWith(t, pool, nil, handlers.AdminConfig{StallTimeout: 300 * time.Millisecond})
	// 1,000 rooms x 100 hours: 100,000 rows, about 9 MB, more than loopback buffers hold.
	rooms := make([]string, handlers.MaxReportRooms)
	for i := range rooms {
		rooms[i] = uuid.NewString()
	}
	path := reportPath(map[string]string{
		"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-05T04:00:00Z", "granularity": "hour",
		"room_ids": strings.Join(rooms, ","), "format": "csv",
	})
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\n\r\n", path, e.adminTok); err != nil {
		t.Fatal(err)
	}
	// The client reads nothing and keeps the connection open: the download's audit row must be
	// completed as cut off while it does.
	var result map[string]any
	waitAudit := func() (bool, error) {
		a := auditRows(t, pool, e.adminID)
		if len(a) != 1 {
			return false, nil
		}
		result, _ = a[0].Parameters["result"].(map[string]any)
		return result != nil, nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for ok, _ := waitAudit(); !ok; ok, _ = waitAudit() {
		if time.Now().After(deadline) {
			t.Fatal("the stalled download was not cut off: its audit row was never completed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if result["complete"] != false {
		t.Fatalf("audit result = %v, want complete false", result)
	}
	if rows, _ := result["rows"].(float64); rows >= 100000 {
		t.Fatalf("audit result = %v: every row was sent to a client that read nothing", result)
	}
	// The database is free again: another report is answered while the stalled client is connected.
	res, body := e.get(reportPath(map[string]string{
		"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-02T00:00:00Z", "granularity": "hour", "room_ids": rooms[0],
	}), e.adminTok)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("report after the stall: status %d: %s", res.StatusCode, body)
	}
}

// fakeReports is a ReportSource that fails on demand: it serves to test what the database cannot
// be made to do on cue (fail after some rows).
type fakeReports struct {
	rows      []presencestats.ReportRow
	failAfter int // Stats fails after this many rows (-1: never)
}

func (f *fakeReports) Stats(ctx context.Context, q presencestats.ReportQuery, fn func(presencestats.ReportRow) error) error {
	for i, r := range f.rows {
		if i == f.failAfter {
			return errors.New("connection lost")
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if f.failAfter >= len(f.rows) {
		return errors.New("connection lost")
	}
	return nil
}

func (f *fakeReports) Report(ctx context.Context, q presencestats.ReportQuery, fn func(presencestats.ReportRow) error) ([]presencestats.TotalsRow, []presencestats.PeakHour, error) {
	return nil, nil, f.Stats(ctx, q, fn)
}

func (f *fakeReports) Rooms(context.Context) ([]uuid.UUID, error) {
	return []uuid.UUID{uuid.New()}, nil
}

func TestAdminCSVFailure(t *testing.T) {
	room := uuid.New()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var rows []presencestats.ReportRow
	for i := range 5000 {
		rows = append(rows, presencestats.ReportRow{RoomID: room, Bucket: start.Add(time.Duration(i) * time.Hour), Granularity: presencestats.Hour, PeakOnline: int64(i)})
	}
	path := reportPath(map[string]string{
		"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-08-01T00:00:00Z", "granularity": "hour",
		"room_ids": room.String(), "format": "csv",
	})
	t.Run("before the first row", func(t *testing.T) {
		e := newAdminEnv(t, storagetest.SharedDatabase(t), &fakeReports{rows: rows, failAfter: 0}, 0)
		res, body := e.get(path, e.adminTok)
		if got, want := res.StatusCode, http.StatusInternalServerError; got != want {
			t.Fatalf("status = %d, want %d: %s", got, want, body)
		}
		if cd := res.Header.Get("Content-Disposition"); cd != "" {
			t.Fatalf("Content-Disposition = %q on an error", cd)
		}
		if strings.Contains(string(body), "connection lost") {
			t.Fatalf("5xx body carries the internal error: %s", body)
		}
		a := auditRows(t, e.pool, e.adminID)
		if len(a) != 1 || a[0].Status != http.StatusInternalServerError || a[0].Action != handlers.ActionReportCSV {
			t.Fatalf("audit = %+v, want one 500 %s row", a, handlers.ActionReportCSV)
		}
	})
	t.Run("half way", func(t *testing.T) {
		e := newAdminEnv(t, storagetest.SharedDatabase(t), &fakeReports{rows: rows, failAfter: 3000}, 0)
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+e.adminTok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if got, want := res.StatusCode, http.StatusOK; got != want {
			t.Fatalf("status = %d, want %d", got, want)
		}
		if _, err := io.ReadAll(res.Body); err == nil {
			t.Fatal("reading a download that failed half way succeeded: the client cannot tell it is truncated")
		}
		a := auditRows(t, e.pool, e.adminID)
		if len(a) != 1 {
			t.Fatalf("audit = %+v, want one row", a)
		}
		result, _ := a[0].Parameters["result"].(map[string]any)
		if result["complete"] != false || result["rows"] != float64(3000) {
			t.Fatalf("audit result = %v, want rows 3000, complete false", a[0].Parameters)
		}
	})
}

// unwritableAudit makes admin_audit_log refuse inserts, as a full disk or a lost grant would.
func unwritableAudit(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	for _, sql := range []string{
		`CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit log is read-only'; END $$`,
		`CREATE TRIGGER refuse_audit BEFORE INSERT ON admin_audit_log FOR EACH ROW EXECUTE FUNCTION refuse_audit()`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAdminAuditUnwritable(t *testing.T) {
	pool := storagetest.NewDatabase(t) // its own instance: the trigger must not reach other tests
	sc := seedScenario(t, pool)
	room := sc.room1
	e := newAdminEnv(t, pool, nil, 0)
	unwritableAudit(t, pool)
	for _, format := range []string{"", "csv", "xlsx"} {
		t.Run("format="+format, func(t *testing.T) {
			res, body := e.get(reportPath(map[string]string{
				"start_time": sc.at(10, 0).Format(time.RFC3339), "end_time": sc.at(12, 0).Format(time.RFC3339), "granularity": "hour",
				"room_ids": room.String(), "format": format,
			}), e.adminTok)
			if got, want := res.StatusCode, http.StatusServiceUnavailable; got != want {
				t.Fatalf("status = %d, want %d: %s", got, want, body)
			}
			if res.Header.Get("Content-Disposition") != "" || strings.Contains(string(body), "stats") || strings.Contains(string(body), room.String()) {
				t.Fatalf("an unaudited request got report data: %s", body)
			}
			if got := errorMessage(t, body); !strings.Contains(got, "audit log unavailable") {
				t.Fatalf("message = %q", got)
			}
		})
	}
	t.Run("audit read", func(t *testing.T) {
		res, body := e.get("/admin/api/audit", e.adminTok)
		if got, want := res.StatusCode, http.StatusServiceUnavailable; got != want {
			t.Fatalf("status = %d, want %d: %s", got, want, body)
		}
	})
}

func TestAdminAuditList(t *testing.T) {
	e := newAdminEnv(t, storagetest.NewDatabase(t), nil, 0) // its own instance: the list sees every admin's rows
	for i := range 5 {
		res, body := e.get(fmt.Sprintf("/admin/api/stats/reports?granularity=hour&start_time=2026-01-01T00:00:00Z&end_time=2026-01-01T0%d:00:00Z&room_ids=%s", i+1, uuid.New()), e.adminTok)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("report %d: %d %s", i, res.StatusCode, body)
		}
	}
	type page struct {
		Entries []struct {
			ID         int64          `json:"id"`
			AdminID    uuid.UUID      `json:"admin_id"`
			Action     string         `json:"action"`
			Parameters map[string]any `json:"parameters"`
			ClientIP   string         `json:"client_ip"`
			UserAgent  string         `json:"user_agent"`
			Status     int            `json:"status"`
			DurationMS float64        `json:"duration_ms"`
		} `json:"entries"`
		NextBefore string `json:"next_before"`
	}
	read := func(path string) page {
		t.Helper()
		res, body := e.get(path, e.adminTok)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, res.StatusCode, body)
		}
		var p page
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p1 := read("/admin/api/audit?limit=3")
	if len(p1.Entries) != 3 || p1.NextBefore == "" {
		t.Fatalf("page 1 = %+v, want 3 entries and a cursor", p1)
	}
	// Newest first: the fifth report, then the fourth...
	if got, want := p1.Entries[0].Parameters["end_time"], "2026-01-01T05:00:00Z"; got != want {
		t.Fatalf("newest entry end_time = %v, want %v", got, want)
	}
	first := p1.Entries[0]
	if first.AdminID != e.adminID || first.Action != handlers.ActionReport || first.Status != http.StatusOK ||
		first.ClientIP != "127.0.0.1" || first.UserAgent != "admin-test/1.0" || first.DurationMS <= 0 ||
		first.Parameters["granularity"] != "hour" {
		t.Fatalf("entry = %+v", first)
	}
	p2 := read("/admin/api/audit?limit=3&before=" + p1.NextBefore)
	// The audit read of page 1 is newer than the cursor: page 2 holds the 2 oldest reports.
	if len(p2.Entries) != 2 || p2.NextBefore != "" {
		t.Fatalf("page 2 = %+v, want the 2 oldest entries", p2)
	}
	if got, want := p2.Entries[1].Parameters["end_time"], "2026-01-01T01:00:00Z"; got != want {
		t.Fatalf("oldest entry end_time = %v, want %v", got, want)
	}
	if p := read("/admin/api/audit?before=2000-01-01T00:00:00Z"); len(p.Entries) != 0 {
		t.Fatalf("entries before 2000: %+v", p)
	}
	if p := read("/admin/api/audit?limit=1000&before=2100-01-01T00:00:00Z"); len(p.Entries) != 8 {
		t.Fatalf("entries before 2100 = %d, want 8 (5 reports, 3 audit reads)", len(p.Entries))
	}
	for _, tc := range []struct{ query, message string }{
		{"limit=0", `limit: "0" is not a whole number from 1 to 1000`},
		{"limit=1001", `limit: "1001" is not a whole number from 1 to 1000`},
		{"limit=ten", `limit: "ten" is not a whole number`},
		{"before=yesterday", `before: "yesterday" is neither an RFC 3339 time nor an audit entry id`},
	} {
		res, body := e.get("/admin/api/audit?"+tc.query, e.adminTok)
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(errorMessage(t, body), tc.message) {
			t.Fatalf("%s: %d %s, want 400 %q", tc.query, res.StatusCode, body, tc.message)
		}
	}
	if res, _ := e.get("/admin/api/audit", e.userTok); res.StatusCode != http.StatusForbidden {
		t.Fatalf("regular user reading the audit: %d, want 403", res.StatusCode)
	}
	if res, _ := e.get("/admin/api/audit", ""); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token reading the audit: %d, want 401", res.StatusCode)
	}
}

// The dashboard's room list goes through Admin.Guard: admins only, audited before the handler
// runs, the row completed with the status sent.
func TestAdminGuardRoomsList(t *testing.T) {
	pool := storagetest.NewDatabase(t) // its own instance: it makes the audit table unwritable
	e := newAdminEnv(t, pool, nil, 0)
	if res, body := e.get("/admin/api/rooms", e.adminTok); res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"rooms"`) {
		t.Fatalf("admin: %d %s", res.StatusCode, body)
	}
	if res, _ := e.get("/admin/api/rooms", e.userTok); res.StatusCode != http.StatusForbidden {
		t.Fatalf("regular user: %d, want 403", res.StatusCode)
	}
	if res, _ := e.get("/admin/api/rooms", ""); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", res.StatusCode)
	}
	a := auditRows(t, pool, e.adminID)
	if len(a) != 1 || a[0].Action != handlers.ActionRoomsList || a[0].Status != http.StatusOK || a[0].DurationMS <= 0 {
		t.Fatalf("admin audit rows = %+v", a)
	}
	if u := auditRows(t, pool, e.userID); len(u) != 1 || u[0].Status != http.StatusForbidden {
		t.Fatalf("user audit rows = %+v", u)
	}
	unwritableAudit(t, pool)
	if res, body := e.get("/admin/api/rooms", e.adminTok); res.StatusCode != http.StatusServiceUnavailable || strings.Contains(string(body), `"rooms"`) {
		t.Fatalf("audit unwritable: %d %s, want 503 without rooms", res.StatusCode, body)
	}
}
