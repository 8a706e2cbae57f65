package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"presencestats"
	queries "presencestats/sql"
)

// CollectorConfig sizes the Collector. Zero values take the defaults of the settings named.
type CollectorConfig struct {
	BatchSize int    // EVENT_BATCH_SIZE: events per INSERT (default 1000)
	SpoolDir  string // SPOOL_DIR: where ReplaySpool looks for a spool an earlier version left; empty: none

	// MinBackoff and MaxBackoff bound the wait between the spool replay's retries while the
	// database is away (default 100ms and 5s); WriteTimeout bounds one INSERT (default 10s).
	MinBackoff, MaxBackoff time.Duration
	WriteTimeout           time.Duration

	Logger     *slog.Logger          // default slog.Default()
	Registerer prometheus.Registerer // metrics; nil registers nothing
}

func (c *CollectorConfig) defaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(5*time.Second, c.MinBackoff)
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Collector is the history's writer: WriteEvents stores batches of presence events in
// presence_events (the Outbox's EventWriter), each BatchSize events as one
// INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING, so that writing a batch again is a
// no-op for the events already there ((event_id, ts) is unique). ReplaySpool writes, once at start,
// the spool file an earlier version left (it kept events the database had not taken on local disk;
// the outbox in Redis does that now, and nothing writes a spool any more).
type Collector struct {
	pool   *pgxpool.Pool
	cfg    CollectorConfig
	log    *slog.Logger
	insert string

	written, replayed, dropped, spoolBytes atomic.Int64
	batchSize, flushSeconds                prometheus.Histogram
}

// CollectorCounts are the collector's counters since it was made: events written (by successful
// INSERTs, including no-ops for events already stored), written from an old spool, and dropped
// because the database rejected them.
type CollectorCounts struct {
	Written, Replayed, Dropped int64
}

// NewCollector returns a collector writing to pool. Errors: its metrics cannot be registered.
func NewCollector(pool *pgxpool.Pool, cfg CollectorConfig) (*Collector, error) {
	cfg.defaults()
	c := &Collector{
		pool:   pool,
		cfg:    cfg,
		log:    cfg.Logger.With("component", "event_collector"),
		insert: queries.Must("insert_events.sql"),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "presence_event_batch_size",
			Help:    "Events per INSERT written by the event collector.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "presence_event_flush_seconds",
			Help:    "Time of one successful batch INSERT of presence events.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10),
		}),
	}
	if cfg.Registerer != nil {
		counter := atomicCounter
		for _, m := range []prometheus.Collector{
			counter("presence_events_written_total", "Presence events sent to the database in successful batches.", &c.written),
			counter("presence_events_replayed_total", "Presence events written from a spool file an earlier version left (SPOOL_DIR).", &c.replayed),
			counter("presence_events_dropped_total", "Presence events the database rejected as invalid data: dropped, logged with their ids.", &c.dropped),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "presence_event_spool_bytes", Help: "Size of the spool file an earlier version left that is still to be replayed (0 once replayed)."},
				func() float64 { return float64(c.spoolBytes.Load()) }),
			c.batchSize, c.flushSeconds,
		} {
			if err := cfg.Registerer.Register(m); err != nil {
				return nil, fmt.Errorf("register collector metrics: %w", err)
			}
		}
	}
	return c, nil
}

// atomicCounter exports v as a Prometheus counter.
func atomicCounter(name, help string, v *atomic.Int64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
		func() float64 { return float64(v.Load()) })
}

// Counts returns the counters (the same numbers as the metrics).
func (c *Collector) Counts() CollectorCounts {
	return CollectorCounts{Written: c.written.Load(), Replayed: c.replayed.Load(), Dropped: c.dropped.Load()}
}

// WriteEvents writes events now, BatchSize to an INSERT. When the database rejects some as
// invalid data, only those are dropped, counted and logged (writeSorting), so that they block
// neither the events behind them nor the rest of their batch. An error means the database may not
// have taken every event: the caller writes them all again later, a no-op for those it has.
// Errors: EUNAVAILABLE when the database is unreachable, EINTERNAL otherwise.
func (c *Collector) WriteEvents(ctx context.Context, events []presencestats.PresenceEvent) error {
	for rest := events; len(rest) > 0; {
		n := min(len(rest), c.cfg.BatchSize)
		err := c.write(ctx, rest[:n])
		if isDataError(err) {
			err = c.writeSorting(ctx, rest[:n], err)
		}
		if err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// writeSorting writes a batch the database rejected (err) as invalid data in halves, and those
// in halves, down to the single events it rejects, which are dropped, counted and logged: about
// 2 x log2(batch) statements per bad event. Halves already written are no-ops when written again
// (ON CONFLICT DO NOTHING), so the caller may retry the whole batch after any other error.
func (c *Collector) writeSorting(ctx context.Context, rejected []presencestats.PresenceEvent, err error) error {
	if len(rejected) == 1 {
		e := rejected[0]
		c.dropped.Add(1)
		c.log.Error("database rejects a presence event: dropped", "event_id", e.EventID, "room_id", e.RoomID,
			"type", e.Type, "ts", e.TS, "err", err)
		return nil
	}
	half := len(rejected) / 2
	for _, part := range [][]presencestats.PresenceEvent{rejected[:half], rejected[half:]} {
		err := c.write(ctx, part)
		if isDataError(err) {
			err = c.writeSorting(ctx, part, err)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// isDataError reports errors that retrying the same rows will not cure (data exceptions and
// integrity violations), as opposed to the database being down or not migrated yet.
func isDataError(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && len(pe.Code) == 5 {
		return pe.Code[:2] == "22" || pe.Code[:2] == "23"
	}
	return false
}

// write sends one batch as one INSERT.
func (c *Collector) write(ctx context.Context, batch []presencestats.PresenceEvent) error {
	n := len(batch)
	var (
		eventIDs, roomIDs, userIDs, sessionIDs = make([]pgtype.UUID, n), make([]pgtype.UUID, n), make([]pgtype.UUID, n), make([]pgtype.UUID, n)
		ts                                     = make([]time.Time, n)
		types                                  = make([]string, n)
		onlineAfter                            = make([]int32, n)
		onlineDelta                            = make([]int16, n)
		seconds                                = make([]pgtype.Float8, n)
		reasons, ips, agents                   = make([]pgtype.Text, n), make([]pgtype.Text, n), make([]pgtype.Text, n)
	)
	for i, e := range batch {
		eventIDs[i] = pgtype.UUID{Bytes: e.EventID, Valid: true}
		roomIDs[i] = pgtype.UUID{Bytes: e.RoomID, Valid: true}
		userIDs[i] = pgtype.UUID{Bytes: e.UserID, Valid: true}
		sessionIDs[i] = pgtype.UUID{Bytes: e.SessionID, Valid: true}
		ts[i] = e.TS
		types[i] = string(e.Type)
		onlineAfter[i] = int32(e.OnlineAfter)
		onlineDelta[i] = int16(e.OnlineDelta)
		if e.Type == presencestats.EventDisconnected {
			seconds[i] = pgtype.Float8{Float64: e.SessionSeconds, Valid: true}
		}
		reasons[i] = pgtype.Text{String: storableText(e.Reason), Valid: e.Reason != ""}
		if e.UserIP.IsValid() {
			ips[i] = pgtype.Text{String: e.UserIP.String(), Valid: true}
		}
		agents[i] = pgtype.Text{String: storableText(e.UserAgent), Valid: e.UserAgent != ""}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.WriteTimeout)
	defer cancel()
	start := time.Now()
	if _, err := c.pool.Exec(ctx, c.insert, eventIDs, ts, roomIDs, userIDs, sessionIDs, types,
		onlineAfter, onlineDelta, seconds, reasons, ips, agents); err != nil {
		return pgError(err, "insert presence events")
	}
	c.flushSeconds.Observe(time.Since(start).Seconds())
	c.batchSize.Observe(float64(n))
	c.written.Add(int64(n))
	return nil
}

// ReplaySpool writes the events of the spool file an earlier version left in SpoolDir (events it
// could not write before it stopped during a database outage), frame by frame in file order,
// retrying each with backoff while the database is away, and empties the file once every frame is
// written. A frame that cannot be read is logged and skipped; a torn tail is cut. It returns nil
// at once when there is no such file, and when the spool is replayed. Run it once at start,
// beside the Outbox: the order between the two does not matter to the history. Errors: the spool
// cannot be opened, or ctx ended first (the frames not yet written stay for the next start).
func (c *Collector) ReplaySpool(ctx context.Context) error {
	if c.cfg.SpoolDir == "" {
		return nil
	}
	s, err := openSpool(c.cfg.SpoolDir, c.log)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer s.close()
	c.spoolBytes.Store(s.bytes())
	if !s.pending() {
		return nil
	}
	c.log.Info("replaying the spool an earlier version left", "path", s.path, "bytes", s.bytes())
	var n int64
	for s.pending() {
		events, end, ok, err := s.next()
		if err != nil {
			c.log.Error("spool: skipping an unreadable frame", "err", err)
			s.skip()
			continue
		}
		if !ok {
			break
		}
		if err := c.writeRetrying(ctx, events); err != nil {
			c.log.Info("spool replay stopped: the rest is replayed at the next start", "replayed", n, "bytes_left", s.bytes())
			return fmt.Errorf("replay spool: %w", err)
		}
		n += int64(len(events))
		c.replayed.Add(int64(len(events)))
		if err := s.done(end); err != nil {
			c.log.Error("spool: marking a frame replayed", "err", err)
		}
		c.spoolBytes.Store(s.bytes())
	}
	c.spoolBytes.Store(s.bytes())
	c.log.Info("spool replayed", "events", n)
	return nil
}

// writeRetrying writes events, retrying with backoff until the database takes them or ctx ends.
func (c *Collector) writeRetrying(ctx context.Context, events []presencestats.PresenceEvent) error {
	backoff := c.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		err := c.WriteEvents(ctx, events)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt == 1 || attempt%20 == 0 {
			c.log.Warn("writing presence events failed: retrying", "events", len(events), "attempt", attempt, "err", err)
		}
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}
