package main

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"presencestats"
	"presencestats/storage"
)

// startHistory checks that the report aggregates were built in REPORT_TIMEZONE, then starts this
// instance's outbox consumer, which moves the presence events the Redis scripts append to the
// outbox into the database through the collector (the batch writer), and the one-time replay of a
// spool an earlier version left in SPOOL_DIR. The returned closer writes what the outbox holds
// while its context lasts (the rest waits in Redis) and stops the replay (what is left of the
// spool is replayed at the next start); it must run after the WebSocket hub has closed, whose
// leaves it still carries.
func startHistory(ctx context.Context, cfg Config, log *slog.Logger, reg prometheus.Registerer, pool *pgxpool.Pool,
	rdb redis.UniversalClient, instance string) (func(context.Context), error) {
	if err := storage.CheckReportZone(ctx, pool, cfg.ReportTimezone); err != nil {
		if presencestats.ErrorCode(err) == presencestats.EINVALID {
			return nil, err
		}
		// Unreachable database: the outbox waits for it; the check runs again at next start.
		log.Warn("could not check the report time zone", "err", err)
	}
	collector, err := storage.NewCollector(pool, storage.CollectorConfig{
		BatchSize:  cfg.EventBatchSize,
		SpoolDir:   cfg.SpoolDir,
		Logger:     log,
		Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	outbox, err := storage.NewOutbox(rdb, collector, storage.OutboxConfig{
		KeyPrefix:    cfg.RedisKeyPrefix,
		Consumer:     instance,
		BatchSize:    cfg.EventBatchSize,
		PollInterval: cfg.EventFlushInterval,
		ClaimIdle:    cfg.OutboxClaimIdle,
		Logger:       log,
		Registerer:   reg,
	})
	if err != nil {
		return nil, err
	}
	replayCtx, stopReplay := context.WithCancel(context.WithoutCancel(ctx))
	replayed := make(chan struct{})
	go func() {
		defer close(replayed)
		if err := collector.ReplaySpool(replayCtx); err != nil && replayCtx.Err() == nil {
			log.Error("replaying the spool an earlier version left failed: it stays for the next start", "dir", cfg.SpoolDir, "err", err)
		}
	}()
	go func() { _ = outbox.Run(ctx) }()
	closer := func(ctx context.Context) {
		stopReplay()
		if err := outbox.Close(ctx); err != nil {
			log.Warn("event outbox close: events left in Redis for the other instances or the next start", "err", err)
		}
		select {
		case <-replayed:
		case <-ctx.Done():
		}
		o, c := outbox.Counts(), collector.Counts()
		log.Info("event history stopped", "read", o.Read, "claimed", o.Claimed, "acked", o.Acked, "written", c.Written,
			"replayed", c.Replayed, "dropped", c.Dropped, "outbox_dropped", o.Dropped)
	}
	return closer, nil
}
