package handlers

import (
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"presencestats"
)

// csvFlushRows is how many rows are buffered before they are pushed to the client.
const csvFlushRows = 1000

// reportFilename names a download after its granularity and range, in REPORT_TIMEZONE:
// presence-report_hour_20260101T000000Z_20260108T000000Z.csv.
func reportFilename(q presencestats.ReportQuery, loc *time.Location, ext string) string {
	const f = "20060102T150405Z0700"
	return fmt.Sprintf("presence-report_%s_%s_%s.%s", q.Granularity, q.Start.In(loc).Format(f), q.End.In(loc).Format(f), ext)
}

// csvHeader is the stats columns q asks for, named as the JSON keys.
func csvHeader(cols []reportColumn) []string {
	h := []string{"room_id", "time_bucket", "granularity"}
	for _, col := range cols {
		h = append(h, col.Name)
	}
	return h
}

// formatCSVValue writes numbers as JSON would read them back: integers as integers, floats in
// the shortest decimal form that parses back to the same float64.
func formatCSVValue(v any) string {
	switch v := v.(type) {
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// reportCSV streams the stats rows as CSV, row by row as the database returns them: a year of
// hourly rows is never held in memory.
//
// Audit: the row is written after validation and before the query starts (the database has one
// connection locally, and it is busy while rows stream), with status 200 and the time spent so
// far. When the stream ends the same row is updated: duration_ms becomes the whole download,
// parameters.result = {"rows": n, "complete": true|false}, and status becomes the error's status
// if the query failed before the first byte left (the client then gets that error, not a file).
// A failure after the first byte cannot change the status line: the connection is closed without
// the final chunk so the client sees a truncated download rather than a short file that looks
// whole.
//
// REPORT_TIMEOUT bounds the database work until the first row: once rows stream, the client's
// pace sets the time (the stall guard cuts a client that accepts nothing).
func (a *Admin) reportCSV(c *gin.Context, rec *auditRecord, q presencestats.ReportQuery, d *reportDeadline) {
	if err := rec.commit(http.StatusOK); err != nil {
		writeError(c, a.log, err) // unaudited: nothing is sent
		return
	}
	cols := reportColumns(q)
	out := newStallGuard(c, a.stall)
	defer out.release()
	w := csv.NewWriter(out)
	rows := 0
	record := make([]string, 0, 3+len(cols))
	err := a.reports.Stats(d.ctx, q, func(r presencestats.ReportRow) error {
		if rows == 0 {
			d.stop()
			c.Header("Content-Type", "text/csv; charset=utf-8")
			c.Header("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, reportFilename(q, a.loc, FormatCSV)))
			c.Status(http.StatusOK)
			if err := w.Write(csvHeader(cols)); err != nil {
				return fmt.Errorf("write csv header: %w", err)
			}
		}
		v := metricValues{r.PeakOnline, r.TotalConnections, r.UniqueUsers, r.AvgOnline, r.AvgSessionDuration}
		record = append(record[:0], r.RoomID.String(), r.Bucket.In(a.loc).Format(time.RFC3339), string(r.Granularity))
		for _, col := range cols {
			record = append(record, formatCSVValue(col.value(v)))
		}
		if err := w.Write(record); err != nil {
			return fmt.Errorf("write csv row: %w", err)
		}
		rows++
		if rows%csvFlushRows == 0 {
			w.Flush()
			if err := w.Error(); err != nil {
				return fmt.Errorf("send csv rows: %w", err)
			}
			c.Writer.Flush()
		}
		return nil
	})
	d.stop()
	err = d.check(err)
	if err == nil && rows == 0 { // no rooms: the header alone
		c.Header("Content-Type", "text/csv; charset=utf-8")
		c.Header("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, reportFilename(q, a.loc, FormatCSV)))
		err = w.Write(csvHeader(cols))
	}
	if err == nil {
		w.Flush()
		err = w.Error()
	}
	switch {
	case err == nil:
		rec.complete(http.StatusOK, map[string]any{"rows": rows, "complete": true})
	case !c.Writer.Written(): // nothing has left yet: the client gets the error instead of a file
		c.Writer.Header().Del("Content-Disposition")
		rec.complete(ErrorStatus(err), map[string]any{"rows": 0, "complete": false})
		writeError(c, a.log, err)
	default:
		a.log.ErrorContext(c.Request.Context(), "csv download interrupted", "err", err, "rows", rows,
			"request_id", c.GetString(requestIDKey))
		rec.complete(http.StatusOK, map[string]any{"rows": rows, "complete": false})
		abortConnection(c)
	}
}

// stallGuard writes a download to the client with a write deadline renewed on every write, so
// that a client which stops reading is cut off after the timeout instead of holding the request
// (and, for a CSV download, its database connection) for as long as it keeps the connection open.
// The server itself has no write timeout: WebSocket connections last.
type stallGuard struct {
	w       io.Writer
	rc      *http.ResponseController
	timeout time.Duration
}

func newStallGuard(c *gin.Context, timeout time.Duration) *stallGuard {
	return &stallGuard{w: c.Writer, rc: http.NewResponseController(c.Writer), timeout: timeout}
}

func (g *stallGuard) Write(p []byte) (int, error) {
	_ = g.rc.SetWriteDeadline(time.Now().Add(g.timeout)) // not supported (a test recorder): no guard
	return g.w.Write(p)
}

// release clears the deadline, so that a kept-alive connection's next request does not inherit it.
func (g *stallGuard) release() { _ = g.rc.SetWriteDeadline(time.Time{}) }

// abortConnection closes the client's connection without ending the response, so that a
// download that failed half way is seen as failed (HTTP/1.1: no final chunk).
// gin refuses to hijack once body bytes were written (it guards WebSocket upgrades), so this
// goes to the net/http writer underneath. Without a hijackable connection (HTTP/2) it does nothing.
func abortConnection(c *gin.Context) {
	var w http.ResponseWriter = c.Writer
	if u, ok := w.(interface{ Unwrap() http.ResponseWriter }); ok {
		w = u.Unwrap()
	}
	h, ok := w.(http.Hijacker)
	if !ok {
		return
	}
	conn, _, err := h.Hijack()
	if err != nil {
		return
	}
	_ = conn.Close()
}
