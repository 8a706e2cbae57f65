package presencestats

import (
	"strings"
	"time"

	"github.com/google/uuid"
)

// Metric names a group of report columns that a query may ask for.
type Metric string

const (
	MetricOnlineCount         Metric = "online_count"         // peak_online_count, avg_online_count
	MetricUniqueUsers         Metric = "unique_users"         // unique_users
	MetricSessionDuration     Metric = "session_duration"     // avg_session_duration
	MetricConnectionFrequency Metric = "connection_frequency" // total_connections
	MetricPeakHours           Metric = "peak_hours"           // the peak_hours section
)

// Metrics lists every metric, the default of a query.
var Metrics = []Metric{MetricOnlineCount, MetricUniqueUsers, MetricSessionDuration, MetricConnectionFrequency, MetricPeakHours}

// ParseMetric accepts a metric name in any case.
func ParseMetric(s string) (Metric, error) {
	m := Metric(strings.ToLower(strings.TrimSpace(s)))
	for _, v := range Metrics {
		if m == v {
			return m, nil
		}
	}
	return "", Errorf(EINVALID, "metric %q is not one of online_count, unique_users, session_duration, connection_frequency, peak_hours", s)
}

// ReportQuery asks for presence history: rooms (none = all rooms), the range [Start, End),
// the bucket width and the metrics wanted.
type ReportQuery struct {
	RoomIDs     []uuid.UUID
	Start, End  time.Time
	Granularity Granularity
	Metrics     []Metric
	// EveryRoom is, when RoomIDs is empty and the caller has just read the room list (the admin
	// API does, to bound the rows a report may return), that list, so the report does not read it
	// again. Nil: the report reads it.
	EveryRoom []uuid.UUID
}

// ReportTimeBounds returns the earliest first bucket start and the latest range end a report may
// have in zone loc: every bucket starts in the years 1 to 9999, both in UTC and in loc, the years
// an RFC 3339 time (the JSON and CSV answers) can be written in.
func ReportTimeBounds(loc *time.Location) (firstBucket, end time.Time) {
	firstBucket, end = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if t := time.Date(1, 1, 1, 0, 0, 0, 0, loc); t.After(firstBucket) {
		firstBucket = t
	}
	if t := time.Date(10000, 1, 1, 0, 0, 0, 0, loc); t.Before(end) {
		end = t
	}
	return firstBucket, end
}

// Wants reports whether the query asks for m.
func (q ReportQuery) Wants(m Metric) bool {
	for _, v := range q.Metrics {
		if v == m {
			return true
		}
	}
	return false
}

// ReportRow is one room's presence in one bucket.
type ReportRow struct {
	RoomID      uuid.UUID
	Bucket      time.Time // start of the bucket, in REPORT_TIMEZONE
	Granularity Granularity
	// PeakOnline is the most distinct users online at once during the bucket (including users
	// online through the whole bucket without any event in it).
	PeakOnline int64
	// AvgOnline is the time-weighted average of distinct users online over the bucket (over the
	// elapsed part of a bucket still in progress).
	AvgOnline float64
	// TotalConnections is the number of sessions opened in the bucket.
	TotalConnections int64
	// UniqueUsers is the number of distinct users with any event in the bucket.
	UniqueUsers int64
	// AvgSessionDuration is the mean length in seconds of the sessions that ended in the bucket
	// (0 when none ended).
	AvgSessionDuration float64
}

// TotalsRow is the selected rooms together in one bucket. UniqueUsers counts a user seen in
// several rooms once; AvgOnline is the sum of the rooms' averages; PeakOnline is the sum of the
// rooms' peaks (an upper bound: rooms may peak at different moments); AvgSessionDuration is
// weighted by the sessions that ended in each room.
type TotalsRow struct {
	Bucket             time.Time
	PeakOnline         int64
	AvgOnline          float64
	TotalConnections   int64
	UniqueUsers        int64
	AvgSessionDuration float64
}

// PeakHour is presence by hour of day (0-23, in REPORT_TIMEZONE) over a report's range, for the
// selected rooms together: AvgOnline is the mean over the range's hours of that hour of day of
// the rooms' summed hourly averages; PeakOnline the largest summed hourly peak.
type PeakHour struct {
	Hour       int
	AvgOnline  float64
	PeakOnline int64
}
