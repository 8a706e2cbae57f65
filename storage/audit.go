package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"presencestats"
	queries "presencestats/sql"
)

// Audit is the admin audit trail, the admin_audit_log table (migrations/00003).
type Audit struct {
	pool                      *pgxpool.Pool
	record, complete, listSQL string
}

// NewAudit returns the audit trail on pool.
func NewAudit(pool *pgxpool.Pool) *Audit {
	return &Audit{
		pool:     pool,
		record:   queries.Must("audit_record.sql"),
		complete: queries.Must("audit_complete.sql"),
		listSQL:  queries.Must("audit_list.sql"),
	}
}

// Record appends e (its ID is ignored) and returns the new entry's id. Any failure is returned
// wrapped (EUNAVAILABLE when the database cannot be reached); the caller must not serve the request.
func (a *Audit) Record(ctx context.Context, e presencestats.AuditEntry) (int64, error) {
	params := e.Parameters
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	var ip *string
	if e.ClientIP.IsValid() {
		s := e.ClientIP.String()
		ip = &s
	}
	var id int64
	// The parameters and the user agent are as the client sent them: made storable, so that no
	// byte of theirs can keep the row (and so the request) from being audited.
	err := a.pool.QueryRow(ctx, a.record, e.At, e.AdminID, storableText(e.Action), string(storableJSON(params)), ip, storableText(e.UserAgent),
		e.Status, float64(e.Duration.Microseconds())/1000).Scan(&id)
	if err != nil {
		return 0, pgError(err, "record audit entry")
	}
	return id, nil
}

// Complete sets the final status and duration of entry id and keeps result (when not nil) under
// parameters.result.
func (a *Audit) Complete(ctx context.Context, id int64, status int, d time.Duration, result map[string]any) error {
	var res *string
	if result != nil {
		b, err := json.Marshal(result)
		if err != nil {
			return fmt.Errorf("complete audit entry: encode result: %w", err)
		}
		s := string(b)
		res = &s
	}
	if _, err := a.pool.Exec(ctx, a.complete, id, status, float64(d.Microseconds())/1000, res); err != nil {
		return pgError(err, "complete audit entry")
	}
	return nil
}

// List returns at most q.Limit entries newest first, older than q.Before or after entry
// q.BeforeID in that order.
func (a *Audit) List(ctx context.Context, q presencestats.AuditQuery) ([]presencestats.AuditEntry, error) {
	var before *time.Time
	if !q.Before.IsZero() {
		before = &q.Before
	}
	var beforeID *int64
	if q.BeforeID > 0 {
		beforeID = &q.BeforeID
	}
	rows, err := a.pool.Query(ctx, a.listSQL, q.Limit, before, beforeID)
	if err != nil {
		return nil, pgError(err, "list audit entries")
	}
	defer rows.Close()
	var out []presencestats.AuditEntry
	for rows.Next() {
		var (
			e         presencestats.AuditEntry
			params    []byte
			ip, agent *string
			ms        float64
			admin     uuid.UUID
		)
		if err := rows.Scan(&e.ID, &e.At, &admin, &e.Action, &params, &ip, &agent, &e.Status, &ms); err != nil {
			return nil, pgError(err, "read audit entry")
		}
		e.AdminID = admin
		e.Parameters = json.RawMessage(params)
		if ip != nil {
			e.ClientIP, _ = netip.ParseAddr(*ip)
		}
		if agent != nil {
			e.UserAgent = *agent
		}
		e.Duration = time.Duration(ms * float64(time.Millisecond))
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, pgError(err, "list audit entries")
	}
	return out, nil
}
