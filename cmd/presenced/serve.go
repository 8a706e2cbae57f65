package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"presencestats/handlers"
	"presencestats/storage"
	"presencestats/web"
)

// serve runs the server until ctx is cancelled (SIGINT/SIGTERM), then shuts down in a fixed
// order under one deadline: HTTP, the WebSocket hub, background workers, then Redis and the pool.
func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	pool, err := storage.OpenPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	rdb, err := storage.OpenRedis(ctx, cfg.RedisURL)
	if err != nil {
		pool.Close()
		return err
	}
	auth := handlers.NewTokenAuthority(cfg.JWTSecret)

	var features []handlers.Feature
	pages, err := handlers.NewWebPages(handlers.WebPagesConfig{Files: web.Static(), Logger: log, Auth: auth, DevMode: cfg.DevMode})
	if err != nil {
		rdb.Close()
		pool.Close()
		return err
	}
	features = append(features, pages)
	if cfg.DevMode {
		log.Warn("DEV_MODE=1: POST /dev/token mints tokens for anyone; never run production like this")
	}
	// closers run after the HTTP server has stopped, in order.
	var closers []func(context.Context)
	// History: the outbox consumer moves the presence events from Redis to the database; it
	// closes after the hub (below).
	instance := instanceID()
	closeHistory, err := startHistory(ctx, cfg, log, reg, pool, rdb, instance)
	if err != nil {
		rdb.Close()
		pool.Close()
		return err
	}
	// Real-time presence: its Close (WebSockets, then the sweeper) runs before the history and
	// Redis close.
	presence := startPresence(cfg, log, reg, rdb, auth, instance)
	features = append(features, presence.Hub)
	closers = append(closers, presence.Close)
	closers = append(closers, closeHistory)
	// Admin reports and the audit trail under /admin/api; the dashboard's room list goes through
	// the same guard, so it is admin-only and audited too.
	reports := storage.NewReports(pool, cfg.ReportTimezone)
	admin := handlers.NewAdmin(handlers.AdminConfig{
		Auth: auth, Logger: log, Reports: reports, Audit: storage.NewAudit(pool),
		Location: cfg.ReportTimezone, MaxPoints: cfg.ReportMaxPoints,
	})
	features = append(features, admin, handlers.NewWebAPI(reports, log, admin.Guard(handlers.ActionRoomsList)...))

	router := handlers.NewRouter(handlers.RouterConfig{
		Logger:   log,
		Registry: reg,
		Checks: []handlers.ReadinessCheck{
			{Name: "database", Check: pool.Ping},
			{Name: "redis", Check: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }},
		},
		Features:       features,
		TrustedProxies: cfg.TrustedProxies,
	})
	srv := &http.Server{
		Addr:              cfg.HTTPAddr,
		Handler:           router,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() {
		log.Info("serving", "addr", cfg.HTTPAddr)
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
		close(errc)
	}()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	log.Info("shutting down", "deadline", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	for _, c := range closers {
		c(sctx)
	}
	// Closing the connections waits for the database to let go of them (a query being cancelled,
	// a server that hangs): within the deadline still, or the process exits without them (the
	// events are written or spooled by now).
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		if err := rdb.Close(); err != nil {
			log.Warn("redis close", "err", err)
		}
		pool.Close()
	}()
	select {
	case <-closed:
	case <-sctx.Done():
		log.Warn("shutdown deadline passed while closing the Redis and database connections: leaving them to the exit")
	}
	if serveErr != nil {
		return fmt.Errorf("http server: %w", serveErr)
	}
	log.Info("stopped")
	return nil
}
