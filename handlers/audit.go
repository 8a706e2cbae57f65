package handlers

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"presencestats"
)

// Actions recorded in the audit trail.
const (
	ActionReport     = "stats_report"
	ActionReportCSV  = "stats_report_csv"
	ActionReportXLSX = "stats_report_xlsx"
	ActionAuditRead  = "audit_read"
	ActionRoomsList  = "rooms_list"
)

// AuditLog is the admin audit trail (storage.Audit implements it).
type AuditLog interface {
	// Record appends an entry and returns its id.
	Record(ctx context.Context, e presencestats.AuditEntry) (int64, error)
	// Complete sets the final status and duration of a recorded entry and merges result into
	// its parameters (downloads: rows sent, whether the stream completed).
	Complete(ctx context.Context, id int64, status int, d time.Duration, result map[string]any) error
	// List returns entries newest first.
	List(ctx context.Context, q presencestats.AuditQuery) ([]presencestats.AuditEntry, error)
}

// auditWriteTimeout bounds an audit write. Audit writes do not follow the client's context: a
// client that hangs up after its query ran still leaves its row.
const auditWriteTimeout = 10 * time.Second

// What is audited, and when:
//   - every /admin/api request with a valid token, admin or not: a valid non-admin token gets 403
//     and a row naming its subject (admin_id holds whoever the token names); a request without a
//     valid token gets 401 and no row, since it names nobody (the request log has it);
//   - rejected requests (400) and failed ones (5xx) too, with the status they got;
//   - the row is written before the answer: JSON reports and XLSX after the query has run,
//     CSV after validation and before the query streams (see reportCSV). If the row cannot be
//     written, the answer is 503 and no report is sent.
type auditRecord struct {
	a      *Admin
	c      *gin.Context
	start  time.Time
	action string
	params json.RawMessage
	id     int64
}

// audited wraps an admin handler: it starts the request's audit record and refuses non-admins
// (403, audited).
func (a *Admin) audited(action func(*gin.Context) string, h func(*gin.Context, *auditRecord)) gin.HandlerFunc {
	return func(c *gin.Context) {
		rec := &auditRecord{a: a, c: c, start: a.now(), action: action(c), params: auditParams(c)}
		if ClaimsOf(c).Role != RoleAdmin {
			rec.fail(presencestats.Errorf(presencestats.EFORBIDDEN, "admin role required"))
			return
		}
		h(c, rec)
	}
}

// auditParams returns the query parameters as sent (a parameter given twice is joined with a
// comma), without access_token: a token in the audit trail would be a credential at rest.
func auditParams(c *gin.Context) json.RawMessage {
	p := map[string]string{}
	for k, v := range c.Request.URL.Query() {
		if k == "access_token" {
			continue
		}
		p[k] = strings.Join(v, ",")
	}
	b, err := json.Marshal(p)
	if err != nil { // a map of strings always marshals
		return json.RawMessage("{}")
	}
	return b
}

// commit writes the request's audit row with status. It returns EUNAVAILABLE when the row could
// not be written: the caller must then not send the report.
func (r *auditRecord) commit(status int) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.c.Request.Context()), auditWriteTimeout)
	defer cancel()
	ip := requestIP(r.c)
	id, err := r.a.audit.Record(ctx, presencestats.AuditEntry{
		At: r.start, AdminID: ClaimsOf(r.c).UserID, Action: r.action, Parameters: r.params,
		ClientIP: ip, UserAgent: r.c.Request.UserAgent(), Status: status, Duration: r.a.now().Sub(r.start),
	})
	if err != nil {
		return presencestats.Wrap(presencestats.EUNAVAILABLE, err, "audit log unavailable: admin requests are refused until it is back")
	}
	r.id = id
	return nil
}

// complete updates a committed row once a streamed download has ended; a failure is logged
// (the row already exists and the data is already sent).
func (r *auditRecord) complete(status int, result map[string]any) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.c.Request.Context()), auditWriteTimeout)
	defer cancel()
	if err := r.a.audit.Complete(ctx, r.id, status, r.a.now().Sub(r.start), result); err != nil {
		r.a.log.ErrorContext(ctx, "audit: complete download row", "err", err, "audit_id", r.id,
			"request_id", r.c.GetString(requestIDKey))
	}
}

// fail answers err after recording it; if the record cannot be written the answer is 503.
func (r *auditRecord) fail(err error) {
	if aerr := r.commit(ErrorStatus(err)); aerr != nil {
		r.a.log.ErrorContext(r.c.Request.Context(), "audit: record failed request", "err", err)
		err = aerr
	}
	writeError(r.c, r.a.log, err)
}

// DefaultAuditLimit and MaxAuditLimit bound GET /admin/api/audit?limit=.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// auditEntryJSON is one audit row as GET /admin/api/audit shows it.
type auditEntryJSON struct {
	ID         int64           `json:"id"`
	At         time.Time       `json:"at"`
	AdminID    uuid.UUID       `json:"admin_id"`
	Action     string          `json:"action"`
	Parameters json.RawMessage `json:"parameters"`
	ClientIP   string          `json:"client_ip,omitempty"`
	UserAgent  string          `json:"user_agent"`
	Status     int             `json:"status"`
	DurationMS float64         `json:"duration_ms"`
}

type auditResponse struct {
	Entries []auditEntryJSON `json:"entries"`
	// NextBefore is the cursor of the next page (the last entry's id), empty on the last page.
	NextBefore string `json:"next_before,omitempty"`
}

// auditList answers GET /admin/api/audit?limit=&before=: entries newest first; before is an
// RFC 3339 time (entries strictly older) or an entry id (entries after it in this order).
func (a *Admin) auditList(c *gin.Context, rec *auditRecord) {
	q := presencestats.AuditQuery{Limit: DefaultAuditLimit}
	if v := strings.TrimSpace(c.Query("limit")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxAuditLimit {
			rec.fail(invalidf("limit", "%q is not a whole number from 1 to %d", v, MaxAuditLimit))
			return
		}
		q.Limit = n
	}
	if v := strings.TrimSpace(c.Query("before")); v != "" {
		if id, err := strconv.ParseInt(v, 10, 64); err == nil && id > 0 {
			q.BeforeID = id
		} else if t, err := parseRFC3339(v); err == nil {
			q.Before = t
		} else {
			rec.fail(invalidf("before", "%q is neither an RFC 3339 time nor an audit entry id", v))
			return
		}
	}
	entries, err := a.audit.List(c.Request.Context(), q)
	if err != nil {
		rec.fail(err)
		return
	}
	resp := auditResponse{Entries: make([]auditEntryJSON, 0, len(entries))}
	for _, e := range entries {
		j := auditEntryJSON{
			ID: e.ID, At: e.At.UTC(), AdminID: e.AdminID, Action: e.Action, Parameters: e.Parameters,
			UserAgent: e.UserAgent, Status: e.Status, DurationMS: durationMS(e.Duration),
		}
		if len(j.Parameters) == 0 {
			j.Parameters = json.RawMessage("{}")
		}
		if e.ClientIP.IsValid() {
			j.ClientIP = e.ClientIP.String()
		}
		resp.Entries = append(resp.Entries, j)
	}
	if len(entries) == q.Limit {
		resp.NextBefore = strconv.FormatInt(entries[len(entries)-1].ID, 10)
	}
	if err := rec.commit(http.StatusOK); err != nil {
		writeError(c, a.log, err) // unaudited: nothing is sent
		return
	}
	c.JSON(http.StatusOK, resp)
}

// Guard returns the middleware chain for another feature's admin endpoint (the dashboard's
// GET /admin/api/rooms): token check (401), admin check (403, audited), then an audit row written
// before the handler runs (503 and the handler never runs when it cannot be written). The row
// records status 200 and the time until then; once the handler has answered, the row is updated
// with the status it sent and the whole duration, as for a CSV download.
func (a *Admin) Guard(action string) gin.HandlersChain {
	return gin.HandlersChain{RequireUser(a.auth, a.log), func(c *gin.Context) {
		rec := &auditRecord{a: a, c: c, start: a.now(), action: action, params: auditParams(c)}
		if ClaimsOf(c).Role != RoleAdmin {
			rec.fail(presencestats.Errorf(presencestats.EFORBIDDEN, "admin role required"))
			return
		}
		if err := rec.commit(http.StatusOK); err != nil {
			writeError(c, a.log, err) // unaudited: the handler does not run
			return
		}
		c.Next()
		rec.complete(c.Writer.Status(), nil)
	}}
}
