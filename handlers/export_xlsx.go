package handlers

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/xuri/excelize/v2"

	"presencestats"
)

// Sheet names of the XLSX download.
const (
	SheetStats  = "Stats"
	SheetTotals = "Totals"
	SheetChart  = "Chart"
)

// xlsxDateFormat shows bucket starts; the cells hold Excel serial dates.
const xlsxDateFormat = "yyyy-mm-dd hh:mm"

// ExcelWallClock returns t's wall-clock time in loc as a UTC time: Excel dates have no zone, so
// the cells hold REPORT_TIMEZONE's wall clock (the header names the zone).
func ExcelWallClock(t time.Time, loc *time.Location) time.Time {
	t = t.In(loc)
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// reportXLSX builds the workbook with excelize's stream writer (rows go to a temporary file past
// a few MB, not to memory), audits, then sends it: sheet 1 the stats rows, sheet 2 the totals,
// sheet 3 a native line chart of the totals' online counts. The workbook must be whole before
// its zip can be written, so the audit row (status 200, the build time) is written after the
// query and before the first byte; a query failure is answered with its error and audited so.
func (a *Admin) reportXLSX(c *gin.Context, rec *auditRecord, q presencestats.ReportQuery, d *reportDeadline) {
	f, err := a.buildXLSX(d.ctx, q)
	d.stop()
	err = d.check(err)
	if f != nil {
		defer f.Close()
	}
	if err != nil {
		rec.fail(err)
		return
	}
	if err := rec.commit(http.StatusOK); err != nil {
		writeError(c, a.log, err) // unaudited: nothing is sent
		return
	}
	c.Header("Content-Type", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
	c.Header("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, reportFilename(q, a.loc, FormatXLSX)))
	c.Status(http.StatusOK)
	out := newStallGuard(c, a.stall)
	defer out.release()
	if err := f.Write(out); err != nil {
		a.log.ErrorContext(c.Request.Context(), "xlsx download interrupted", "err", err,
			"request_id", c.GetString(requestIDKey))
		abortConnection(c)
	}
}

func (a *Admin) buildXLSX(ctx context.Context, q presencestats.ReportQuery) (*excelize.File, error) {
	cols := reportColumns(q)
	f := excelize.NewFile()
	if err := f.SetSheetName("Sheet1", SheetStats); err != nil {
		return f, fmt.Errorf("xlsx: name stats sheet: %w", err)
	}
	st, err := newXLSXStyles(f)
	if err != nil {
		return f, err
	}
	zone := a.loc.String()

	// Sheet 1: the stats rows.
	sw, err := f.NewStreamWriter(SheetStats)
	if err != nil {
		return f, fmt.Errorf("xlsx: stats sheet: %w", err)
	}
	if err := xlsxLayout(sw, []float64{38, 18, 12}, len(cols)); err != nil {
		return f, err
	}
	header := []any{
		excelize.Cell{StyleID: st.header, Value: "room_id"},
		excelize.Cell{StyleID: st.header, Value: "time_bucket (" + zone + ")"},
		excelize.Cell{StyleID: st.header, Value: "granularity"},
	}
	header = append(header, xlsxMetricHeader(cols, st)...)
	if err := sw.SetRow("A1", header); err != nil {
		return f, fmt.Errorf("xlsx: stats header: %w", err)
	}
	row := 1
	// Report, not Stats then Totals: the room list, the start counts and the unique users of the
	// buckets in progress are read once. The workbook has no peak hours.
	noPeakHours := q
	noPeakHours.Metrics = slices.DeleteFunc(slices.Clone(q.Metrics), func(m presencestats.Metric) bool { return m == presencestats.MetricPeakHours })
	totals, _, err := a.reports.Report(ctx, noPeakHours, func(r presencestats.ReportRow) error {
		row++
		v := metricValues{r.PeakOnline, r.TotalConnections, r.UniqueUsers, r.AvgOnline, r.AvgSessionDuration}
		cells := []any{
			r.RoomID.String(),
			excelize.Cell{StyleID: st.date, Value: ExcelWallClock(r.Bucket, a.loc)},
			string(r.Granularity),
		}
		cells = append(cells, xlsxMetricCells(cols, v, st)...)
		if err := sw.SetRow(cellName(1, row), cells); err != nil {
			return fmt.Errorf("xlsx: stats row %d: %w", row, err)
		}
		return nil
	})
	if err != nil {
		return f, err
	}
	if err := sw.Flush(); err != nil {
		return f, fmt.Errorf("xlsx: flush stats sheet: %w", err)
	}

	// Sheet 2: the totals.
	if _, err := f.NewSheet(SheetTotals); err != nil {
		return f, fmt.Errorf("xlsx: totals sheet: %w", err)
	}
	tw, err := f.NewStreamWriter(SheetTotals)
	if err != nil {
		return f, fmt.Errorf("xlsx: totals sheet: %w", err)
	}
	if err := xlsxLayout(tw, []float64{18}, len(cols)); err != nil {
		return f, err
	}
	header = append([]any{excelize.Cell{StyleID: st.header, Value: "time_bucket (" + zone + ")"}}, xlsxMetricHeader(cols, st)...)
	if err := tw.SetRow("A1", header); err != nil {
		return f, fmt.Errorf("xlsx: totals header: %w", err)
	}
	for i, t := range totals {
		v := metricValues{t.PeakOnline, t.TotalConnections, t.UniqueUsers, t.AvgOnline, t.AvgSessionDuration}
		cells := append([]any{excelize.Cell{StyleID: st.date, Value: ExcelWallClock(t.Bucket, a.loc)}}, xlsxMetricCells(cols, v, st)...)
		if err := tw.SetRow(cellName(1, i+2), cells); err != nil {
			return f, fmt.Errorf("xlsx: totals row %d: %w", i+2, err)
		}
	}
	if err := tw.Flush(); err != nil {
		return f, fmt.Errorf("xlsx: flush totals sheet: %w", err)
	}

	// Sheet 3: a line chart of the totals' online counts (every metric when online_count was not
	// asked for), drawn by Excel from the Totals cells.
	if err := addOnlineChart(f, q, cols, len(totals)); err != nil {
		return f, err
	}
	f.SetActiveSheet(0)
	return f, nil
}

type xlsxStyles struct{ header, date, integer, decimal int }

func newXLSXStyles(f *excelize.File) (xlsxStyles, error) {
	var s xlsxStyles
	var err error
	dateFmt, decFmt := xlsxDateFormat, "0.00"
	for _, x := range []struct {
		id    *int
		style *excelize.Style
	}{
		{&s.header, &excelize.Style{Font: &excelize.Font{Bold: true}, Fill: excelize.Fill{Type: "pattern", Pattern: 1, Color: []string{"DDEBF7"}}}},
		{&s.date, &excelize.Style{CustomNumFmt: &dateFmt}},
		{&s.integer, &excelize.Style{NumFmt: 1}}, // 0
		{&s.decimal, &excelize.Style{CustomNumFmt: &decFmt}},
	} {
		if *x.id, err = f.NewStyle(x.style); err != nil {
			return s, fmt.Errorf("xlsx: style: %w", err)
		}
	}
	return s, nil
}

// xlsxLayout sets column widths (the leading columns, then 24 per metric) and freezes the header
// row. The stream writer wants both before the first row.
func xlsxLayout(sw *excelize.StreamWriter, lead []float64, metrics int) error {
	widths := append([]float64{}, lead...)
	for range metrics {
		widths = append(widths, 26)
	}
	// excelize puts each new <col> before the ones already set, and Excel wants them in column
	// order: set them last column first.
	for i := len(widths) - 1; i >= 0; i-- {
		if err := sw.SetColWidth(i+1, i+1, widths[i]); err != nil {
			return fmt.Errorf("xlsx: column width: %w", err)
		}
	}
	if err := sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft",
		Selection: []excelize.Selection{{SQRef: "A2", ActiveCell: "A2", Pane: "bottomLeft"}}}); err != nil {
		return fmt.Errorf("xlsx: freeze header: %w", err)
	}
	return nil
}

func xlsxMetricHeader(cols []reportColumn, st xlsxStyles) []any {
	out := make([]any, 0, len(cols))
	for _, col := range cols {
		out = append(out, excelize.Cell{StyleID: st.header, Value: col.Name + " (" + col.Unit + ")"})
	}
	return out
}

func xlsxMetricCells(cols []reportColumn, v metricValues, st xlsxStyles) []any {
	out := make([]any, 0, len(cols))
	for _, col := range cols {
		style := st.integer
		if col.Float {
			style = st.decimal
		}
		out = append(out, excelize.Cell{StyleID: style, Value: col.value(v)})
	}
	return out
}

func addOnlineChart(f *excelize.File, q presencestats.ReportQuery, cols []reportColumn, n int) error {
	last := max(n+1, 2)
	var series []excelize.ChartSeries
	online := q.Wants(presencestats.MetricOnlineCount)
	for i, col := range cols {
		if online && col.Name != colPeakOnline && col.Name != colAvgOnline {
			continue
		}
		colName, _ := excelize.ColumnNumberToName(i + 2)
		series = append(series, excelize.ChartSeries{
			Name:       fmt.Sprintf("'%s'!$%s$1", SheetTotals, colName),
			Categories: fmt.Sprintf("'%s'!$A$2:$A$%d", SheetTotals, last),
			Values:     fmt.Sprintf("'%s'!$%s$2:$%s$%d", SheetTotals, colName, colName, last),
			Marker:     excelize.ChartMarker{Symbol: "none"},
		})
	}
	if len(series) == 0 { // only peak_hours asked: there is no series to draw
		return nil
	}
	title := "Online users, selected rooms together, per " + string(q.Granularity)
	if !online {
		title = "Selected rooms together, per " + string(q.Granularity)
	}
	err := f.AddChartSheet(SheetChart, &excelize.Chart{
		Type:   excelize.Line,
		Series: series,
		Title:  excelize.ChartTitle{Paragraph: []excelize.RichTextRun{{Text: title}}},
		Legend: excelize.ChartLegend{Position: "bottom"},
		XAxis:  excelize.ChartAxis{NumFmt: excelize.ChartNumFmt{CustomNumFmt: xlsxDateFormat}},
	})
	if err != nil {
		return fmt.Errorf("xlsx: chart: %w", err)
	}
	return textCategoryAxis(f)
}

// textCategoryAxis makes the chart's category axis a text axis. excelize writes
// <c:auto val="1"/>, which lets Excel and LibreOffice turn an axis of date cells into a date
// axis counted in days: every hour of a day then lands on the same point (seen in LibreOffice
// with an hourly report). The buckets are contiguous, so evenly spaced categories are right at
// every granularity. excelize has no option for it; its chart parts are in File.Pkg until Write.
func textCategoryAxis(f *excelize.File) error {
	const auto, text = "<auto val=\"1\"></auto>", "<auto val=\"0\"></auto>"
	changed := 0
	f.Pkg.Range(func(k, v any) bool {
		name, _ := k.(string)
		b, ok := v.([]byte)
		if !ok || !strings.HasPrefix(name, "xl/charts/chart") || !bytes.Contains(b, []byte(auto)) {
			return true
		}
		f.Pkg.Store(name, bytes.ReplaceAll(b, []byte(auto), []byte(text)))
		changed++
		return true
	})
	if changed == 0 {
		return fmt.Errorf("xlsx: chart: no category axis to make a text axis (excelize changed its output?)")
	}
	return nil
}

func cellName(col, row int) string {
	name, _ := excelize.CoordinatesToCellName(col, row)
	return name
}
