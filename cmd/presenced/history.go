package main

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"presencestats"
	"presencestats/storage"
)

// startHistory checks that the report aggregates were built in REPORT_TIMEZONE, then starts the
// event collector (the EventRecorder of the real-time side). The returned closer flushes or
// spools what is buffered; it must run after the WebSocket hub has closed, whose disconnect
// events it still records.
func startHistory(ctx context.Context, cfg Config, log *slog.Logger, reg prometheus.Registerer, pool *pgxpool.Pool) (*storage.Collector, func(context.Context), error) {
	if err := storage.CheckReportZone(ctx, pool, cfg.ReportTimezone); err != nil {
		if presencestats.ErrorCode(err) == presencestats.EINVALID {
			return nil, nil, err
		}
		// Unreachable database: the collector waits for it; the check runs again at next start.
		log.Warn("could not check the report time zone", "err", err)
	}
	collector, err := storage.NewCollector(pool, storage.CollectorConfig{
		BatchSize:     cfg.EventBatchSize,
		FlushInterval: cfg.EventFlushInterval,
		Buffer:        cfg.EventBuffer,
		SpoolDir:      cfg.SpoolDir,
		SpoolMaxBytes: cfg.SpoolMaxBytes,
		Logger:        log,
		Registerer:    reg,
	})
	if err != nil {
		return nil, nil, err
	}
	go func() { _ = collector.Run(ctx) }()
	closer := func(ctx context.Context) {
		if err := collector.Close(ctx); err != nil {
			log.Warn("event collector close", "err", err)
		}
		c := collector.Counts()
		log.Info("event collector stopped", "recorded", c.Recorded, "written", c.Written, "spooled", c.Spooled, "dropped", c.Dropped)
	}
	return collector, closer, nil
}
