package handlers

// Outage recovery and heartbeats: when the presence store comes back the hub registers its live
// sessions again; every PRESENCE_TTL/3 it refreshes its sessions' deadlines.

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
)

// onStoreState hears that the subscription was lost or (re)established. Updates are lost while
// it is down, so coming back means: cached counts are stale and Redis may have lost our sessions.
func (h *Hub) onStoreState(up bool) {
	if !up {
		h.markDown(errors.New("subscription lost"))
		return
	}
	if !h.subscribed.Swap(true) && h.up.Load() {
		return // the first subscription, with nothing lost before it: no recovery to run
	}
	go h.resync()
}

// liveLocked returns every member of every room of this instance; h.mu must be held.
func (h *Hub) liveLocked() []*wsConn {
	var live []*wsConn
	for _, r := range h.rooms {
		for c := range r.members {
			live = append(live, c)
		}
	}
	return live
}

// resync runs when Redis answers again: the leaves that failed meanwhile are applied, every
// live session of this instance is registered again (counts become exact without any client
// reconnecting), the cache is refetched, and the degraded flag goes.
func (h *Hub) resync() {
	h.resyncMu.Lock()
	defer h.resyncMu.Unlock()
	h.mu.Lock()
	pending := h.pending
	h.pending = nil
	live := h.liveLocked()
	h.mu.Unlock()
	ok := true
	for i, c := range pending {
		c.stateMu.Lock()
		done := h.leaveLocked(c, c.reason)
		c.stateMu.Unlock()
		if !done { // it went back to pending: Redis is still down
			h.mu.Lock()
			h.pending = append(h.pending, pending[i+1:]...)
			h.mu.Unlock()
			ok = false
			break
		}
	}
	if ok {
		h.up.Store(true) // joinLocked marks it down again on failure
		for _, c := range live {
			c.stateMu.Lock()
			if !c.left {
				if _, okJoin := h.joinLocked(c, false); !okJoin {
					ok = false
				}
			}
			c.stateMu.Unlock()
			if !ok {
				break
			}
		}
	}
	if !ok {
		h.up.Store(false)
		return
	}
	// Updates were missed while the subscription was down: every cached count is refetched before
	// it is served as fresh again, and stays the "last known" answer until then.
	h.cacheMu.Lock()
	for id, e := range h.cache {
		e.at = time.Time{}
		h.cache[id] = e
	}
	h.cacheMu.Unlock()
	h.log.Info("presence store back: sessions registered again", "sessions", len(live), "leaves_applied", len(pending))
}

// heartbeatLoop refreshes this instance's sessions in Redis every heartbeat interval (their
// deadlines move to now + PRESENCE_TTL), re-joins those a sweeper expired, records a heartbeat
// event per session at most every HEARTBEAT_EVENT_INTERVAL, and while Redis is down probes it.
func (h *Hub) heartbeatLoop(ctx context.Context) {
	every := min(h.heartbeatInterval(), h.cfg.HeartbeatEventInterval)
	t := time.NewTicker(min(every, 500*time.Millisecond))
	defer t.Stop()
	var lastBeat time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !h.up.Load() {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			err := h.cfg.Store.Ping(pctx)
			cancel()
			h.log.Debug("presence store probe", "err", err)
			if err == nil {
				h.resync()
			}
			continue
		}
		if now := h.now(); now.Sub(lastBeat) >= every {
			lastBeat = now
			h.beat(ctx)
		}
	}
}

func (h *Hub) beat(ctx context.Context) {
	h.mu.Lock()
	byRoom := make(map[uuid.UUID][]*wsConn, len(h.rooms))
	for id, r := range h.rooms {
		for c := range r.members {
			byRoom[id] = append(byRoom[id], c)
		}
	}
	h.mu.Unlock()
	for room, conns := range byRoom {
		ids := make([]uuid.UUID, 0, len(conns))
		var beats []uuid.UUID // those whose heartbeat event is due: the store records it
		now := h.now()
		for _, c := range conns {
			ids = append(ids, c.id)
			c.stateMu.Lock()
			if !c.left && c.inStore && now.Sub(c.lastHBEvent) >= h.cfg.HeartbeatEventInterval {
				c.lastHBEvent = now
				beats = append(beats, c.id)
			}
			c.stateMu.Unlock()
		}
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, missing, err := h.cfg.Store.Touch(tctx, room, ids, beats)
		cancel()
		if err != nil {
			h.markDown(err)
			return
		}
		h.applyStats(st)
		gone := make(map[uuid.UUID]bool, len(missing))
		for _, id := range missing {
			gone[id] = true
		}
		for _, c := range conns {
			c.stateMu.Lock()
			if !c.left && c.inStore && gone[c.id] {
				h.joinLocked(c, true)
			}
			c.stateMu.Unlock()
		}
	}
}
