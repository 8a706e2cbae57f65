package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"presencestats"
	"presencestats/handlers"
	"presencestats/storage"
	"presencestats/web"
)

// service is presenced wired together: the router and what must be closed after it stops.
type service struct {
	router  *gin.Engine
	reg     *prometheus.Registry // served on METRICS_ADDR when set
	rdb     redis.UniversalClient
	pool    *pgxpool.Pool
	closers []func(context.Context) // run after the HTTP server has stopped, in order
}

// serve runs the server until ctx is cancelled (SIGINT/SIGTERM), then shuts down in a fixed
// order under one deadline: HTTP, the WebSocket hub, background workers, then Redis and the pool.
func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	s, err := newService(ctx, cfg, log)
	if err != nil {
		return err
	}
	return s.run(ctx, cfg, log)
}

// newService wires configuration -> pool/redis -> storage -> handlers -> router. Its background
// workers (outbox consumer, spool replay, sweeper) run until ctx ends and the closers have run.
func newService(ctx context.Context, cfg Config, log *slog.Logger) (*service, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	pool, err := storage.OpenPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	if err := preflight(ctx, pool, log); err != nil {
		pool.Close()
		return nil, err
	}
	rdb, err := storage.OpenRedis(ctx, cfg.RedisURL)
	if err != nil {
		pool.Close()
		return nil, err
	}
	auth := handlers.NewTokenAuthority(cfg.JWTSecret)

	var features []handlers.Feature
	pages, err := handlers.NewWebPages(handlers.WebPagesConfig{Files: web.Static(), Logger: log, Auth: auth, DevMode: cfg.DevMode})
	if err != nil {
		rdb.Close()
		pool.Close()
		return nil, err
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
		return nil, err
	}
	// Real-time presence: its Close (WebSockets, then the sweeper) runs before the history and
	// Redis close. The connection limits are in process memory: per instance
	// (docs/operations.md, "Limits").
	connLimits := handlers.NewConnLimits(handlers.ConnLimitsConfig{
		MaxPerUser: cfg.MaxConnectionsPerUser, MaxTotal: cfg.MaxConnections,
		Rate: cfg.ConnectRate, Burst: cfg.ConnectBurst, MaxAddresses: cfg.ConnectAddresses,
	}, reg)
	// While Redis is unreachable, rooms the hub has no count of are answered from the history.
	presence := startPresence(cfg, log, reg, rdb, auth, instance, connLimits, storage.NewHistoryCounts(pool))
	features = append(features, presence.Hub)
	closers = append(closers, presence.Close)
	closers = append(closers, closeHistory)
	// Admin reports and the audit trail under /admin/api; the dashboard's room list goes through
	// the same guard, so it is admin-only and audited too.
	reports := storage.NewReports(pool, cfg.ReportTimezone)
	admin := handlers.NewAdmin(handlers.AdminConfig{
		Auth: auth, Logger: log, Reports: reports, Audit: storage.NewAudit(pool),
		Location: cfg.ReportTimezone, MaxPoints: cfg.ReportMaxPoints,
		Limits: handlers.NewReportLimits(handlers.ReportLimitsConfig{
			Concurrency: cfg.ReportConcurrency, QueueTimeout: cfg.ReportQueueTimeout, Timeout: cfg.ReportTimeout,
		}, reg),
	})
	features = append(features, admin, handlers.NewWebAPI(reports, log, admin.Guard(handlers.ActionRoomsList)...))

	router := handlers.NewRouter(handlers.RouterConfig{
		Logger:   log,
		Registry: reg,
		Checks: []handlers.ReadinessCheck{
			{Name: "database", Check: pool.Ping},
			{Name: "redis", Check: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }},
			{Name: "channels", Check: presence.Hub.CheckSubscribed},
		},
		Features:       features,
		TrustedProxies: cfg.TrustedProxies,
		Capacity:       connLimits.Capacity,
		NoMetrics:      cfg.MetricsAddr != "",
	})
	return &service{router: router, reg: reg, rdb: rdb, pool: pool, closers: closers}, nil
}

// run serves HTTP until ctx is cancelled, then shuts everything down under SHUTDOWN_TIMEOUT.
func (s *service) run(ctx context.Context, cfg Config, log *slog.Logger) error {
	servers := []*http.Server{{
		Addr:              cfg.HTTPAddr,
		Handler:           s.router,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}}
	if cfg.MetricsAddr != "" {
		// /metrics on its own listener (say 127.0.0.1:9090), off the public port.
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", handlers.MetricsHandler(s.reg))
		servers = append(servers, &http.Server{
			Addr: cfg.MetricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute,
		})
	}
	errc := make(chan error, len(servers))
	var running sync.WaitGroup
	for _, srv := range servers {
		running.Go(func() {
			log.Info("serving", "addr", srv.Addr)
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", srv.Addr, err)
			}
		})
	}
	go func() { running.Wait(); close(errc) }()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	log.Info("shutting down", "deadline", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("http shutdown", "addr", srv.Addr, "err", err)
		}
	}
	s.close(sctx, log)
	if serveErr != nil {
		return fmt.Errorf("http server: %w", serveErr)
	}
	log.Info("stopped")
	return nil
}

// close runs the closers (WebSocket hub, sweeper, history), then closes Redis and the pool,
// all within ctx's deadline.
func (s *service) close(ctx context.Context, log *slog.Logger) {
	for _, c := range s.closers {
		c(ctx)
	}
	// Closing the connections waits for the database to let go of them (a query being cancelled,
	// a server that hangs): within the deadline still, or the process exits without them (the
	// events not written by now wait in the Redis outbox).
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		if err := s.rdb.Close(); err != nil {
			log.Warn("redis close", "err", err)
		}
		s.pool.Close()
	}()
	select {
	case <-closed:
	case <-ctx.Done():
		log.Warn("shutdown deadline passed while closing the Redis and database connections: leaving them to the exit")
	}
}

// preflight refuses to serve from a server that cannot hold the schema (storage.Preflight). A
// database that does not answer yet is not a verdict: the service starts and the outbox waits
// for it, as it would for an outage.
func preflight(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := storage.Preflight(ctx, pool)
	if err == nil {
		return nil
	}
	if presencestats.ErrorCode(err) == presencestats.EINVALID {
		return errors.New("preflight: " + presencestats.ErrorMessage(err))
	}
	log.Warn("could not check the database server (preflight); starting anyway", "err", err)
	return nil
}
