package storage

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Reading the outbox: the consumer group on every shard's stream, and one pipelined read of new
// entries from all shards.

// ensureGroups creates the consumer group on every shard's stream (and the stream), reading from
// the start: entries written before the group existed are history too.
func (o *Outbox) ensureGroups(ctx context.Context) error {
	pipe := o.rdb.Pipeline()
	cmds := make([]*redis.StatusCmd, Shards)
	for shard := range Shards {
		cmds[shard] = pipe.XGroupCreateMkStream(ctx, o.keys.events(shard), o.cfg.Group, "0")
	}
	_, _ = pipe.Exec(ctx)
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
			return fmt.Errorf("create outbox consumer group: %w", err)
		}
	}
	return nil
}

// readNew reads entries never delivered from every shard, in one pipelined round trip.
func (o *Outbox) readNew(ctx context.Context) ([]outboxEntry, bool, error) {
	pipe := o.rdb.Pipeline()
	cmds := make([]*redis.XStreamSliceCmd, Shards)
	for shard := range Shards {
		cmds[shard] = pipe.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: o.cfg.Group, Consumer: o.cfg.Consumer, Streams: []string{o.keys.events(shard), ">"},
			Count: max(o.counts[shard], o.perShard), Block: -1,
		})
	}
	_, _ = pipe.Exec(ctx)
	var out []outboxEntry
	full := false
	for shard, cmd := range cmds {
		streams, err := cmd.Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if redis.HasErrorPrefix(err, "NOGROUP") {
				// Redis lost the group (a restart without persistence): make it again; what the
				// stream holds now is read from its start.
				if gerr := o.ensureGroups(ctx); gerr != nil {
					return nil, false, gerr
				}
				continue
			}
			return out, false, fmt.Errorf("read outbox: %w", err)
		}
		for _, st := range streams {
			n := int64(len(st.Messages))
			if count := max(o.counts[shard], o.perShard); n >= count {
				// A busy shard (a big room): read more of it next time, up to a batch.
				full = true
				o.counts[shard] = min(2*count, int64(o.cfg.BatchSize))
			} else {
				o.counts[shard] = o.perShard
			}
			o.read.Add(n)
			for _, m := range st.Messages {
				out = append(out, decodeEntry(shard, m))
			}
		}
	}
	return out, full, nil
}
