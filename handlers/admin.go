package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"presencestats"
)

// ReportSource is what the admin reports read: the history's continuous aggregates
// (storage.Reports implements it).
type ReportSource interface {
	// Stats calls fn for every selected room and bucket of q's range, ordered by room then
	// bucket, buckets without events included. It stops at fn's first error and returns it.
	Stats(ctx context.Context, q presencestats.ReportQuery, fn func(presencestats.ReportRow) error) error
	// Report is Stats, then the selected rooms together per bucket (totals) and, when q wants
	// peak_hours, presence by hour of day, in one call sharing what they have in common.
	Report(ctx context.Context, q presencestats.ReportQuery, fn func(presencestats.ReportRow) error) ([]presencestats.TotalsRow, []presencestats.PeakHour, error)
	// Rooms returns every room the aggregates know.
	Rooms(ctx context.Context) ([]uuid.UUID, error)
}

// MaxReportRooms bounds room_ids: beyond it a query string is no longer a sensible way to pick rooms.
const MaxReportRooms = 1000

// maxXLSXRows is what one worksheet holds below its header row (Excel's limit is 1,048,576 rows).
const maxXLSXRows = 1<<20 - 1

// Report download formats (the format query parameter); "" is the JSON answer.
const (
	FormatCSV  = "csv"
	FormatXLSX = "xlsx"
)

// AdminConfig is what the admin API needs.
type AdminConfig struct {
	Auth    *TokenAuthority
	Logger  *slog.Logger
	Reports ReportSource
	Audit   AuditLog
	// Location is REPORT_TIMEZONE: buckets start at its midnights, times are written in it.
	Location *time.Location
	// MaxPoints is REPORT_MAX_POINTS: the most stats rows (rooms x buckets) one report may return.
	MaxPoints int
	// StallTimeout cuts off a CSV or XLSX download whose client accepts nothing for that long
	// (DefaultStallTimeout when 0): a CSV download holds a database connection while it streams.
	StallTimeout time.Duration
	// Limits bounds the reports running at once and their database time (REPORT_CONCURRENCY,
	// REPORT_QUEUE_TIMEOUT, REPORT_TIMEOUT); nil: no limit.
	Limits *ReportLimits
	Now    func() time.Time // the clock; time.Now when nil
}

// DefaultStallTimeout is AdminConfig.StallTimeout's default.
const DefaultStallTimeout = 20 * time.Second

// Admin serves the admin API under /admin/api: reports (JSON, CSV, XLSX) and the audit trail.
// Every request that carries a valid token is audited (see audit.go); requests without a valid
// token are refused with 401 before anything else and are not audited: they name nobody.
type Admin struct {
	auth      *TokenAuthority
	log       *slog.Logger
	reports   ReportSource
	audit     AuditLog
	loc       *time.Location
	maxPoints int
	stall     time.Duration
	limits    *ReportLimits
	now       func() time.Time
}

// NewAdmin returns the admin API feature.
func NewAdmin(cfg AdminConfig) *Admin {
	a := &Admin{
		auth: cfg.Auth, log: cfg.Logger, reports: cfg.Reports, audit: cfg.Audit,
		loc: cfg.Location, maxPoints: cfg.MaxPoints, stall: cfg.StallTimeout, limits: cfg.Limits, now: cfg.Now,
	}
	if a.stall <= 0 {
		a.stall = DefaultStallTimeout
	}
	if a.loc == nil {
		a.loc = time.UTC
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.maxPoints <= 0 {
		a.maxPoints = 100000
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	return a
}

// Register adds the admin routes.
func (a *Admin) Register(r *gin.Engine) {
	g := r.Group("/admin/api", RequireUser(a.auth, a.log))
	g.GET("/stats/reports", a.audited(reportAction, a.report))
	g.GET("/audit", a.audited(func(*gin.Context) string { return ActionAuditRead }, a.auditList))
}

// reportAction names a report request in the audit trail after its format.
func reportAction(c *gin.Context) string {
	switch strings.ToLower(c.Query("format")) {
	case FormatCSV:
		return ActionReportCSV
	case FormatXLSX:
		return ActionReportXLSX
	}
	return ActionReport
}

// report answers GET /admin/api/stats/reports: JSON, or a CSV or XLSX download with format=.
// Its parameters are checked first (a bad request gets its 400 without waiting), then it waits
// for one of the REPORT_CONCURRENCY slots and holds it until the answer is sent, the streaming
// of a download included; its database work is bounded by REPORT_TIMEOUT (reportDeadline).
func (a *Admin) report(c *gin.Context, rec *auditRecord) {
	ctx := c.Request.Context()
	pd := a.limits.deadline(ctx) // the room count of a query over every room is database work too
	q, format, err := a.parseReportQuery(pd.ctx, c)
	pd.close()
	if err != nil {
		rec.fail(pd.check(err))
		return
	}
	release, err := a.limits.acquire(ctx)
	if err != nil {
		rec.fail(err)
		return
	}
	defer release()
	d := a.limits.deadline(ctx)
	defer d.close()
	switch format {
	case FormatCSV:
		a.reportCSV(c, rec, q, d)
	case FormatXLSX:
		a.reportXLSX(c, rec, q, d)
	default:
		a.reportJSON(c, rec, q, d)
	}
}

// reportJSON runs the whole query, audits, then answers: the audit row is written after the
// query and before a byte of the answer, so an unaudited report is never sent.
func (a *Admin) reportJSON(c *gin.Context, rec *auditRecord, q presencestats.ReportQuery, d *reportDeadline) {
	started := a.now()
	cols := reportColumns(q)
	resp := reportResponse{Stats: []statsRowJSON{}, Totals: []totalsRowJSON{}}
	totals, hours, err := a.reports.Report(d.ctx, q, func(r presencestats.ReportRow) error {
		resp.Stats = append(resp.Stats, statsRowOf(r, cols, a.loc))
		return nil
	})
	d.stop()
	if err = d.check(err); err != nil {
		rec.fail(err)
		return
	}
	for _, t := range totals {
		resp.Totals = append(resp.Totals, totalsRowOf(t, cols, a.loc))
	}
	if q.Wants(presencestats.MetricPeakHours) {
		ph := make([]peakHourJSON, 0, len(hours))
		for _, h := range hours {
			ph = append(ph, peakHourJSON{Hour: h.Hour, AvgOnlineCount: h.AvgOnline, PeakOnlineCount: h.PeakOnline})
		}
		resp.PeakHours = &ph
	}
	resp.QueryDurationMS = durationMS(a.now().Sub(started))
	resp.GeneratedAt = a.now().UTC()
	if err := rec.commit(http.StatusOK); err != nil {
		writeError(c, a.log, err) // unaudited: nothing is sent
		return
	}
	c.JSON(http.StatusOK, resp)
}

// reportResponse is the JSON answer of a report.
type reportResponse struct {
	Stats  []statsRowJSON  `json:"stats"`
	Totals []totalsRowJSON `json:"totals"`
	// PeakHours is left out unless the query asks for peak_hours.
	PeakHours       *[]peakHourJSON `json:"peak_hours,omitempty"`
	GeneratedAt     time.Time       `json:"generated_at"`
	QueryDurationMS float64         `json:"query_duration_ms"`
}

// statsRowJSON is one room and bucket; a metric not asked for is left out (nil pointer).
type statsRowJSON struct {
	RoomID      uuid.UUID                 `json:"room_id"`
	TimeBucket  time.Time                 `json:"time_bucket"`
	Granularity presencestats.Granularity `json:"granularity"`
	metricsJSON
}

type totalsRowJSON struct {
	TimeBucket time.Time `json:"time_bucket"`
	metricsJSON
}

type metricsJSON struct {
	PeakOnlineCount    *int64   `json:"peak_online_count,omitempty"`
	AvgOnlineCount     *float64 `json:"avg_online_count,omitempty"`
	TotalConnections   *int64   `json:"total_connections,omitempty"`
	UniqueUsers        *int64   `json:"unique_users,omitempty"`
	AvgSessionDuration *float64 `json:"avg_session_duration,omitempty"`
}

type peakHourJSON struct {
	Hour            int     `json:"hour"`
	AvgOnlineCount  float64 `json:"avg_online_count"`
	PeakOnlineCount int64   `json:"peak_online_count"`
}

// metricValues are one row's metric values, whichever row kind they come from.
type metricValues struct {
	PeakOnline, TotalConnections, UniqueUsers int64
	AvgOnline, AvgSessionDuration             float64
}

func statsRowOf(r presencestats.ReportRow, cols []reportColumn, loc *time.Location) statsRowJSON {
	return statsRowJSON{
		RoomID: r.RoomID, TimeBucket: r.Bucket.In(loc), Granularity: r.Granularity,
		metricsJSON: metricsOf(metricValues{r.PeakOnline, r.TotalConnections, r.UniqueUsers, r.AvgOnline, r.AvgSessionDuration}, cols),
	}
}

func totalsRowOf(t presencestats.TotalsRow, cols []reportColumn, loc *time.Location) totalsRowJSON {
	return totalsRowJSON{
		TimeBucket:  t.Bucket.In(loc),
		metricsJSON: metricsOf(metricValues{t.PeakOnline, t.TotalConnections, t.UniqueUsers, t.AvgOnline, t.AvgSessionDuration}, cols),
	}
}

func metricsOf(v metricValues, cols []reportColumn) metricsJSON {
	var m metricsJSON
	for _, col := range cols {
		switch col.Name {
		case colPeakOnline:
			m.PeakOnlineCount = &v.PeakOnline
		case colAvgOnline:
			m.AvgOnlineCount = &v.AvgOnline
		case colTotalConnections:
			m.TotalConnections = &v.TotalConnections
		case colUniqueUsers:
			m.UniqueUsers = &v.UniqueUsers
		case colAvgSessionDuration:
			m.AvgSessionDuration = &v.AvgSessionDuration
		}
	}
	return m
}

// Column names: the JSON keys, the CSV header and the XLSX header (with units).
const (
	colPeakOnline         = "peak_online_count"
	colAvgOnline          = "avg_online_count"
	colTotalConnections   = "total_connections"
	colUniqueUsers        = "unique_users"
	colAvgSessionDuration = "avg_session_duration"
)

// reportColumn is one metric column of the stats and totals rows.
type reportColumn struct {
	Name  string
	Unit  string // for the XLSX header
	Float bool   // a float (averages) rather than a count
}

// value returns the column's value in v: an int64 or a float64.
func (col reportColumn) value(v metricValues) any {
	switch col.Name {
	case colPeakOnline:
		return v.PeakOnline
	case colAvgOnline:
		return v.AvgOnline
	case colTotalConnections:
		return v.TotalConnections
	case colUniqueUsers:
		return v.UniqueUsers
	default:
		return v.AvgSessionDuration
	}
}

// reportColumns returns the metric columns q asks for, in the contract's order.
func reportColumns(q presencestats.ReportQuery) []reportColumn {
	var cols []reportColumn
	if q.Wants(presencestats.MetricOnlineCount) {
		cols = append(cols, reportColumn{Name: colPeakOnline, Unit: "users"}, reportColumn{Name: colAvgOnline, Unit: "users", Float: true})
	}
	if q.Wants(presencestats.MetricConnectionFrequency) {
		cols = append(cols, reportColumn{Name: colTotalConnections, Unit: "sessions"})
	}
	if q.Wants(presencestats.MetricUniqueUsers) {
		cols = append(cols, reportColumn{Name: colUniqueUsers, Unit: "users"})
	}
	if q.Wants(presencestats.MetricSessionDuration) {
		cols = append(cols, reportColumn{Name: colAvgSessionDuration, Unit: "s", Float: true})
	}
	return cols
}

func durationMS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
