package storage

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Taking over what other consumers left unacknowledged, and the group's housekeeping (the
// backlog and dropped figures, consumers of instances gone).

// claimRound takes over the entries other consumers (instances that died, or this one before an
// acknowledgement failed) left unacknowledged for ClaimIdle, and writes them: one pipelined
// XAUTOCLAIM per shard, then again for the shards that had more, until none has.
func (o *Outbox) claimRound(ctx context.Context) {
	cursors := make(map[int]string, Shards)
	for shard := range Shards {
		cursors[shard] = "0-0"
	}
	for len(cursors) > 0 && !o.closing() {
		pipe := o.rdb.Pipeline()
		cmds := make(map[int]*redis.XAutoClaimCmd, len(cursors))
		for shard, start := range cursors {
			cmds[shard] = pipe.XAutoClaim(ctx, &redis.XAutoClaimArgs{
				Stream: o.keys.events(shard), Group: o.cfg.Group, Consumer: o.cfg.Consumer,
				MinIdle: o.cfg.ClaimIdle, Start: start, Count: o.perShard,
			})
		}
		_, _ = pipe.Exec(ctx)
		var entries []outboxEntry
		for shard, cmd := range cmds {
			msgs, next, err := cmd.Result()
			delete(cursors, shard)
			if err != nil {
				if !redis.HasErrorPrefix(err, "NOGROUP") && !errors.Is(err, redis.Nil) && !o.closing() {
					o.log.Warn("outbox: taking over idle entries failed", "shard", shard, "err", err)
				}
				continue
			}
			for _, m := range msgs {
				entries = append(entries, decodeEntry(shard, m))
			}
			if next != "" && next != "0-0" {
				cursors[shard] = next
			}
		}
		if len(entries) == 0 {
			continue
		}
		o.claimed.Add(int64(len(entries)))
		o.log.Info("outbox: took over events another consumer left unacknowledged", "events", len(entries))
		if _, err := o.round(ctx, func(context.Context) ([]outboxEntry, bool, error) { return entries, false, nil }); err != nil {
			return
		}
	}
}

// housekeep refreshes the dropped and backlog figures and deletes the group's consumers that
// hold nothing and were idle for 10 x ClaimIdle (instances gone), one script per shard.
func (o *Outbox) housekeep(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	pipe := o.rdb.Pipeline()
	lens := make([]*redis.IntCmd, Shards)
	drops := make([]*redis.StringCmd, Shards)
	gcs := make([]*redis.Cmd, Shards)
	for shard := range Shards {
		lens[shard] = pipe.XLen(ctx, o.keys.events(shard))
		drops[shard] = pipe.Get(ctx, o.keys.dropped(shard))
		gcs[shard] = o.gc.EvalSha(ctx, pipe, []string{o.keys.events(shard)}, o.cfg.Group, o.cfg.Consumer, (10 * o.cfg.ClaimIdle).Milliseconds())
	}
	_, _ = pipe.Exec(ctx)
	var backlog, dropped int64
	for shard := range Shards {
		backlog += lens[shard].Val()
		if n, err := drops[shard].Int64(); err == nil {
			dropped += n
		}
		if redis.HasErrorPrefix(gcs[shard].Err(), "NOSCRIPT") {
			_ = o.gc.Load(ctx, o.rdb).Err() // next round
		}
	}
	if lens[0].Err() == nil {
		o.backlog.Store(backlog)
		if old := o.dropped.Swap(dropped); dropped > old {
			o.log.Error("outbox: the bound dropped events the database did not have (OUTBOX_MAX_EVENTS)", "dropped", dropped-old, "total", dropped)
		}
	}
}
