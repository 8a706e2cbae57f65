package handlers

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"presencestats"
)

// invalidf is a 400 whose message names the parameter and says why it is wrong.
func invalidf(param, format string, args ...any) error {
	return presencestats.Errorf(presencestats.EINVALID, param+": "+format, args...)
}

// parseReportQuery validates a report request's parameters. Every problem is EINVALID (400) with
// a message naming the parameter; only the room count (for a query over all rooms) touches the
// database.
func (a *Admin) parseReportQuery(ctx context.Context, c *gin.Context) (presencestats.ReportQuery, string, error) {
	var q presencestats.ReportQuery

	format := strings.ToLower(strings.TrimSpace(c.Query("format")))
	switch format {
	case "", "json":
		format = ""
	case FormatCSV, FormatXLSX:
	default:
		return q, "", invalidf("format", "%q is not csv or xlsx (leave it out for JSON)", c.Query("format"))
	}

	if v, ok := c.GetQuery("room_ids"); ok {
		seen := map[uuid.UUID]bool{}
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			id, err := uuid.Parse(s)
			if err != nil || id == uuid.Nil {
				return q, "", invalidf("room_ids", "%q is not a room UUID", s)
			}
			if !seen[id] {
				seen[id] = true
				q.RoomIDs = append(q.RoomIDs, id)
			}
			if len(q.RoomIDs) > MaxReportRooms {
				return q, "", invalidf("room_ids", "more than %d rooms; leave room_ids out for all rooms", MaxReportRooms)
			}
		}
	}

	var err error
	if q.Start, err = parseTimeParam(c, "start_time"); err != nil {
		return q, "", err
	}
	if q.End, err = parseTimeParam(c, "end_time"); err != nil {
		return q, "", err
	}
	if !q.End.After(q.Start) {
		return q, "", invalidf("end_time", "%s is not after start_time %s", c.Query("end_time"), c.Query("start_time"))
	}

	g, ok := c.GetQuery("granularity")
	if !ok || strings.TrimSpace(g) == "" {
		return q, "", invalidf("granularity", "is required: one of hour, day, week, month, year")
	}
	if q.Granularity, err = presencestats.ParseGranularity(g); err != nil {
		return q, "", invalidf("granularity", "%q is not one of hour, day, week, month, year", g)
	}
	lo, hi := presencestats.ReportTimeBounds(a.loc)
	if first := q.Granularity.Truncate(q.Start, a.loc); first.Before(lo) {
		return q, "", invalidf("start_time", "%s: its %s bucket would start before the year 1 (reports cover the years 1 to 9999)",
			c.Query("start_time"), q.Granularity)
	}
	if q.End.After(hi) {
		return q, "", invalidf("end_time", "%s is after the year 9999 (reports cover the years 1 to 9999)", c.Query("end_time"))
	}

	if v := strings.TrimSpace(c.Query("metrics")); v == "" {
		q.Metrics = append(q.Metrics, presencestats.Metrics...)
	} else {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			m, err := presencestats.ParseMetric(s)
			if err != nil {
				return q, "", invalidf("metrics", "%q is not one of online_count, unique_users, session_duration, connection_frequency, peak_hours", s)
			}
			if !q.Wants(m) {
				q.Metrics = append(q.Metrics, m)
			}
		}
	}

	rooms := len(q.RoomIDs)
	if rooms == 0 {
		all, err := a.reports.Rooms(ctx)
		if err != nil {
			return q, "", fmt.Errorf("count rooms for REPORT_MAX_POINTS: %w", err)
		}
		rooms = max(len(all), 1)
		q.EveryRoom = all // the report's every room, not read twice
	}
	limit := a.maxPoints
	if format == FormatXLSX {
		limit = min(limit, maxXLSXRows)
	}
	buckets := q.Granularity.CountBuckets(q.Start, q.End, a.loc, limit/rooms+1)
	if points := buckets * rooms; points > limit {
		what := "REPORT_MAX_POINTS"
		if format == FormatXLSX && limit < a.maxPoints {
			what = "an XLSX sheet's rows"
		}
		return q, "", invalidf("start_time/end_time/granularity",
			"%s buckets x %d rooms is more than %d rows (%s): narrow the range, pick fewer rooms or a coarser granularity",
			atLeast(buckets, limit/rooms+1), rooms, limit, what)
	}
	return q, format, nil
}

func atLeast(n, cap int) string {
	if n >= cap {
		return fmt.Sprintf("at least %d", n)
	}
	return fmt.Sprint(n)
}

// parseTimeParam reads a required RFC 3339 time.
func parseTimeParam(c *gin.Context, name string) (time.Time, error) {
	v, ok := c.GetQuery(name)
	if !ok || strings.TrimSpace(v) == "" {
		return time.Time{}, invalidf(name, "is required (RFC 3339, e.g. 2026-01-02T15:04:05Z)")
	}
	t, err := parseRFC3339(v)
	if err != nil {
		return time.Time{}, invalidf(name, "%q is not an RFC 3339 time like 2026-01-02T15:04:05Z", v)
	}
	return t, nil
}

// parseRFC3339 parses an RFC 3339 time. RFC 3339 allows a lower-case "t" and "z" (section 5.6);
// Go's layout wants upper case, and no other letter can appear in such a time.
func parseRFC3339(v string) (time.Time, error) {
	return time.Parse(time.RFC3339Nano, strings.ToUpper(strings.TrimSpace(v)))
}
