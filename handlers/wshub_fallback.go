package handlers

// What the hub answers for a room while Redis is unreachable: the last counts it saw (its cache),
// else the history's last word on the room (HistoryCounts), briefly cached, else zero.

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"presencestats"
)

// HistoryCounts is the history's view of rooms' counts (storage.HistoryCounts): the online_after
// of each room's newest stored event, in the order of rooms, with Source "database". Errors:
// EUNAVAILABLE when the database cannot be reached.
type HistoryCounts interface {
	LastCounts(ctx context.Context, rooms []uuid.UUID) ([]presencestats.OnlineStats, error)
}

const (
	// historyCountsTTL is how long an answer of the history is reused: an outage's burst of reads
	// of one room costs one query per room per interval.
	historyCountsTTL = 2 * time.Second
	// historyCountsTimeout bounds the query: a database that is away too must not hold the answer.
	historyCountsTimeout = time.Second
)

// historyFallback is the brief cache of the history's answers.
type historyFallback struct {
	mu    sync.Mutex
	m     map[uuid.UUID]cachedStats
	reads prometheus.Counter
}

func newHistoryFallback(reg prometheus.Registerer) *historyFallback {
	f := &historyFallback{m: map[uuid.UUID]cachedStats{}, reads: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "presence_stats_history_reads_total",
		Help: "Room counts read from the database because Redis was unreachable and nothing was cached.",
	})}
	reg.MustRegister(f.reads)
	return f
}

// degradedStats answers rooms while Redis is unreachable, every answer degraded: the cached
// counts of a room this instance has seen (source "cache"); for the others the history's
// (source "database"), or its last answer when the database does not answer now; zero (source
// "none") when it never did.
func (h *Hub) degradedStats(ctx context.Context, rooms []uuid.UUID) []presencestats.OnlineStats {
	out := make([]presencestats.OnlineStats, len(rooms))
	var ask []int // rooms with no cached count
	now := h.now()
	h.cacheMu.RLock()
	for i, room := range rooms {
		if e, ok := h.cache[room]; ok {
			out[i] = e.st
			out[i].Source = presencestats.SourceCache
		} else {
			ask = append(ask, i)
		}
	}
	h.cacheMu.RUnlock()
	var query []uuid.UUID
	var queryAt []int
	h.fallback.mu.Lock()
	for _, i := range ask {
		if e, ok := h.fallback.m[rooms[i]]; ok && now.Sub(e.at) <= historyCountsTTL {
			out[i] = e.st
			continue
		}
		query, queryAt = append(query, rooms[i]), append(queryAt, i)
	}
	h.fallback.mu.Unlock()
	if len(query) > 0 {
		var got []presencestats.OnlineStats
		ok := false
		if h.cfg.History != nil {
			qctx, cancel := context.WithTimeout(ctx, historyCountsTimeout)
			var err error
			got, err = h.cfg.History.LastCounts(qctx, query)
			cancel()
			h.fallback.reads.Add(float64(len(query)))
			if ok = err == nil && len(got) == len(query); !ok {
				h.log.Warn("presence store down and the history's counts unavailable: answering zero", "rooms", len(query), "err", err)
			}
		}
		h.fallback.mu.Lock()
		if len(h.fallback.m) > 100_000 { // bounded: the rooms asked for during one outage
			clear(h.fallback.m)
		}
		for j, i := range queryAt {
			switch old, seen := h.fallback.m[query[j]]; {
			case ok:
				out[i] = got[j]
				out[i].Source = presencestats.SourceDatabase
				h.fallback.m[query[j]] = cachedStats{st: out[i], at: now}
			case seen: // the database's older answer (its timestamp says how old) beats zero
				out[i] = old.st
			default:
				out[i] = presencestats.OnlineStats{RoomID: query[j], Timestamp: now.UTC(), Source: presencestats.SourceNone}
			}
		}
		h.fallback.mu.Unlock()
	}
	for i := range out {
		out[i].Degraded = true
	}
	return out
}
