package handlers

// The in-process live-count cache that REST answers from.

import (
	"context"
	"time"

	"github.com/google/uuid"

	"presencestats"
)

func (h *Hub) cachePut(st presencestats.OnlineStats) {
	now := h.now()
	h.cacheMu.Lock()
	defer h.cacheMu.Unlock()
	if old, ok := h.cache[st.RoomID]; ok && st.Timestamp.Before(old.st.Timestamp) {
		return
	}
	st.Degraded = false
	h.cache[st.RoomID] = cachedStats{st: st, at: now}
}

// CachedStats returns the counts of room from the cache when they are fresh (confirmed by the
// room's channel or Redis within STATS_CACHE_TTL, with Redis up).
func (h *Hub) CachedStats(room uuid.UUID) (presencestats.OnlineStats, bool) {
	h.cacheMu.RLock()
	e, ok := h.cache[room]
	h.cacheMu.RUnlock()
	if !ok || !h.up.Load() || h.now().Sub(e.at) > h.cfg.StatsCacheTTL {
		return presencestats.OnlineStats{}, false
	}
	return e.st, true
}

// Stats returns the counts of rooms: from the cache when fresh, else from Redis in one round
// trip (source "redis"). While Redis is down every answer is Degraded (degradedStats): the last
// known counts, or the history's for a room never seen; it does not fail.
func (h *Hub) Stats(ctx context.Context, rooms []uuid.UUID) []presencestats.OnlineStats {
	out := make([]presencestats.OnlineStats, len(rooms))
	var miss []int
	for i, room := range rooms {
		if st, ok := h.CachedStats(room); ok {
			out[i] = st
			out[i].Source = presencestats.SourceRedis
			h.metrics.cacheHits.Inc()
			continue
		}
		miss = append(miss, i)
	}
	if len(miss) == 0 {
		return out
	}
	h.metrics.cacheMisses.Add(float64(len(miss)))
	if h.up.Load() {
		ids := make([]uuid.UUID, len(miss))
		for j, i := range miss {
			ids[j] = rooms[i]
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		got, err := h.cfg.Store.Counts(cctx, ids...)
		cancel()
		if err == nil {
			for j, i := range miss {
				h.cachePut(got[j])
				out[i] = got[j]
				out[i].Source = presencestats.SourceRedis
			}
			return out
		}
		if ctx.Err() == nil {
			h.markDown(err)
		}
	}
	ids := make([]uuid.UUID, len(miss))
	for j, i := range miss {
		ids[j] = rooms[i]
	}
	for j, st := range h.degradedStats(ctx, ids) {
		out[miss[j]] = st
	}
	return out
}
