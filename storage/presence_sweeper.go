package storage

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"presencestats"
)

// Sweeper expires zombie sessions (no heartbeat for PRESENCE_TTL: a vanished client, or an
// instance that died) every SWEEP_INTERVAL; the expire script appends one timeout event per
// expired session to the outbox.
// Every instance runs one; Presence.Sweep makes that safe.
type Sweeper struct {
	presence *Presence
	interval time.Duration
	log      *slog.Logger
	expired  prometheus.Counter

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	// After Redis was unreachable, no sweep for one PRESENCE_TTL once it answers again: every
	// instance that lived through the outage re-registers its sessions meanwhile (their
	// deadlines passed while nobody could refresh them), so none of them gets a false timeout.
	// Sessions of an instance that died are expired after the pause.
	unreachable bool
	resumeAt    time.Time
	now         func() time.Time
}

// NewSweeper returns a sweeper; Start runs it.
func NewSweeper(p *Presence, interval time.Duration, log *slog.Logger, reg prometheus.Registerer) *Sweeper {
	s := &Sweeper{
		presence: p, interval: interval, log: log, now: time.Now,
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "presence_expired_sessions_total", Help: "Sessions expired by this instance's sweeper (no heartbeat for PRESENCE_TTL).",
		}),
	}
	reg.MustRegister(s.expired)
	return s
}

// Start runs the sweeper in the background until Close.
func (s *Sweeper) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.SweepOnce(ctx)
			}
		}
	}()
}

// SweepOnce expires what is due now (their events go to the outbox in the same step); it returns
// how many sessions it expired. Errors are logged: the next tick tries again. After a sweep that
// found Redis unavailable it only pings, and once Redis answers it sweeps nothing for one
// PRESENCE_TTL (see Sweeper). One goroutine at a time (the sweeper's own loop).
func (s *Sweeper) SweepOnce(ctx context.Context) int {
	sctx, cancel := context.WithTimeout(ctx, s.interval)
	defer cancel()
	if s.unreachable {
		if s.presence.Ping(sctx) != nil {
			return 0
		}
		s.unreachable, s.resumeAt = false, s.now().Add(s.presence.TTL())
		s.log.Info("presence sweep: Redis answers again; sweeping resumes after PRESENCE_TTL", "at", s.resumeAt)
	}
	if s.now().Before(s.resumeAt) {
		return 0
	}
	evs, err := s.presence.Sweep(sctx, 1000)
	s.expired.Add(float64(len(evs)))
	if err != nil && ctx.Err() == nil {
		s.log.Warn("presence sweep", "err", err)
		if presencestats.ErrorCode(err) == presencestats.EUNAVAILABLE {
			s.unreachable = true
		}
	}
	return len(evs)
}

// Close stops the sweeper and waits for a sweep in progress, or for ctx.
func (s *Sweeper) Close(ctx context.Context) {
	s.once.Do(func() {
		if s.cancel == nil {
			return
		}
		s.cancel()
		select {
		case <-s.done:
		case <-ctx.Done():
		}
	})
}
