// Package presencestats holds the domain of the service: who is online in which room right now
// (OnlineStats), every change of that (PresenceEvent), and how presence evolved over time
// (ReportQuery, Granularity). It has no I/O; storage and handlers implement and use these types.
package presencestats

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/google/uuid"
)

// EventType is the kind of a presence change.
type EventType string

const (
	EventConnected    EventType = "connected"
	EventDisconnected EventType = "disconnected"
	EventHeartbeat    EventType = "heartbeat"
)

// Valid reports whether t is one of the known event types.
func (t EventType) Valid() bool {
	switch t {
	case EventConnected, EventDisconnected, EventHeartbeat:
		return true
	}
	return false
}

// Reasons a session ended, stored with disconnected events.
const (
	ReasonClosed         = "closed"          // the client closed the WebSocket
	ReasonTimeout        = "timeout"         // no heartbeat for PRESENCE_TTL: expired by the sweeper
	ReasonServerShutdown = "server_shutdown" // the instance shut down gracefully
	ReasonSlowConsumer   = "slow_consumer"   // the client did not read its frames
)

// PresenceEvent is one change of presence in a room: a session connected, disconnected or is
// still alive (heartbeat). It is the row of the presence_events hypertable.
type PresenceEvent struct {
	EventID   uuid.UUID
	TS        time.Time
	RoomID    uuid.UUID
	UserID    uuid.UUID
	SessionID uuid.UUID
	Type      EventType
	// OnlineAfter is the number of distinct users online in the room right after the change.
	OnlineAfter int
	// OnlineDelta is how the change moved OnlineAfter: +1 when the user's first session connected,
	// -1 when its last one ended, 0 otherwise (another tab, a heartbeat). The history's
	// time-weighted averages are computed from it exactly.
	OnlineDelta int
	// SessionSeconds is how long the session lasted; set on disconnected events only.
	SessionSeconds float64
	// Reason says why a session ended (Reason* constants); set on disconnected events only.
	Reason    string
	UserIP    netip.Addr // zero when unknown
	UserAgent string
}

// Session is one WebSocket connection of a user to a room as the presence store registers it.
// Its client's IP and user agent are kept with it and stored with each of its events.
type Session struct {
	ID, RoomID, UserID uuid.UUID
	// ConnectedAt is when the session started; zero for a session not registered yet (the store
	// takes its own time).
	ConnectedAt time.Time
	UserIP      netip.Addr // zero when unknown
	UserAgent   string
}

// NewID returns a new time-ordered (version 7) UUID, for event and session ids: ids made later
// sort later, which keeps index inserts local.
func NewID() uuid.UUID {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.New() // the clock or entropy failed: still unique, just not ordered
	}
	return id
}

// Validate returns an EINVALID error when the event cannot be stored.
func (e PresenceEvent) Validate() error {
	switch {
	case e.EventID == uuid.Nil:
		return Errorf(EINVALID, "event_id is the zero UUID")
	case e.RoomID == uuid.Nil:
		return Errorf(EINVALID, "room_id is the zero UUID")
	case e.UserID == uuid.Nil:
		return Errorf(EINVALID, "user_id is the zero UUID")
	case e.SessionID == uuid.Nil:
		return Errorf(EINVALID, "session_id is the zero UUID")
	case !e.Type.Valid():
		return Errorf(EINVALID, "unknown event type %q", e.Type)
	case e.TS.IsZero():
		return Errorf(EINVALID, "event has no timestamp")
	case e.TS.Year() < 1 || e.TS.Year() > 9999:
		return Errorf(EINVALID, "event time %s is outside years 1 to 9999", e.TS.UTC().Format(time.RFC3339))
	case e.OnlineAfter < 0:
		return Errorf(EINVALID, "online_after is negative")
	case e.OnlineDelta < -1 || e.OnlineDelta > 1:
		return Errorf(EINVALID, "online_delta %d is not -1, 0 or 1", e.OnlineDelta)
	case e.SessionSeconds < 0:
		return Errorf(EINVALID, "session_seconds is negative")
	}
	return nil
}

// OnlineStats is the live state of one room.
type OnlineStats struct {
	RoomID       uuid.UUID `json:"room_id"`
	OnlineCount  int64     `json:"online_count"`  // distinct users online
	SessionCount int64     `json:"session_count"` // open sessions (tabs)
	Timestamp    time.Time `json:"timestamp"`
	// Degraded is true when Redis could not be reached and the counts are the last known ones.
	Degraded bool `json:"degraded,omitempty"`
	// Source says where the counts come from (Source* constants); empty on live pushes.
	Source string `json:"source,omitempty"`
}

// Sources of an OnlineStats answer.
const (
	SourceRedis    = "redis"    // Redis, now or within STATS_CACHE_TTL (not degraded)
	SourceCache    = "cache"    // Redis unreachable: the last counts this instance saw (degraded)
	SourceDatabase = "database" // Redis unreachable, nothing cached: the history's last online_after (degraded)
	SourceNone     = "none"     // neither Redis nor the database answered: zero (degraded)
)

// Granularity is the bucket width of a report.
type Granularity string

const (
	Hour  Granularity = "hour"
	Day   Granularity = "day"
	Week  Granularity = "week"
	Month Granularity = "month"
	Year  Granularity = "year"
)

// Granularities lists every granularity, finest first.
var Granularities = []Granularity{Hour, Day, Week, Month, Year}

// ParseGranularity accepts a granularity name in any case.
func ParseGranularity(s string) (Granularity, error) {
	g := Granularity(strings.ToLower(strings.TrimSpace(s)))
	for _, v := range Granularities {
		if g == v {
			return g, nil
		}
	}
	return "", Errorf(EINVALID, "granularity %q is not one of hour, day, week, month, year", s)
}

// Truncate returns the start of the bucket of width g holding t, in loc.
// Weeks start on Monday, as TimescaleDB's time_bucket does.
func (g Granularity) Truncate(t time.Time, loc *time.Location) time.Time {
	t = t.In(loc)
	y, m, d := t.Date()
	switch g {
	case Hour:
		// Hours are truncated in the zone too, so zones with 30- or 45-minute offsets agree with SQL.
		return time.Date(y, m, d, t.Hour(), 0, 0, 0, loc)
	case Day:
		return time.Date(y, m, d, 0, 0, 0, 0, loc)
	case Week:
		day := time.Date(y, m, d, 0, 0, 0, 0, loc)
		offset := (int(day.Weekday()) + 6) % 7 // days since Monday
		return day.AddDate(0, 0, -offset)
	case Month:
		return time.Date(y, m, 1, 0, 0, 0, 0, loc)
	case Year:
		return time.Date(y, 1, 1, 0, 0, 0, 0, loc)
	}
	panic(fmt.Sprintf("unknown granularity %q", g))
}

// CountBuckets returns how many buckets of width g have their start in [g.Truncate(start, loc),
// end): the rows a report has per room. It stops counting at limit when limit > 0, so that an
// absurd range costs no more than the limit it is checked against.
func (g Granularity) CountBuckets(start, end time.Time, loc *time.Location, limit int) int {
	first := g.Truncate(start, loc)
	if !end.After(first) {
		return 0
	}
	if g == Hour { // every hour is as long as every other; seconds, since a Duration overflows past 292 years
		secs := end.Unix() - first.Unix()
		n := int(secs / 3600)
		if secs%3600 != 0 || end.Nanosecond() != 0 {
			n++
		}
		if limit > 0 {
			n = min(n, limit)
		}
		return n
	}
	n := 0
	for b := first; b.Before(end) && (limit <= 0 || n < limit); b = g.Next(b) {
		n++
	}
	return n
}

// Next returns the start of the bucket after the one starting at start.
func (g Granularity) Next(start time.Time) time.Time {
	switch g {
	case Hour:
		return start.Add(time.Hour)
	case Day:
		return start.AddDate(0, 0, 1)
	case Week:
		return start.AddDate(0, 0, 7)
	case Month:
		return start.AddDate(0, 1, 0)
	case Year:
		return start.AddDate(1, 0, 0)
	}
	panic(fmt.Sprintf("unknown granularity %q", g))
}
