package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"presencestats"
)

// EventWriter stores a batch of presence events in the history (Collector.WriteEvents). An
// error means the batch may not be stored: it is written again later, which must be a no-op for
// the events that were (presence_events is unique on (event_id, ts)).
type EventWriter interface {
	WriteEvents(ctx context.Context, events []presencestats.PresenceEvent) error
}

// OutboxConfig configures an Outbox. Zero values take the defaults of the settings named.
type OutboxConfig struct {
	KeyPrefix string // REDIS_KEY_PREFIX
	Group     string // the consumer group; default "history"
	Consumer  string // this instance's consumer name (its instance id); required
	BatchSize int    // EVENT_BATCH_SIZE: events per write (default 1000)
	// PollInterval is the wait between reads of the streams when they had less than a batch
	// (EVENT_FLUSH_INTERVAL, default 1s).
	PollInterval time.Duration
	// ClaimIdle is how long an entry read by a consumer stays unacknowledged before another
	// consumer takes it over (OUTBOX_CLAIM_IDLE, default 30s): the time an instance killed with
	// events in hand delays them.
	ClaimIdle time.Duration
	// MinBackoff and MaxBackoff bound the wait between writes while the database is down
	// (default 100ms and 5s).
	MinBackoff, MaxBackoff time.Duration

	Logger     *slog.Logger          // default slog.Default()
	Registerer prometheus.Registerer // metrics; nil registers nothing
}

func (c *OutboxConfig) defaults() {
	if c.Group == "" {
		c.Group = "history"
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.ClaimIdle <= 0 {
		c.ClaimIdle = 30 * time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(5*time.Second, c.MinBackoff)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Outbox moves presence events from the shards' outbox streams (written by the presence scripts
// in the same step as each change, see outbox.lua and rediskeys.go) to the history. Every
// instance runs one, all in one consumer group: each entry is read by one of them (XREADGROUP),
// written in a batch through the EventWriter, and acknowledged and deleted (XACK + XDEL, one
// script per shard) only after the write committed. An entry read by an instance that dies
// stays pending in the group: after ClaimIdle another instance takes it (XAUTOCLAIM) and writes
// it again; since its event id and time are in the entry, that second write is a no-op if the
// first one committed. While the database is away, the entries wait in Redis (each consumer
// holds at most one batch), up to the streams' bound (OUTBOX_MAX_EVENTS, see Presence), past
// which the oldest are dropped and counted.
//
// One poll reads every shard: one pipelined round trip of Shards XREADGROUP (COUNT
// BatchSize/Shards each, at least 16, doubled for a shard while its reads come back full) every
// PollInterval when the streams are quiet, repeated at once while they return full reads.
//
// This file holds its settings, metrics and life cycle (Run, Close, the last round); the reading
// is in outbox_read.go, the write and acknowledgement in outbox_commit.go, the takeover of idle
// entries and the housekeeping in outbox_claim.go, the entry's format in outbox_entry.go.
type Outbox struct {
	rdb  redis.UniversalClient
	w    EventWriter
	cfg  OutboxConfig
	keys redisKeys
	log  *slog.Logger
	ack  *redis.Script
	gc   *redis.Script

	perShard int64   // COUNT of a shard's read when it was quiet
	counts   []int64 // COUNT of each shard's next read: doubled (up to BatchSize) while reads are full

	mu      sync.Mutex
	closed  bool
	closeCh chan struct{}
	drainTo context.Context
	started atomic.Bool
	done    chan struct{}

	read, claimed, acked, bad, retried, dropped, backlog atomic.Int64
}

// OutboxCounts are an Outbox's counters: entries read new, taken over from other consumers,
// acknowledged after their write, unreadable (acknowledged and counted, never written), and
// batch writes that failed and were retried.
// Dropped (events the streams' bound removed before any collector wrote them, all instances
// together) and Backlog (entries waiting in the streams) are read from Redis at each claim round.
type OutboxCounts struct {
	Read, Claimed, Acked, Bad, Retried, Dropped, Backlog int64
}

// NewOutbox returns the outbox consumer of this instance; Run starts it, Close stops it.
func NewOutbox(rdb redis.UniversalClient, w EventWriter, cfg OutboxConfig) (*Outbox, error) {
	cfg.defaults()
	if cfg.Consumer == "" {
		return nil, errors.New("outbox: consumer name required")
	}
	o := &Outbox{
		rdb: rdb, w: w, cfg: cfg, keys: redisKeys{prefix: cfg.KeyPrefix},
		log:      cfg.Logger.With("component", "event_outbox"),
		ack:      mustScript("outbox_ack.lua"),
		gc:       mustScript("outbox_gc.lua"),
		perShard: int64(max(16, (cfg.BatchSize+Shards-1)/Shards)),
		counts:   make([]int64, Shards),
		closeCh:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	if cfg.Registerer != nil {
		counter := atomicCounter
		for _, m := range []prometheus.Collector{
			counter("presence_outbox_events_read_total", "Outbox entries this instance read new.", &o.read),
			counter("presence_outbox_events_claimed_total", "Outbox entries this instance took over from a consumer that did not acknowledge them within OUTBOX_CLAIM_IDLE.", &o.claimed),
			counter("presence_outbox_events_acked_total", "Outbox entries acknowledged (and deleted) by this instance after their write committed.", &o.acked),
			counter("presence_outbox_events_bad_total", "Outbox entries that could not be read as events: acknowledged, never written.", &o.bad),
			counter("presence_event_batches_retried_total", "Batch writes of outbox events that failed and were retried (the events wait in Redis meanwhile).", &o.retried),
			counter("presence_outbox_events_dropped_total", "Events the outbox bound (OUTBOX_MAX_EVENTS) removed before the database had them, all instances together (kept in Redis).", &o.dropped),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "presence_outbox_backlog_events", Help: "Events waiting in the outbox streams, all shards (read at each claim round)."},
				func() float64 { return float64(o.backlog.Load()) }),
		} {
			if err := cfg.Registerer.Register(m); err != nil {
				return nil, fmt.Errorf("register outbox metrics: %w", err)
			}
		}
	}
	return o, nil
}

// Counts returns the counters (the same numbers as the metrics).
func (o *Outbox) Counts() OutboxCounts {
	return OutboxCounts{
		Read: o.read.Load(), Claimed: o.claimed.Load(), Acked: o.acked.Load(), Bad: o.bad.Load(),
		Retried: o.retried.Load(), Dropped: o.dropped.Load(), Backlog: o.backlog.Load(),
	}
}

// Run moves events until Close. ctx is for logging scope only: cancelling it does not stop the
// outbox (the hub's leaves at shutdown must still be written); Close does, after a last round that
// writes what the streams hold while Close's context lasts.
func (o *Outbox) Run(ctx context.Context) error {
	if !o.started.CompareAndSwap(false, true) {
		return errors.New("event outbox: Run called twice")
	}
	defer close(o.done)
	// A write in flight is cancelled when Close's deadline passes, so that a database that hangs
	// cannot hold the shutdown (and the pool's connection) past it: its events wait in Redis.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go func() {
		select {
		case <-o.closeCh:
		case <-wctx.Done():
			return
		}
		o.mu.Lock()
		deadline := o.drainTo
		o.mu.Unlock()
		select {
		case <-deadline.Done():
			cancel()
		case <-wctx.Done():
		}
	}()
	backoff := o.cfg.MinBackoff
	for !o.closing() {
		err := o.ensureGroups(wctx)
		if err == nil {
			break
		}
		o.log.Warn("outbox: creating the consumer groups failed: retrying", "err", err)
		if !o.sleep(backoff) {
			break
		}
		backoff = min(backoff*2, o.cfg.MaxBackoff)
	}
	var lastClaim time.Time
	claimEvery := max(o.cfg.ClaimIdle/2, o.cfg.PollInterval)
	for !o.closing() {
		if time.Since(lastClaim) >= claimEvery {
			lastClaim = time.Now()
			o.claimRound(wctx)
			o.housekeep(wctx)
		}
		full, err := o.round(wctx, o.readNew)
		if err != nil {
			if o.closing() {
				break
			}
			o.log.Warn("outbox: reading the streams failed", "err", err)
			if !o.sleep(backoff) {
				break
			}
			backoff = min(backoff*2, o.cfg.MaxBackoff)
			continue
		}
		backoff = o.cfg.MinBackoff
		if !full && !o.sleep(o.cfg.PollInterval) {
			break
		}
	}
	o.drain()
	return nil
}

// Close stops the outbox: its last round writes what the streams hold (this instance's hub has
// closed by then: its sessions' leaves are there) until they are empty or ctx ends; what is left
// waits in Redis for the other instances or the next start. Errors: ctx ended first.
func (o *Outbox) Close(ctx context.Context) error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed, o.drainTo = true, ctx
	close(o.closeCh)
	o.mu.Unlock()
	if o.started.CompareAndSwap(false, true) {
		close(o.done)
	}
	select {
	case <-o.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close event outbox: %w", ctx.Err())
	}
}

func (o *Outbox) closing() bool {
	select {
	case <-o.closeCh:
		return true
	default:
		return false
	}
}

// sleep waits d or until Close; false when closing.
func (o *Outbox) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-o.closeCh:
		return false
	}
}

// drain writes what the streams hold while Close's context lasts, without retrying failures.
func (o *Outbox) drain() {
	o.mu.Lock()
	ctx := o.drainTo
	o.mu.Unlock()
	if ctx == nil {
		return
	}
	for ctx.Err() == nil {
		entries, _, err := o.readNew(ctx)
		if err != nil || len(entries) == 0 {
			return
		}
		if err := o.commitOnce(ctx, entries); err != nil {
			o.log.Info("outbox: events left in Redis at shutdown, for the other instances or the next start", "err", err)
			return
		}
	}
}
