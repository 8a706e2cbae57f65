package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"presencestats/handlers"
	"presencestats/storage"
)

// presenceFeature is the real-time presence wired together: the Redis store, the WebSocket hub
// (a handlers.Feature) and the sweeper.
type presenceFeature struct {
	Hub     *handlers.Hub
	sweeper *storage.Sweeper
}

// startPresence wires real-time presence. rec receives the presence events (the history's
// collector).
func startPresence(cfg Config, log *slog.Logger, reg prometheus.Registerer, rdb redis.UniversalClient,
	auth *handlers.TokenAuthority, rec handlers.EventRecorder, limits *handlers.ConnLimits) *presenceFeature {
	host, _ := os.Hostname()
	store := storage.NewPresence(rdb, storage.PresenceOptions{
		KeyPrefix: cfg.RedisKeyPrefix, TTL: cfg.PresenceTTL, Logger: log,
		InstanceID: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), uuid.NewString()[:8]),
	})
	hub := handlers.NewHub(handlers.HubConfig{
		Store: store, Recorder: rec, Auth: auth, Logger: log, Registry: reg,
		AllowedOrigins:  cfg.AllowedOrigins,
		MaxMessageBytes: cfg.MaxMessageBytes, PresenceTTL: cfg.PresenceTTL,
		StatsPushInterval: cfg.StatsPushInterval, StatsCacheTTL: cfg.StatsCacheTTL,
		HeartbeatEventInterval: cfg.HeartbeatEventInterval,
		ChatRatePerSecond:      cfg.ChatRatePerSecond, ChatBurst: cfg.ChatBurst, SendBuffer: cfg.SendBuffer,
		Limits: limits,
	})
	sw := storage.NewSweeper(store, rec, cfg.SweepInterval, log, reg)
	sw.Start()
	return &presenceFeature{Hub: hub, sweeper: sw}
}

// Close ends the WebSocket sessions (their leaves reach Redis and the recorder), then stops the
// sweeper. The recorder and Redis are closed after it.
func (p *presenceFeature) Close(ctx context.Context) {
	p.Hub.Close(ctx)
	p.sweeper.Close(ctx)
}
