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

// instanceID names this process, in Redis (the sessions it holds, the events it made) and as its
// outbox consumer: a restarted process is a new consumer.
func instanceID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), uuid.NewString()[:8])
}

// startPresence wires real-time presence. Its presence events go to the outbox in Redis, in the
// same step as each change (the history's outbox consumer moves them to the database).
func startPresence(cfg Config, log *slog.Logger, reg prometheus.Registerer, rdb redis.UniversalClient,
	auth *handlers.TokenAuthority, instance string, limits *handlers.ConnLimits, history handlers.HistoryCounts) *presenceFeature {
	store := storage.NewPresence(rdb, storage.PresenceOptions{
		KeyPrefix: cfg.RedisKeyPrefix, TTL: cfg.PresenceTTL, Logger: log, InstanceID: instance,
		OutboxMaxEvents: cfg.OutboxMaxEvents, WaitReplicas: cfg.RedisWaitReplicas,
	})
	hub := handlers.NewHub(handlers.HubConfig{
		Store: store, Auth: auth, Logger: log, Registry: reg, History: history,
		AllowedOrigins:  cfg.AllowedOrigins,
		MaxMessageBytes: cfg.MaxMessageBytes, PresenceTTL: cfg.PresenceTTL,
		StatsPushInterval: cfg.StatsPushInterval, StatsPushRoomRate: cfg.StatsPushRoomRate, StatsCacheTTL: cfg.StatsCacheTTL,
		HeartbeatEventInterval: cfg.HeartbeatEventInterval,
		ChatRatePerSecond:      cfg.ChatRatePerSecond, ChatBurst: cfg.ChatBurst, SendBuffer: cfg.SendBuffer,
		ResumeWindow: cfg.ResumeWindow,
		Limits:       limits,
	})
	sw := storage.NewSweeper(store, cfg.SweepInterval, log, reg)
	sw.Start()
	return &presenceFeature{Hub: hub, sweeper: sw}
}

// Close ends the WebSocket sessions (their leaves, or with RESUME_WINDOW their detaches, reach
// Redis and its outbox), then stops the sweeper. The history and Redis are closed after it.
func (p *presenceFeature) Close(ctx context.Context) {
	p.Hub.Close(ctx)
	p.sweeper.Close(ctx)
}
