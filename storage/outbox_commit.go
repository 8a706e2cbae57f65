package storage

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"presencestats"
)

// Writing what was read and acknowledging it only after the commit.

// round reads one batch with read, writes it and acknowledges it; full says the read was full
// (more may be waiting). A write that fails is retried with backoff until it succeeds or Close.
func (o *Outbox) round(ctx context.Context, read func(context.Context) ([]outboxEntry, bool, error)) (bool, error) {
	entries, full, err := read(ctx)
	if err != nil {
		return false, err
	}
	if len(entries) == 0 {
		return false, nil
	}
	backoff := o.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		err := o.commitOnce(ctx, entries)
		if err == nil {
			return full, nil
		}
		if attempt == 1 || attempt%20 == 0 {
			o.log.Warn("outbox: writing presence events failed: retrying (they wait in Redis)", "events", len(entries), "attempt", attempt, "err", err)
		}
		if o.closing() {
			return false, nil // the entries stay pending, taken over after ClaimIdle
		}
		o.retried.Add(1)
		if !o.sleep(backoff) {
			return false, nil // closing: the entries stay pending, taken over after ClaimIdle
		}
		backoff = min(backoff*2, o.cfg.MaxBackoff)
	}
}

// commitOnce writes the events of entries and then acknowledges every entry (unreadable ones
// too: they can never be written). An acknowledgement that fails leaves entries pending: they are
// taken over and written again (a no-op) later.
func (o *Outbox) commitOnce(ctx context.Context, entries []outboxEntry) error {
	events := make([]presencestats.PresenceEvent, 0, len(entries))
	for _, e := range entries {
		if e.err == nil {
			events = append(events, e.ev)
		}
	}
	if len(events) > 0 {
		if err := o.w.WriteEvents(ctx, events); err != nil {
			return err
		}
	}
	for _, e := range entries {
		if e.err != nil {
			o.bad.Add(1)
			o.log.Error("outbox: unreadable entry: acknowledged, not written", "shard", e.shard, "id", e.id, "err", e.err)
		}
	}
	if err := o.acknowledge(ctx, entries); err != nil {
		o.log.Warn("outbox: acknowledging written events failed: they will be taken over and written again (no-op)", "err", err)
	}
	return nil
}

// acknowledge runs outbox_ack.lua (XACK + XDEL) once per shard of entries, pipelined.
func (o *Outbox) acknowledge(ctx context.Context, entries []outboxEntry) error {
	byShard := map[int][]any{}
	for _, e := range entries {
		byShard[e.shard] = append(byShard[e.shard], e.id)
	}
	for attempt := 0; attempt < 2; attempt++ {
		pipe := o.rdb.Pipeline()
		cmds := make(map[int]*redis.Cmd, len(byShard))
		for shard, ids := range byShard {
			cmds[shard] = o.ack.EvalSha(ctx, pipe, []string{o.keys.events(shard)}, append([]any{o.cfg.Group}, ids...)...)
		}
		_, _ = pipe.Exec(ctx)
		var err error
		noScript := false
		for shard, cmd := range cmds {
			if e := cmd.Err(); e != nil {
				noScript = noScript || redis.HasErrorPrefix(e, "NOSCRIPT")
				err = e
				continue
			}
			o.acked.Add(int64(len(byShard[shard])))
			delete(byShard, shard)
		}
		if err == nil {
			return nil
		}
		if !noScript || attempt == 1 {
			return fmt.Errorf("acknowledge outbox entries: %w", err)
		}
		if err := o.ack.Load(ctx, o.rdb).Err(); err != nil {
			return fmt.Errorf("acknowledge outbox entries: load script: %w", err)
		}
	}
	return nil
}
