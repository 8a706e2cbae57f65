package storage

// Presence updates between instances: sharded pub/sub, one channel per shard (rediskeys.go).

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"presencestats"
)

// Publish sends a chat message (JSON) to every instance, on the room's shard channel (SPUBLISH).
func (p *Presence) Publish(ctx context.Context, room uuid.UUID, payload []byte) error {
	id := room.String()
	msg := make([]byte, 0, len(payload)+len(id)+3)
	msg = append(append(append(append(msg, 'm', '|'), id...), '|'), payload...)
	if err := p.rdb.SPublish(ctx, p.keys.roomUpdates(room), msg).Err(); err != nil {
		return unavailable("publish chat message", err)
	}
	return nil
}

// Listen receives every room's updates until ctx ends: onStats with the counts after each
// change, onMessage with each chat message's JSON, onState(false) when the subscription is lost
// (any part of it) and onState(true) each time all of it is (re)established. While it is down,
// updates are lost: the caller must treat what it knows as stale until onState(true). The
// callbacks are never called concurrently, and a room's updates come in the order of its changes.
//
// On one Redis server, one connection subscribes to the Shards channels. On a Redis Cluster a
// sharded channel is served by the node owning its slot and one SSUBSCRIBE may name one slot
// only, so there is one subscription (connection) per shard, each following its slot: after a
// failover or a slot move (the node drops the subscription, or the connection dies) it reports
// the loss, has the client reload the cluster's layout, and subscribes again at the slot's new
// owner.
func (p *Presence) Listen(ctx context.Context, onStats func(presencestats.OnlineStats), onMessage func(room uuid.UUID, payload []byte), onState func(up bool)) error {
	var groups [][]string
	if isCluster(p.rdb) {
		for shard := range Shards {
			groups = append(groups, []string{p.keys.updates(shard)})
		}
	} else {
		all := make([]string, Shards)
		for shard := range Shards {
			all[shard] = p.keys.updates(shard)
		}
		groups = [][]string{all}
	}
	l := &updateListener{onStats: onStats, onMessage: onMessage, onState: onState, groups: len(groups)}
	var wg sync.WaitGroup
	for _, channels := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.listenChannels(ctx, channels, l)
		}()
	}
	wg.Wait()
	return nil
}

// updateListener joins the subscriptions of Listen: one callback at a time, and one state (up
// when every subscription is).
type updateListener struct {
	mu        sync.Mutex
	onStats   func(presencestats.OnlineStats)
	onMessage func(room uuid.UUID, payload []byte)
	onState   func(up bool)
	groups    int
	up        int   // subscriptions up
	reported  *bool // the last state reported
}

// state records that one subscription went up or down and reports a change of the whole.
func (l *updateListener) state(up bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if up {
		l.up++
	} else if l.up > 0 {
		l.up--
	}
	switch all := l.up == l.groups; {
	case all && (l.reported == nil || !*l.reported):
		l.reported = &all
		l.onState(true)
	case !up && (l.reported == nil || *l.reported):
		l.reported = &all
		l.onState(false)
	}
}

// failed reports a subscription that could not be made (it was not up).
func (l *updateListener) failed() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.reported == nil || *l.reported {
		down := false
		l.reported = &down
		l.onState(false)
	}
}

// deliver reads one message, "s|<room>|<online>|<sessions>|<ts_us>" or "m|<room>|<json>".
func (l *updateListener) deliver(payload string) {
	kind, rest, ok := strings.Cut(payload, "|")
	if !ok {
		return
	}
	id, body, ok := strings.Cut(rest, "|")
	if !ok {
		return
	}
	room, err := uuid.Parse(id)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch kind {
	case "s":
		if st, ok := parseStats(room, body); ok {
			l.onStats(st)
		}
	case "m":
		l.onMessage(room, []byte(body))
	}
}

// listenChannels keeps one subscription to channels until ctx ends.
func (p *Presence) listenChannels(ctx context.Context, channels []string, l *updateListener) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		from := p.masterOf(ctx, channels[0])
		wasUp, moved := p.subscribe(ctx, channels, l)
		if wasUp {
			backoff = 50 * time.Millisecond
		}
		if ctx.Err() != nil {
			return
		}
		if moved {
			p.awaitNewMaster(ctx, channels[0], from)
		} else if c, ok := p.rdb.(*redis.ClusterClient); ok {
			c.ReloadState(ctx) // the slot may have a new owner (a failover, a move)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, time.Second)
	}
}

// masterOf returns the address of the master of channel's slot as the cluster client knows it
// ("" on one server or an error).
func (p *Presence) masterOf(ctx context.Context, channel string) string {
	c, ok := p.rdb.(*redis.ClusterClient)
	if !ok {
		return ""
	}
	m, err := c.MasterForKey(ctx, channel)
	if err != nil {
		return ""
	}
	return m.Options().Addr
}

// awaitNewMaster waits (up to 5 s) until the cluster client knows another master than from for
// channel's slot, reloading the layout: the server dropped the subscription because the slot
// left it, and subscribing again by the old layout would land on the old node (as a replica it
// accepts the subscription and may never deliver).
func (p *Presence) awaitNewMaster(ctx context.Context, channel, from string) {
	c, ok := p.rdb.(*redis.ClusterClient)
	if !ok || from == "" {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		c.ReloadState(ctx)
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if m := p.masterOf(ctx, channel); m != "" && m != from {
			return
		}
	}
}

// subscribe holds one SSUBSCRIBE until it is lost or ctx ends; it says whether it was ever up,
// and whether the server dropped it (moved). go-redis reconnects a broken connection by itself
// (to the slot's owner as it knows it); a subscription the server drops (SUNSUBSCRIBE when the
// slot leaves the node) is not renewed by go-redis, so it ends this one.
func (p *Presence) subscribe(ctx context.Context, channels []string, l *updateListener) (wasUp, moved bool) {
	ps := p.rdb.SSubscribe(ctx)
	defer ps.Close()
	up := false
	down := func(err error) {
		if up {
			p.log.WarnContext(ctx, "presence subscription lost", "channels", channels[0], "err", err)
			up = false
			l.state(false)
		}
	}
	if err := ps.SSubscribe(ctx, channels...); err != nil {
		if ctx.Err() == nil {
			l.failed()
		}
		return false, false
	}
	backoff := 50 * time.Millisecond
	for {
		msg, err := ps.ReceiveTimeout(ctx, 2*time.Second)
		if ctx.Err() != nil {
			return wasUp, false
		}
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() && up {
				// Quiet channel: make sure the connection still lives; the pong comes as a message.
				_ = ps.Ping(ctx)
				continue
			}
			if !up {
				l.failed()
			}
			down(err)
			if c, ok := p.rdb.(*redis.ClusterClient); ok {
				c.ReloadState(ctx)
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return wasUp, false
			case <-t.C:
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			switch {
			case m.Kind == "ssubscribe" && !up:
				up, wasUp = true, true
				l.state(true)
			case m.Kind == "sunsubscribe":
				down(errors.New("the server dropped the subscription (its slot moved)"))
				return wasUp, true
			}
		case *redis.Message:
			l.deliver(m.Payload)
		}
	}
}

// parseStats reads "<online>|<sessions>|<ts_us>".
func parseStats(room uuid.UUID, s string) (presencestats.OnlineStats, bool) {
	parts := strings.Split(s, "|")
	if len(parts) != 3 {
		return presencestats.OnlineStats{}, false
	}
	online, err1 := strconv.ParseInt(parts[0], 10, 64)
	sessions, err2 := strconv.ParseInt(parts[1], 10, 64)
	ts, err3 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return presencestats.OnlineStats{}, false
	}
	return presencestats.OnlineStats{RoomID: room, OnlineCount: online, SessionCount: sessions, Timestamp: microTime(ts)}, true
}
