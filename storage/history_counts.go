package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"presencestats"
	queries "presencestats/sql"
)

// HistoryCounts answers rooms' counts from the history (presence_events) when Redis cannot: the
// online_after of each room's newest stored event. It is behind the live count by the events
// still in the outbox (those of the last EVENT_FLUSH_INTERVAL before Redis went away, or more when
// the database was away too), and it knows users, not tabs.
type HistoryCounts struct {
	pool *pgxpool.Pool
	last string
}

// NewHistoryCounts returns the history's counts on pool.
func NewHistoryCounts(pool *pgxpool.Pool) *HistoryCounts {
	return &HistoryCounts{pool: pool, last: queries.Must("history_last_counts.sql")}
}

// LastCounts returns, for each room in order, the online_after of its newest event and that
// event's time, with Source "database". A room without events in the retention window counts 0,
// at now. SessionCount is OnlineCount: the history does not keep tabs, and every user online has
// one at least. Errors: EUNAVAILABLE when the database cannot be reached.
func (h *HistoryCounts) LastCounts(ctx context.Context, rooms []uuid.UUID) ([]presencestats.OnlineStats, error) {
	rows, err := h.pool.Query(ctx, h.last, rooms)
	if err != nil {
		return nil, pgError(err, "read the rooms' last counts")
	}
	defer rows.Close()
	out := make([]presencestats.OnlineStats, 0, len(rooms))
	now := time.Now().UTC()
	for rows.Next() {
		var ts *time.Time
		var online *int64
		if err := rows.Scan(&ts, &online); err != nil {
			return nil, pgError(err, "read the rooms' last counts")
		}
		st := presencestats.OnlineStats{Timestamp: now, Source: presencestats.SourceDatabase}
		if ts != nil && online != nil {
			st.Timestamp, st.OnlineCount, st.SessionCount = ts.UTC(), *online, *online
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, pgError(err, "read the rooms' last counts")
	}
	if len(out) != len(rooms) {
		return nil, fmt.Errorf("read the rooms' last counts: %d rows for %d rooms", len(out), len(rooms))
	}
	for i := range out {
		out[i].RoomID = rooms[i]
	}
	return out, nil
}
