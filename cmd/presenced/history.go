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

// startHistory checks that the report aggregates were built in REPORT_TIMEZONE, then starts the
// event collector (its writer; it replays a spool an earlier version left in SPOOL_DIR) and this
// instance's outbox consumer, which moves the presence events the Redis scripts append to the
// outbox into the database. The returned closer writes what the outbox holds while its context
// lasts (the rest waits in Redis); it must run after the WebSocket hub has closed, whose leaves
// it still carries.
func startHistory(ctx context.Context, cfg Config, log *slog.Logger, reg prometheus.Registerer, pool *pgxpool.Pool,
	rdb redis.UniversalClient, instance string) (func(context.Context), error) {
	if err := storage.CheckReportZone(ctx, pool, cfg.ReportTimezone); err != nil {
		if presencestats.ErrorCode(err) == presencestats.EINVALID {
			return nil, err
		}
		// Unreachable database: the collector waits for it; the check runs again at next start.
		log.Warn("could not check the report time zone", "err", err)
	}
	collector, err := storage.NewCollector(pool, storage.CollectorConfig{
		BatchSize:     cfg.EventBatchSize,
		FlushInterval: cfg.EventFlushInterval,
		SpoolDir:      cfg.SpoolDir,
		Logger:        log,
		Registerer:    reg,
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
	go func() { _ = collector.Run(ctx) }()
	go func() { _ = outbox.Run(ctx) }()
	closer := func(ctx context.Context) {
		if err := outbox.Close(ctx); err != nil {
			log.Warn("event outbox close: events left in Redis for the other instances or the next start", "err", err)
		}
		if err := collector.Close(ctx); err != nil {
			log.Warn("event collector close", "err", err)
		}
		o, c := outbox.Counts(), collector.Counts()
		log.Info("event history stopped", "read", o.Read, "claimed", o.Claimed, "acked", o.Acked, "written", c.Written,
			"dropped", c.Dropped, "outbox_dropped", o.Dropped)
	}
	return closer, nil
}
