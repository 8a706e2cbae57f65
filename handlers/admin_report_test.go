package handlers_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"html"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/xuri/excelize/v2"

	"presencestats/handlers"
	"presencestats/storage/storagetest"
)

// scenario is two rooms on one day (three days ago, UTC):
//
//	room1: 10:00 u1 connects (s1), 10:30 u2 connects (s2), 10:45 u1 opens a second tab (s3),
//	       10:50 s3 closes (300 s), 11:10 s1 closes (4200 s), 11:30 s2 closes (3600 s);
//	room2: 10:15 u2 connects (s4), 10:45 s4 closes (1800 s).
type scenario struct {
	day          time.Time
	room1, room2 uuid.UUID
	u1, u2       uuid.UUID
}

func (s scenario) at(h, m int) time.Time {
	return s.day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}

func seedScenario(t *testing.T, pool *pgxpool.Pool) scenario {
	t.Helper()
	s := scenario{
		day:   time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -3),
		room1: uuid.New(), room2: uuid.New(), u1: uuid.New(), u2: uuid.New(),
	}
	s1, s2, s3, s4 := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	type ev struct {
		ts                  time.Time
		room, user, session uuid.UUID
		typ                 string
		after, delta        int
		seconds             *float64
	}
	sec := func(f float64) *float64 { return &f }
	events := []ev{
		{s.at(10, 0), s.room1, s.u1, s1, "connected", 1, 1, nil},
		{s.at(10, 30), s.room1, s.u2, s2, "connected", 2, 1, nil},
		{s.at(10, 45), s.room1, s.u1, s3, "connected", 2, 0, nil},
		{s.at(10, 50), s.room1, s.u1, s3, "disconnected", 2, 0, sec(300)},
		{s.at(11, 10), s.room1, s.u1, s1, "disconnected", 1, -1, sec(4200)},
		{s.at(11, 30), s.room1, s.u2, s2, "disconnected", 0, -1, sec(3600)},
		{s.at(10, 15), s.room2, s.u2, s4, "connected", 1, 1, nil},
		{s.at(10, 45), s.room2, s.u2, s4, "disconnected", 0, -1, sec(1800)},
	}
	for _, e := range events {
		var reason *string
		if e.typ == "disconnected" {
			r := "closed"
			reason = &r
		}
		_, err := pool.Exec(context.Background(), `
			INSERT INTO presence_events (event_id, ts, room_id, user_id, session_id, event_type, online_after, online_delta, session_seconds, reason)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			uuid.New(), e.ts, e.room, e.user, e.session, e.typ, e.after, e.delta, e.seconds, reason)
		if err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// reportJSON is the JSON answer, rows kept as maps so that left-out metrics can be seen.
type reportJSON struct {
	Stats           []map[string]any  `json:"stats"`
	Totals          []map[string]any  `json:"totals"`
	PeakHours       *[]map[string]any `json:"peak_hours"`
	GeneratedAt     time.Time         `json:"generated_at"`
	QueryDurationMS *float64          `json:"query_duration_ms"`
}

func (e *adminEnv) report(params map[string]string) reportJSON {
	e.t.Helper()
	res, body := e.get(reportPath(params), e.adminTok)
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("report %v: %d %s", params, res.StatusCode, body)
	}
	var r reportJSON
	if err := json.Unmarshal(body, &r); err != nil {
		e.t.Fatal(err)
	}
	return r
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestAdminReportValues(t *testing.T) {
	pool := storagetest.SharedDatabase(t)
	sc := seedScenario(t, pool)
	e := newAdminEnv(t, pool, nil, 0)
	rooms := sc.room1.String() + "," + sc.room2.String()

	r := e.report(map[string]string{
		"room_ids": rooms, "granularity": "HOUR", // case-insensitive
		"start_time": sc.at(10, 0).Format(time.RFC3339), "end_time": sc.at(12, 0).Format(time.RFC3339),
	})
	type want struct {
		room                     uuid.UUID
		bucket                   time.Time
		peak, conns, unique      float64
		avgOnline, avgSessionSec float64
	}
	wantStats := []want{
		{sc.room1, sc.at(10, 0), 2, 3, 2, 1.5, 300},        // 30 min x1 + 30 min x2; s3 ended
		{sc.room1, sc.at(11, 0), 2, 0, 2, 40.0 / 60, 3900}, // 2 at 11:00 until 11:10, 1 until 11:30; s1, s2 ended
		{sc.room2, sc.at(10, 0), 1, 1, 1, 0.5, 1800},       // 30 min x1
		{sc.room2, sc.at(11, 0), 0, 0, 0, 0, 0},            // a quiet bucket is still there
	}
	if sc.room2.String() < sc.room1.String() { // ordered by room, then bucket
		wantStats = append(wantStats[2:], wantStats[:2]...)
	}
	if got, want := len(r.Stats), len(wantStats); got != want {
		t.Fatalf("stats rows = %d, want %d: %v", got, want, r.Stats)
	}
	for i, w := range wantStats {
		g := r.Stats[i]
		bucket, _ := time.Parse(time.RFC3339, g["time_bucket"].(string))
		if g["room_id"] != w.room.String() || !bucket.Equal(w.bucket) || g["granularity"] != "hour" ||
			g["peak_online_count"] != w.peak || g["total_connections"] != w.conns || g["unique_users"] != w.unique ||
			!near(g["avg_online_count"].(float64), w.avgOnline) || !near(g["avg_session_duration"].(float64), w.avgSessionSec) {
			t.Errorf("stats[%d] = %v, want %+v", i, g, w)
		}
	}
	wantTotals := []want{
		// peak: sum of the rooms' peaks; avg: sum of averages; u2 in both rooms counts once; sessions weighted.
		{uuid.Nil, sc.at(10, 0), 3, 4, 2, 2.0, (300 + 1800) / 2.0},
		{uuid.Nil, sc.at(11, 0), 2, 0, 2, 40.0 / 60, 3900},
	}
	if got, want := len(r.Totals), len(wantTotals); got != want {
		t.Fatalf("totals rows = %d, want %d: %v", got, want, r.Totals)
	}
	for i, w := range wantTotals {
		g := r.Totals[i]
		bucket, _ := time.Parse(time.RFC3339, g["time_bucket"].(string))
		if !bucket.Equal(w.bucket) || g["peak_online_count"] != w.peak || g["total_connections"] != w.conns ||
			g["unique_users"] != w.unique || !near(g["avg_online_count"].(float64), w.avgOnline) ||
			!near(g["avg_session_duration"].(float64), w.avgSessionSec) {
			t.Errorf("totals[%d] = %v, want %+v", i, g, w)
		}
	}
	if r.PeakHours == nil || r.GeneratedAt.IsZero() || r.QueryDurationMS == nil {
		t.Fatalf("peak_hours, generated_at or query_duration_ms missing from the default (all metrics) answer")
	}

	// A day, only unique users: other metrics are left out, and so is peak_hours.
	r = e.report(map[string]string{
		"room_ids": rooms, "granularity": "day", "metrics": "unique_users",
		"start_time": sc.day.Format(time.RFC3339), "end_time": sc.day.AddDate(0, 0, 1).Format(time.RFC3339),
	})
	if r.PeakHours != nil {
		t.Fatalf("peak_hours present without being asked for")
	}
	for _, row := range append(r.Stats, r.Totals...) {
		for k := range row {
			if !slices.Contains([]string{"room_id", "time_bucket", "granularity", "unique_users"}, k) {
				t.Fatalf("row %v has %s, not asked for", row, k)
			}
		}
	}
	if len(r.Totals) != 1 || r.Totals[0]["unique_users"] != 2.0 {
		t.Fatalf("day totals = %v, want unique_users 2", r.Totals)
	}

	// The whole day, all metrics, one room: the time-weighted average is over 24 hours.
	r = e.report(map[string]string{
		"room_ids": sc.room1.String(), "granularity": "day", "metrics": "online_count,session_duration,peak_hours",
		"start_time": sc.day.Format(time.RFC3339), "end_time": sc.day.AddDate(0, 0, 1).Format(time.RFC3339),
	})
	if len(r.Stats) != 1 || !near(r.Stats[0]["avg_online_count"].(float64), 130.0/1440) ||
		r.Stats[0]["peak_online_count"] != 2.0 || !near(r.Stats[0]["avg_session_duration"].(float64), 2700) {
		t.Fatalf("day stats = %v, want avg 130/1440, peak 2, session 2700", r.Stats)
	}
	if r.PeakHours == nil {
		t.Fatalf("peak_hours asked for and missing")
	}
	for _, h := range *r.PeakHours {
		if h["hour"] == 10.0 && h["peak_online_count"] != 2.0 {
			t.Fatalf("peak hour 10 = %v, want peak 2", h)
		}
	}

	// Every request above left one audit row with its fields.
	rows := auditRows(t, pool, e.adminID)
	if len(rows) != 3 {
		t.Fatalf("audit rows = %d, want 3", len(rows))
	}
	a := rows[0]
	if a.Action != handlers.ActionReport || a.Status != http.StatusOK || a.ClientIP != "127.0.0.1" ||
		a.UserAgent != "admin-test/1.0" || a.DurationMS <= 0 || a.Parameters["room_ids"] != rooms ||
		a.Parameters["granularity"] != "HOUR" || a.Parameters["start_time"] != sc.at(10, 0).Format(time.RFC3339) {
		t.Fatalf("audit row = %+v", a)
	}
}

// TestAdminDownloadsMatchJSON reads the CSV and XLSX of a query back and compares every cell with
// the JSON answer of the same query.
func TestAdminDownloadsMatchJSON(t *testing.T) {
	pool := storagetest.SharedDatabase(t)
	sc := seedScenario(t, pool)
	e := newAdminEnv(t, pool, nil, 0)
	for _, tc := range []struct {
		name   string
		params map[string]string
	}{
		{"hour, all metrics", map[string]string{"granularity": "hour", "start_time": sc.at(9, 0).Format(time.RFC3339), "end_time": sc.at(13, 0).Format(time.RFC3339)}},
		{"day, two metrics", map[string]string{"granularity": "day", "metrics": "online_count,connection_frequency", "start_time": sc.day.AddDate(0, 0, -1).Format(time.RFC3339), "end_time": sc.day.AddDate(0, 0, 2).Format(time.RFC3339)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.params["room_ids"] = sc.room1.String() + "," + sc.room2.String()
			want := e.report(tc.params)
			cols := []string{"room_id", "time_bucket", "granularity"}
			for _, c := range []string{"peak_online_count", "avg_online_count", "total_connections", "unique_users", "avg_session_duration"} {
				if _, ok := want.Stats[0][c]; ok {
					cols = append(cols, c)
				}
			}

			// CSV: one header row, then exactly the stats rows.
			tc.params["format"] = "csv"
			res, body := e.get(reportPath(tc.params), e.adminTok)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("csv: %d %s", res.StatusCode, body)
			}
			if cd := res.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") || !strings.Contains(cd, tc.params["granularity"]) ||
				!strings.Contains(cd, ".csv") {
				t.Fatalf("Content-Disposition = %q", cd)
			}
			records, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(records[0], cols) {
				t.Fatalf("csv header = %v, want %v", records[0], cols)
			}
			if got, want := len(records)-1, len(want.Stats); got != want {
				t.Fatalf("csv rows = %d, want %d", got, want)
			}
			for i, rec := range records[1:] {
				for j, col := range cols {
					compareCell(t, "csv", i, col, rec[j], want.Stats[i][col])
				}
			}

			// XLSX: stats on sheet 1, totals on sheet 2, a chart on sheet 3.
			tc.params["format"] = "xlsx"
			res, body = e.get(reportPath(tc.params), e.adminTok)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("xlsx: %d %s", res.StatusCode, body)
			}
			if cd := res.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") || !strings.Contains(cd, ".xlsx") {
				t.Fatalf("Content-Disposition = %q", cd)
			}
			f, err := excelize.OpenReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if got, want := f.GetSheetList(), []string{handlers.SheetStats, handlers.SheetTotals, handlers.SheetChart}; !slices.Equal(got, want) {
				t.Fatalf("sheets = %v, want %v", got, want)
			}
			compareSheet(t, f, handlers.SheetStats, cols, want.Stats)
			compareSheet(t, f, handlers.SheetTotals, append([]string{"time_bucket"}, cols[3:]...), want.Totals)
			if panes, err := f.GetPanes(handlers.SheetStats); err != nil || !panes.Freeze || panes.YSplit != 1 {
				t.Fatalf("stats header not frozen: %+v %v", panes, err)
			}
			if w, err := f.GetColWidth(handlers.SheetStats, "A"); err != nil || w < 30 {
				t.Fatalf("room_id column width = %v %v", w, err)
			}
			zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
			if err != nil {
				t.Fatal(err)
			}
			var chart, sheet1 string
			for _, zf := range zr.File {
				if zf.Name == "xl/charts/chart1.xml" || zf.Name == "xl/worksheets/sheet1.xml" {
					rc, _ := zf.Open()
					var b bytes.Buffer
					_, _ = b.ReadFrom(rc)
					rc.Close()
					if zf.Name == "xl/worksheets/sheet1.xml" {
						sheet1 = b.String()
					} else {
						chart = b.String()
					}
				}
			}
			// Excel wants <col> elements in column order (it offers to "repair" the file otherwise).
			if i1, i2 := strings.Index(sheet1, `<col min="1"`), strings.Index(sheet1, `<col min="2"`); i1 < 0 || i2 < i1 {
				t.Fatalf("stats sheet <cols> not in column order")
			}
			if chart = html.UnescapeString(chart); !strings.Contains(chart, "<lineChart>") || !strings.Contains(chart, "'Totals'!$B$2:$B$") {
				t.Fatalf("xl/charts/chart1.xml is not a line chart of the totals: %.300s", chart)
			}
			// A text category axis: a date axis would put every hour of a day on one point.
			if !strings.Contains(chart, `<auto val="0"></auto>`) || strings.Contains(chart, `<auto val="1">`) {
				t.Fatalf("xl/charts/chart1.xml: the category axis is not a text axis: %.300s", chart)
			}
		})
	}
	rows := auditRows(t, pool, e.adminID)
	var actions []string
	for _, r := range rows {
		actions = append(actions, r.Action)
		if r.Status != http.StatusOK {
			t.Fatalf("audit row %+v", r)
		}
		if r.Action == handlers.ActionReportCSV {
			if res, _ := r.Parameters["result"].(map[string]any); res["complete"] != true {
				t.Fatalf("csv audit row without a complete result: %+v", r)
			}
		}
	}
	if want := []string{handlers.ActionReport, handlers.ActionReportCSV, handlers.ActionReportXLSX}; !slices.Equal(actions[:3], want) {
		t.Fatalf("audit actions = %v, want %v twice", actions, want)
	}
}

// compareCell compares a downloaded cell (as text) with the JSON value of the same column.
func compareCell(t *testing.T, where string, row int, col, got string, want any) {
	t.Helper()
	switch w := want.(type) {
	case float64:
		g, err := strconv.ParseFloat(got, 64)
		if err != nil || g != w {
			t.Errorf("%s row %d %s = %q, want %v", where, row, col, got, w)
		}
	case string:
		if col == "time_bucket" {
			gt, err1 := time.Parse(time.RFC3339, got)
			wt, err2 := time.Parse(time.RFC3339, w)
			if err1 != nil || err2 != nil || !gt.Equal(wt) {
				t.Errorf("%s row %d %s = %q, want %q", where, row, col, got, w)
			}
			return
		}
		if got != w {
			t.Errorf("%s row %d %s = %q, want %q", where, row, col, got, w)
		}
	default:
		t.Errorf("%s row %d %s: JSON value %v of type %T", where, row, col, want, want)
	}
}

// compareSheet compares a worksheet's header and every typed cell with the JSON rows.
func compareSheet(t *testing.T, f *excelize.File, sheet string, cols []string, want []map[string]any) {
	t.Helper()
	rows, err := f.GetRows(sheet, excelize.Options{RawCellValue: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(rows)-1, len(want); got != want {
		t.Fatalf("%s: %d rows, want %d", sheet, got, want)
	}
	for j, col := range cols {
		if h := rows[0][j]; !strings.HasPrefix(h, col+" (") && h != col {
			t.Fatalf("%s header %d = %q, want %s with its unit", sheet, j, h, col)
		}
	}
	for i, row := range rows[1:] {
		for j, col := range cols {
			cell, _ := excelize.CoordinatesToCellName(j+1, i+2)
			typ, err := f.GetCellType(sheet, cell)
			if err != nil {
				t.Fatal(err)
			}
			switch col {
			case "room_id", "granularity":
				compareCell(t, sheet, i, col, row[j], want[i][col])
			case "time_bucket":
				serial, err := strconv.ParseFloat(row[j], 64)
				if err != nil {
					t.Fatalf("%s %s = %q: not an Excel date serial", sheet, cell, row[j])
				}
				got, _ := excelize.ExcelDateToTime(serial, false)
				wt, _ := time.Parse(time.RFC3339, want[i][col].(string))
				if d := got.Sub(handlers.ExcelWallClock(wt, time.UTC)); d < -time.Second || d > time.Second {
					t.Errorf("%s %s = %v, want %v", sheet, cell, got, wt)
				}
				style, _ := f.GetCellStyle(sheet, cell)
				if st, err := f.GetStyle(style); err != nil || st.CustomNumFmt == nil || !strings.Contains(*st.CustomNumFmt, "yyyy") {
					t.Errorf("%s %s is not formatted as a date", sheet, cell)
				}
			default:
				if typ != excelize.CellTypeNumber && typ != excelize.CellTypeUnset {
					t.Errorf("%s %s has type %v, want a number", sheet, cell, typ)
				}
				// Excel keeps 15 significant digits, and excelize reads numbers back rounded so.
				g, err := strconv.ParseFloat(row[j], 64)
				if w, ok := want[i][col].(float64); err != nil || !ok || math.Abs(g-w) > 1e-14*math.Max(1, math.Abs(w)) {
					t.Errorf("%s %s (%s) = %q, want %v", sheet, cell, col, row[j], want[i][col])
				}
			}
		}
	}
}
