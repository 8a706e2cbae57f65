package presencestats

import (
	"encoding/json"
	"net/netip"
	"time"

	"github.com/google/uuid"
)

// AuditEntry is one admin request as the audit trail (admin_audit_log) keeps it: who asked what,
// from where, and how it was answered.
type AuditEntry struct {
	ID      int64
	At      time.Time // when the request arrived
	AdminID uuid.UUID // the token's subject (also for a refused non-admin token: see handlers)
	Action  string    // stats_report, stats_report_csv, stats_report_xlsx, audit_read
	// Parameters are the query parameters as the client sent them (a JSON object).
	Parameters json.RawMessage
	ClientIP   netip.Addr // zero when unknown
	UserAgent  string
	Status     int           // the HTTP status sent
	Duration   time.Duration // from arrival until the answer was ready to be sent
}

// AuditQuery pages through the audit trail newest first: at most Limit entries older than the
// cursor, which is either a time (Before) or an entry id (BeforeID); zero values mean no cursor.
type AuditQuery struct {
	Limit    int
	Before   time.Time
	BeforeID int64
}
