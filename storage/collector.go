package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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
	BatchSize     int           // EVENT_BATCH_SIZE: events per INSERT (default 1000)
	FlushInterval time.Duration // EVENT_FLUSH_INTERVAL: longest wait before a partial batch is written (1s)
	Buffer        int           // EVENT_BUFFER: events held in memory before spilling to the spool (10000)
	SpoolDir      string        // SPOOL_DIR: where the spool file lives; empty disables the spool
	SpoolMaxBytes int64         // SPOOL_MAX_BYTES: spool quota; 0 is unlimited

	// MinBackoff and MaxBackoff bound the wait between retries while the database is down
	// (default 100ms and 5s); WriteTimeout bounds one INSERT (default 10s).
	MinBackoff, MaxBackoff time.Duration
	WriteTimeout           time.Duration

	Logger     *slog.Logger          // default slog.Default()
	Registerer prometheus.Registerer // metrics; nil registers nothing
}

func (c *CollectorConfig) defaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.Buffer <= 0 {
		c.Buffer = 10000
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

// Collector records presence events into presence_events without ever making the caller wait
// on the database. Record appends to a memory buffer; a writer goroutine (Run) sends batches of
// up to BatchSize events, or whatever is there every FlushInterval, each as one
// INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING, retrying with backoff while the
// database is down. Past Buffer events in memory, the oldest go to an append-only spool file
// (fsynced per batch), replayed before newer events when the database is back, and at the next
// start; once a write has failed for want of the database, every event goes there as it comes,
// the batch the writer held included, until a write succeeds. The oldest events are dropped, and
// counted, only without a spool or when it is full. Replays and retries never duplicate rows:
// (event_id, ts) is unique.
type Collector struct {
	pool   *pgxpool.Pool
	cfg    CollectorConfig
	log    *slog.Logger
	insert string
	spool  *spool // nil: no spool

	mu      sync.Mutex
	mem     []presencestats.PresenceEvent // oldest first
	closed  bool
	closeCh chan struct{}   // closed by Close: stop waiting, drain
	drainTo context.Context // Close's context, for the last writes

	// spillMu orders the spool and memory: the writer takes from memory only while no spill is
	// half done, so a spilled batch is never overtaken by newer events.
	spillMu sync.Mutex

	wake  chan struct{} // a batch is full
	spill chan struct{} // memory is over Buffer, or holds anything during an outage
	// outage is set when a write fails for want of the database and cleared by the next write
	// that succeeds. Meanwhile (with a spool) every event goes to the spool as it comes, the batch
	// the writer held included, so that a crash during an outage loses only the last moments.
	outage  atomic.Bool
	started atomic.Bool
	done    chan struct{} // Run has returned

	recorded, written, retried, spooled, replayed, dropped atomic.Int64
	batchSize, flushSeconds                                prometheus.Histogram
}

// CollectorCounts are the collector's counters since it was made.
type CollectorCounts struct {
	Recorded, Written, Retried, Spooled, Replayed, Dropped int64
}

// NewCollector returns a collector writing to pool. Call Run to start writing and Close to stop.
// A spool left by an earlier run is replayed first. Errors: the spool cannot be opened.
func NewCollector(pool *pgxpool.Pool, cfg CollectorConfig) (*Collector, error) {
	cfg.defaults()
	c := &Collector{
		pool:    pool,
		cfg:     cfg,
		log:     cfg.Logger.With("component", "event_collector"),
		insert:  queries.Must("insert_events.sql"),
		closeCh: make(chan struct{}),
		wake:    make(chan struct{}, 1),
		spill:   make(chan struct{}, 1),
		done:    make(chan struct{}),
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
	if cfg.SpoolDir != "" {
		var err error
		if c.spool, err = openSpool(cfg.SpoolDir, cfg.SpoolMaxBytes, c.log); err != nil {
			return nil, err
		}
		if c.spool.pending() {
			c.log.Info("spool holds events from an earlier run: replaying them first", "bytes", c.spool.bytes())
		}
	}
	if cfg.Registerer != nil {
		counter := atomicCounter
		for _, m := range []prometheus.Collector{
			counter("presence_events_recorded_total", "Presence events accepted by Record.", &c.recorded),
			counter("presence_events_written_total", "Presence events sent to the database in successful batches.", &c.written),
			counter("presence_event_batches_retried_total", "Batch INSERTs that failed and were retried.", &c.retried),
			counter("presence_events_spooled_total", "Presence events spilled to the spool file.", &c.spooled),
			counter("presence_events_replayed_total", "Presence events written from the spool file.", &c.replayed),
			counter("presence_events_dropped_total", "Presence events lost: no spool or spool full, or rejected by the database.", &c.dropped),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "presence_event_buffer_events", Help: "Presence events waiting in memory."},
				func() float64 { c.mu.Lock(); defer c.mu.Unlock(); return float64(len(c.mem)) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "presence_event_spool_bytes", Help: "Size of the spool file."},
				func() float64 {
					if c.spool == nil {
						return 0
					}
					return float64(c.spool.bytes())
				}),
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
	return CollectorCounts{
		Recorded: c.recorded.Load(), Written: c.written.Load(), Retried: c.retried.Load(),
		Spooled: c.spooled.Load(), Replayed: c.replayed.Load(), Dropped: c.dropped.Load(),
	}
}

// Record queues ev for writing and returns at once; it never waits on the database or the disk.
// Errors: EINVALID for an event that cannot be stored (ev.Validate), EUNAVAILABLE after Close.
func (c *Collector) Record(ev presencestats.PresenceEvent) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return presencestats.Errorf(presencestats.EUNAVAILABLE, "event collector is closed")
	}
	c.mem = append(c.mem, ev)
	n := len(c.mem)
	if n > c.cfg.Buffer && c.spool == nil {
		// No spool: memory holds Buffer events, the oldest goes, counted.
		c.mem = c.mem[1:]
		c.dropped.Add(1)
	}
	c.mu.Unlock()
	c.recorded.Add(1)
	if n >= c.cfg.BatchSize {
		notify(c.wake)
	}
	if c.spool != nil && c.outage.Load() {
		notify(c.spill)
	}
	if n > c.cfg.Buffer && c.spool != nil {
		if n > 2*c.cfg.Buffer {
			// A burst outran the spiller while the database is down: rather than lose events,
			// this caller spills (disk, never the database). Rare: twice EVENT_BUFFER behind.
			c.spillOnce()
		} else {
			notify(c.spill)
		}
	}
	return nil
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run writes batches until Close; it returns nil after the last events were written or spooled.
// ctx is for logging scope only: cancelling it does not stop the collector (events recorded
// during shutdown, such as the hub's disconnects, must still be written); Close does.
func (c *Collector) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("event collector: Run called twice")
	}
	defer close(c.done)
	var wg sync.WaitGroup
	if c.spool != nil {
		wg.Add(1)
		go func() { defer wg.Done(); c.spiller() }()
	}
	// Writes are cancelled when Close's deadline passes, so that a hung database cannot keep
	// the buffered events from being spooled.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go func() {
		<-c.closeCh
		c.mu.Lock()
		deadline := c.drainTo
		c.mu.Unlock()
		select {
		case <-deadline.Done():
			cancel()
		case <-wctx.Done():
		}
	}()
	c.writer(wctx)
	wg.Wait()
	c.drain()
	return nil
}

// Close stops accepting events, writes what is buffered (or spools it when the database does not
// take it before ctx ends) and waits for Run to return. Without a spool, what cannot be written is
// dropped and counted. Errors: ctx ended before the collector finished.
func (c *Collector) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.drainTo = ctx
	close(c.closeCh)
	c.mu.Unlock()
	if c.started.CompareAndSwap(false, true) {
		// Run never started: drain here.
		c.drain()
		close(c.done)
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		// The in-flight write is being cancelled; spooling what is left is local disk work: give
		// it a short grace rather than lose the events.
		select {
		case <-c.done:
		case <-time.After(2 * time.Second):
			return fmt.Errorf("close event collector: %w", ctx.Err())
		}
	}
	if c.spool != nil {
		if err := c.spool.close(); err != nil {
			return fmt.Errorf("close event collector: %w", err)
		}
	}
	return nil
}

func (c *Collector) closing() bool {
	select {
	case <-c.closeCh:
		return true
	default:
		return false
	}
}

// writer is the loop of Run: spool first (older), then memory.
func (c *Collector) writer(ctx context.Context) {
	ticker := time.NewTicker(c.cfg.FlushInterval)
	defer ticker.Stop()
	flushDue := false
	for !c.closing() {
		c.spillMu.Lock()
		if c.spool != nil && c.spool.pending() {
			c.spillMu.Unlock()
			events, end, ok, err := c.spool.next()
			if err != nil {
				c.log.Error("spool: skipping an unreadable frame", "err", err)
				c.spool.skip()
				continue
			}
			if !ok {
				continue
			}
			if !c.writeRetrying(ctx, events, nil) {
				return // closing: the frame stays in the spool for the next start
			}
			c.replayed.Add(int64(len(events)))
			if err := c.spool.done(end); err != nil {
				c.log.Error("spool: marking a frame replayed", "err", err)
			}
			continue
		}
		batch := c.take(flushDue)
		c.spillMu.Unlock()
		if batch == nil {
			flushDue = false
			select {
			case <-c.wake:
			case <-ticker.C:
				flushDue = true
			case <-c.closeCh:
			}
			continue
		}
		if !c.writeRetrying(ctx, batch, c.spoolHeld) {
			c.requeue(batch) // closing: drain spools it with the rest
			return
		}
	}
}

// spoolHeld moves a batch taken from memory that the database did not take (it is down) to the
// spool, with everything memory holds, so that none of it waits for the database in memory only;
// the writer then retries from the spool. False without a spool, or when the spool fails: the
// writer keeps the batch and retries it.
func (c *Collector) spoolHeld(batch []presencestats.PresenceEvent) bool {
	if c.spool == nil {
		return false
	}
	c.spillMu.Lock()
	ok := c.toSpool(batch)
	c.spillMu.Unlock()
	if ok {
		notify(c.spill)
	}
	return ok
}

// take removes the oldest batch from memory: a full one, or any when a flush is due.
func (c *Collector) take(any bool) []presencestats.PresenceEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := min(len(c.mem), c.cfg.BatchSize)
	if n == 0 || (n < c.cfg.BatchSize && !any) {
		return nil
	}
	batch := make([]presencestats.PresenceEvent, n)
	copy(batch, c.mem)
	c.mem = c.mem[n:]
	if len(c.mem) == 0 {
		c.mem = nil
	}
	return batch
}

// requeue puts a batch back at the front of memory.
func (c *Collector) requeue(batch []presencestats.PresenceEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mem = append(batch, c.mem...)
}

// writeRetrying writes batch, retrying with backoff until it succeeds (true) or Close is called
// (false: the caller still owns the batch). When the database rejects some of the batch as
// invalid data, only the events it rejects are dropped, counted (writeSorting), so that they
// neither block the events behind them nor take the rest of their batch with them. When a write
// fails otherwise, the collector is in an outage, and park (when not nil) may take the batch
// elsewhere (true: done with it here).
func (c *Collector) writeRetrying(ctx context.Context, batch []presencestats.PresenceEvent, park func([]presencestats.PresenceEvent) bool) bool {
	backoff := c.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		err := c.write(ctx, batch, c.cfg.WriteTimeout)
		if isDataError(err) {
			err = c.writeSorting(ctx, batch, err)
		}
		if err == nil {
			c.outage.Store(false)
			return true
		}
		if !c.closing() {
			c.outage.Store(true)
			if park != nil && park(batch) {
				return true
			}
		}
		c.retried.Add(1)
		if attempt == 1 || attempt%20 == 0 {
			c.log.Warn("writing presence events failed: retrying", "events", len(batch), "attempt", attempt, "err", err)
		}
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case <-c.closeCh:
			timer.Stop()
			return false
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
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
		err := c.write(ctx, part, c.cfg.WriteTimeout)
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

// WriteBatch writes events now as one INSERT, bypassing the buffer: for tools and benchmarks
// that want the statement's cost. Errors: EUNAVAILABLE when the database is unreachable,
// EINVALID when it rejects a value, EINTERNAL otherwise.
func (c *Collector) WriteBatch(ctx context.Context, events []presencestats.PresenceEvent) error {
	return c.write(ctx, events, c.cfg.WriteTimeout)
}

// write sends one batch as one INSERT.
func (c *Collector) write(ctx context.Context, batch []presencestats.PresenceEvent, timeout time.Duration) error {
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
	ctx, cancel := context.WithTimeout(ctx, timeout)
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

// spiller moves the oldest events from memory to the spool while memory is over Buffer.
func (c *Collector) spiller() {
	for {
		select {
		case <-c.spill:
		case <-c.closeCh:
			return
		}
		for c.spillOnce() {
		}
	}
}

// spillOnce spools one batch of the oldest events if memory is over Buffer; false when it is not
// (or the spool failed).
func (c *Collector) spillOnce() bool {
	c.spillMu.Lock()
	defer c.spillMu.Unlock()
	c.mu.Lock()
	keep := c.cfg.Buffer
	if c.outage.Load() {
		keep = 0 // nothing waits for the database in memory only
	}
	over := len(c.mem) - keep
	if over <= 0 {
		c.mu.Unlock()
		return false
	}
	// Whole batches, all that is over at once (one fsync), at least one batch.
	n := min(len(c.mem), (max(over, 1)+c.cfg.BatchSize-1)/c.cfg.BatchSize*c.cfg.BatchSize)
	batch := make([]presencestats.PresenceEvent, n)
	copy(batch, c.mem)
	c.mem = c.mem[n:]
	c.mu.Unlock()
	return c.toSpool(batch)
}

// toSpool appends events to the spool in frames of BatchSize, with one fsync; what does not fit
// is dropped and counted. It reports whether everything was spooled.
func (c *Collector) toSpool(events []presencestats.PresenceEvent) bool {
	if c.spool == nil {
		c.dropped.Add(int64(len(events)))
		return false
	}
	var frames [][]presencestats.PresenceEvent
	for rest := events; len(rest) > 0; {
		n := min(len(rest), c.cfg.BatchSize)
		frames = append(frames, rest[:n])
		rest = rest[n:]
	}
	if err := c.spool.append(frames...); err != nil {
		c.dropped.Add(int64(len(events)))
		c.log.Error("spooling presence events failed: dropped", "events", len(events), "err", err)
		return false
	}
	c.spooled.Add(int64(len(events)))
	return true
}

// drain runs once after Close: write what memory holds while the database takes it and Close's
// context lasts, then spool (or drop, counted) the rest.
func (c *Collector) drain() {
	c.mu.Lock()
	ctx := c.drainTo
	rest := c.mem
	c.mem = nil
	c.mu.Unlock()
	if ctx == nil {
		ctx = context.Background()
	}
	for len(rest) > 0 && ctx.Err() == nil {
		n := min(len(rest), c.cfg.BatchSize)
		timeout := c.cfg.WriteTimeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = min(timeout, time.Until(dl))
		}
		if err := c.write(ctx, rest[:n], timeout); err != nil {
			c.log.Warn("writing presence events at shutdown failed: spooling the rest", "events", len(rest), "err", err)
			break
		}
		rest = rest[n:]
	}
	if len(rest) == 0 {
		return
	}
	if c.spool == nil {
		c.dropped.Add(int64(len(rest)))
		c.log.Error("presence events lost at shutdown: no spool", "events", len(rest))
		return
	}
	if c.toSpool(rest) {
		c.log.Info("presence events spooled at shutdown: replayed at the next start", "events", len(rest))
	}
}

// WriteEvents writes events now as one INSERT (the Outbox's writer): when the database rejects
// some as invalid data, only those are dropped, counted (as for batches from memory). An error
// means the database did not take the batch: the caller writes it again later (a no-op for rows
// already there).
func (c *Collector) WriteEvents(ctx context.Context, events []presencestats.PresenceEvent) error {
	err := c.write(ctx, events, c.cfg.WriteTimeout)
	if isDataError(err) {
		err = c.writeSorting(ctx, events, err)
	}
	return err
}
