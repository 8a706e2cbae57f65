package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
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

// outboxEntry is one stream entry read by this consumer.
type outboxEntry struct {
	shard int
	id    string
	ev    presencestats.PresenceEvent
	err   error // unreadable entry
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

// ensureGroups creates the consumer group on every shard's stream (and the stream), reading from
// the start: entries written before the group existed are history too.
func (o *Outbox) ensureGroups(ctx context.Context) error {
	pipe := o.rdb.Pipeline()
	cmds := make([]*redis.StatusCmd, Shards)
	for shard := range Shards {
		cmds[shard] = pipe.XGroupCreateMkStream(ctx, o.keys.events(shard), o.cfg.Group, "0")
	}
	_, _ = pipe.Exec(ctx)
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
			return fmt.Errorf("create outbox consumer group: %w", err)
		}
	}
	return nil
}

// round reads one batch with read, writes it and acknowledges it; full says the read was full
// (more may be waiting). A write that fails is retried with backoff until it succeeds or Close.
func (o *Outbox) round(ctx context.Context, read func(context.Context) ([]outboxEntry, bool, error)) (bool, error) {
	entries, full, err := read(ctx)
	if err != nil {
		return false, err
	}
	if len(entries) == 0 {
		return false, nil
	}
	backoff := o.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		err := o.commitOnce(ctx, entries)
		if err == nil {
			return full, nil
		}
		if attempt == 1 || attempt%20 == 0 {
			o.log.Warn("outbox: writing presence events failed: retrying (they wait in Redis)", "events", len(entries), "attempt", attempt, "err", err)
		}
		if o.closing() {
			return false, nil // the entries stay pending, taken over after ClaimIdle
		}
		o.retried.Add(1)
		if !o.sleep(backoff) {
			return false, nil // closing: the entries stay pending, taken over after ClaimIdle
		}
		backoff = min(backoff*2, o.cfg.MaxBackoff)
	}
}

// commitOnce writes the events of entries and then acknowledges every entry (unreadable ones
// too: they can never be written). An acknowledgement that fails leaves entries pending: they are
// taken over and written again (a no-op) later.
func (o *Outbox) commitOnce(ctx context.Context, entries []outboxEntry) error {
	events := make([]presencestats.PresenceEvent, 0, len(entries))
	for _, e := range entries {
		if e.err == nil {
			events = append(events, e.ev)
		}
	}
	if len(events) > 0 {
		if err := o.w.WriteEvents(ctx, events); err != nil {
			return err
		}
	}
	for _, e := range entries {
		if e.err != nil {
			o.bad.Add(1)
			o.log.Error("outbox: unreadable entry: acknowledged, not written", "shard", e.shard, "id", e.id, "err", e.err)
		}
	}
	if err := o.acknowledge(ctx, entries); err != nil {
		o.log.Warn("outbox: acknowledging written events failed: they will be taken over and written again (no-op)", "err", err)
	}
	return nil
}

// acknowledge runs outbox_ack.lua (XACK + XDEL) once per shard of entries, pipelined.
func (o *Outbox) acknowledge(ctx context.Context, entries []outboxEntry) error {
	byShard := map[int][]any{}
	for _, e := range entries {
		byShard[e.shard] = append(byShard[e.shard], e.id)
	}
	for attempt := 0; attempt < 2; attempt++ {
		pipe := o.rdb.Pipeline()
		cmds := make(map[int]*redis.Cmd, len(byShard))
		for shard, ids := range byShard {
			cmds[shard] = o.ack.EvalSha(ctx, pipe, []string{o.keys.events(shard)}, append([]any{o.cfg.Group}, ids...)...)
		}
		_, _ = pipe.Exec(ctx)
		var err error
		noScript := false
		for shard, cmd := range cmds {
			if e := cmd.Err(); e != nil {
				noScript = noScript || redis.HasErrorPrefix(e, "NOSCRIPT")
				err = e
				continue
			}
			o.acked.Add(int64(len(byShard[shard])))
			delete(byShard, shard)
		}
		if err == nil {
			return nil
		}
		if !noScript || attempt == 1 {
			return fmt.Errorf("acknowledge outbox entries: %w", err)
		}
		if err := o.ack.Load(ctx, o.rdb).Err(); err != nil {
			return fmt.Errorf("acknowledge outbox entries: load script: %w", err)
		}
	}
	return nil
}

// readNew reads entries never delivered from every shard, in one pipelined round trip.
func (o *Outbox) readNew(ctx context.Context) ([]outboxEntry, bool, error) {
	pipe := o.rdb.Pipeline()
	cmds := make([]*redis.XStreamSliceCmd, Shards)
	for shard := range Shards {
		cmds[shard] = pipe.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: o.cfg.Group, Consumer: o.cfg.Consumer, Streams: []string{o.keys.events(shard), ">"},
			Count: max(o.counts[shard], o.perShard), Block: -1,
		})
	}
	_, _ = pipe.Exec(ctx)
	var out []outboxEntry
	full := false
	for shard, cmd := range cmds {
		streams, err := cmd.Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if redis.HasErrorPrefix(err, "NOGROUP") {
				// Redis lost the group (a restart without persistence): make it again; what the
				// stream holds now is read from its start.
				if gerr := o.ensureGroups(ctx); gerr != nil {
					return nil, false, gerr
				}
				continue
			}
			return out, false, fmt.Errorf("read outbox: %w", err)
		}
		for _, st := range streams {
			n := int64(len(st.Messages))
			if count := max(o.counts[shard], o.perShard); n >= count {
				// A busy shard (a big room): read more of it next time, up to a batch.
				full = true
				o.counts[shard] = min(2*count, int64(o.cfg.BatchSize))
			} else {
				o.counts[shard] = o.perShard
			}
			o.read.Add(n)
			for _, m := range st.Messages {
				out = append(out, decodeEntry(shard, m))
			}
		}
	}
	return out, full, nil
}

// claimRound takes over the entries other consumers (instances that died, or this one before an
// acknowledgement failed) left unacknowledged for ClaimIdle, and writes them: one pipelined
// XAUTOCLAIM per shard, then again for the shards that had more, until none has.
func (o *Outbox) claimRound(ctx context.Context) {
	cursors := make(map[int]string, Shards)
	for shard := range Shards {
		cursors[shard] = "0-0"
	}
	for len(cursors) > 0 && !o.closing() {
		pipe := o.rdb.Pipeline()
		cmds := make(map[int]*redis.XAutoClaimCmd, len(cursors))
		for shard, start := range cursors {
			cmds[shard] = pipe.XAutoClaim(ctx, &redis.XAutoClaimArgs{
				Stream: o.keys.events(shard), Group: o.cfg.Group, Consumer: o.cfg.Consumer,
				MinIdle: o.cfg.ClaimIdle, Start: start, Count: o.perShard,
			})
		}
		_, _ = pipe.Exec(ctx)
		var entries []outboxEntry
		for shard, cmd := range cmds {
			msgs, next, err := cmd.Result()
			delete(cursors, shard)
			if err != nil {
				if !redis.HasErrorPrefix(err, "NOGROUP") && !errors.Is(err, redis.Nil) && !o.closing() {
					o.log.Warn("outbox: taking over idle entries failed", "shard", shard, "err", err)
				}
				continue
			}
			for _, m := range msgs {
				entries = append(entries, decodeEntry(shard, m))
			}
			if next != "" && next != "0-0" {
				cursors[shard] = next
			}
		}
		if len(entries) == 0 {
			continue
		}
		o.claimed.Add(int64(len(entries)))
		o.log.Info("outbox: took over events another consumer left unacknowledged", "events", len(entries))
		if _, err := o.round(ctx, func(context.Context) ([]outboxEntry, bool, error) { return entries, false, nil }); err != nil {
			return
		}
	}
}

// housekeep refreshes the dropped and backlog figures and deletes the group's consumers that
// hold nothing and were idle for 10 x ClaimIdle (instances gone), one script per shard.
func (o *Outbox) housekeep(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	pipe := o.rdb.Pipeline()
	lens := make([]*redis.IntCmd, Shards)
	drops := make([]*redis.StringCmd, Shards)
	gcs := make([]*redis.Cmd, Shards)
	for shard := range Shards {
		lens[shard] = pipe.XLen(ctx, o.keys.events(shard))
		drops[shard] = pipe.Get(ctx, o.keys.dropped(shard))
		gcs[shard] = o.gc.EvalSha(ctx, pipe, []string{o.keys.events(shard)}, o.cfg.Group, o.cfg.Consumer, (10 * o.cfg.ClaimIdle).Milliseconds())
	}
	_, _ = pipe.Exec(ctx)
	var backlog, dropped int64
	for shard := range Shards {
		backlog += lens[shard].Val()
		if n, err := drops[shard].Int64(); err == nil {
			dropped += n
		}
		if redis.HasErrorPrefix(gcs[shard].Err(), "NOSCRIPT") {
			_ = o.gc.Load(ctx, o.rdb).Err() // next round
		}
	}
	if lens[0].Err() == nil {
		o.backlog.Store(backlog)
		if old := o.dropped.Swap(dropped); dropped > old {
			o.log.Error("outbox: the bound dropped events the database did not have (OUTBOX_MAX_EVENTS)", "dropped", dropped-old, "total", dropped)
		}
	}
}

// outboxEventID is the id of the n-th event of one script call: the call's base UUID with n
// added to its last four bytes (0: the base itself). Bases are version 7 UUIDs, random in their
// last 62 bits, so ids of different calls do not meet.
func outboxEventID(base uuid.UUID, n int) uuid.UUID {
	if n == 0 {
		return base
	}
	id := base
	binary.BigEndian.PutUint32(id[12:], binary.BigEndian.Uint32(id[12:])+uint32(n))
	return id
}

// decodeEntry reads a stream entry written by outbox.lua's emit.
func decodeEntry(shard int, m redis.XMessage) outboxEntry {
	e := outboxEntry{shard: shard, id: m.ID}
	v, _ := m.Values["e"].(string)
	e.ev, e.err = decodeEvent(v)
	return e
}

// decodeEvent parses "1|type|base|n|ts_us|room|user|session|delta|online|connected_us|reason|
// instance|ip|ua" and checks that the event can be stored.
func decodeEvent(v string) (presencestats.PresenceEvent, error) {
	f := strings.SplitN(v, "|", 15)
	if len(f) != 15 || f[0] != "1" {
		return presencestats.PresenceEvent{}, fmt.Errorf("outbox entry %.80q: not a version 1 event", v)
	}
	var errs []error
	id := func(s string) uuid.UUID {
		u, err := uuid.Parse(s)
		if err != nil {
			errs = append(errs, err)
		}
		return u
	}
	num := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			errs = append(errs, err)
		}
		return n
	}
	ev := presencestats.PresenceEvent{
		EventID: outboxEventID(id(f[2]), int(num(f[3]))), TS: microTime(num(f[4])),
		RoomID: id(f[5]), UserID: id(f[6]), SessionID: id(f[7]), Type: presencestats.EventType(f[1]),
		OnlineDelta: int(num(f[8])), OnlineAfter: int(num(f[9])), Reason: f[11], UserAgent: f[14],
	}
	if ev.Type == presencestats.EventDisconnected {
		ev.SessionSeconds = sessionSeconds(num(f[10]), ev.TS)
	}
	if f[13] != "" {
		if ip, err := netip.ParseAddr(f[13]); err == nil {
			ev.UserIP = ip
		}
	}
	if len(errs) > 0 {
		return presencestats.PresenceEvent{}, fmt.Errorf("outbox entry %.80q: %w", v, errors.Join(errs...))
	}
	if err := ev.Validate(); err != nil {
		return presencestats.PresenceEvent{}, fmt.Errorf("outbox entry %.80q: %w", v, err)
	}
	return ev, nil
}
