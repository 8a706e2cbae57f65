package storage

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"presencestats"
)

//go:embed lua/*.lua
var luaFS embed.FS

// mustScript returns the embedded script name, after the embedded scripts in before (shared
// functions such as clock.lua's tick) when there are any.
func mustScript(name string, before ...string) *redis.Script {
	var src strings.Builder
	for _, file := range append(before, name) {
		b, err := luaFS.ReadFile("lua/" + file)
		if err != nil {
			panic(fmt.Sprintf("embedded script %s: %v", file, err)) // a build defect, not a runtime condition
		}
		src.Write(b)
	}
	return redis.NewScript(src.String())
}

// PresenceOptions configures a Presence store.
type PresenceOptions struct {
	KeyPrefix  string        // REDIS_KEY_PREFIX
	TTL        time.Duration // PRESENCE_TTL: a session without heartbeat for this long is expired
	InstanceID string        // stored with each session and event, for operators (which instance made it)
	// OutboxMaxEvents bounds the outbox streams (OUTBOX_MAX_EVENTS, all shards together): past it
	// the oldest events are dropped, and counted (see outbox.lua). 0: unbounded.
	OutboxMaxEvents int64
	// WaitReplicas (REDIS_WAIT_REPLICAS) > 0: every presence script is followed by WAIT on the
	// same connection, for WaitReplicas replicas or as many as the master has connected (fewer
	// after a failover, until the old master is back as a replica), and a change they do not all
	// confirm within WaitTimeout (default 250ms) is reported as an outcome unknown (an error
	// wrapping context.DeadlineExceeded), which callers already handle as a lost reply. Redis
	// replication is asynchronous: without it a change a master acknowledged just before it died
	// can be missing on the replica that takes over (docs/operations.md, Redis Cluster).
	WaitReplicas int
	WaitTimeout  time.Duration
	Logger       *slog.Logger
}

// Presence is the live presence of rooms in Redis: which sessions are open, by which users, and
// the counts derived from them. Every change goes through one Lua script (storage/lua) so that it
// is atomic, returns the new counts and the online delta in one round trip, carries the time of
// Redis (TIME) as its timestamp, publishes the room's new counts on its shard's sharded channel
// in the same step (presence_updates.go), and appends the event it made to the shard's outbox
// stream, which the collectors of every instance write to the history (Outbox): an event exists
// exactly when Redis applied its change, whichever process dies when. The key layout is in rediskeys.go.
//
// Errors talking to Redis are returned as EUNAVAILABLE.
type Presence struct {
	rdb      redis.UniversalClient
	keys     redisKeys
	ttl      time.Duration
	instance string
	log      *slog.Logger
	bound    int64 // MAXLEN of each shard's stream; 0: none
	waitN    int   // WAIT this many replicas after each script; 0: none
	waitMS   int64
	replicas replicaCache // connected replicas per master, for WAIT (presence_replicas.go)

	join, leave, touch, expire, counts *redis.Script
	detach, resume                     *redis.Script // presence_resume.go
}

// NewPresence returns a store over rdb.
func NewPresence(rdb redis.UniversalClient, opt PresenceOptions) *Presence {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.InstanceID == "" {
		opt.InstanceID = uuid.NewString()
	}
	if opt.WaitTimeout <= 0 {
		opt.WaitTimeout = 250 * time.Millisecond
	}
	return &Presence{
		rdb: rdb, keys: redisKeys{prefix: opt.KeyPrefix}, ttl: opt.TTL, instance: opt.InstanceID, log: opt.Logger,
		bound: outboxShardBound(opt.OutboxMaxEvents), waitN: opt.WaitReplicas, waitMS: opt.WaitTimeout.Milliseconds(),
		join: mustScript("join.lua", "clock.lua", "outbox.lua"), leave: mustScript("leave.lua", "clock.lua", "outbox.lua"),
		touch: mustScript("touch.lua", "clock.lua", "outbox.lua"), expire: mustScript("expire.lua", "clock.lua", "outbox.lua"),
		counts: mustScript("counts.lua"),
		detach: mustScript("detach.lua"), resume: mustScript("resume.lua"),
	}
}

// outboxShardBound is the MAXLEN of one shard's stream for a bound of all shards together.
func outboxShardBound(total int64) int64 {
	if total <= 0 {
		return 0
	}
	return max(1, (total+Shards-1)/Shards)
}

// scriptArgs returns the arguments every presence script takes first (outbox.lua), then extra.
// The event id base is new for each call: the events of one call are base + 0, base + 1, ...
func (p *Presence) scriptArgs(room uuid.UUID, base uuid.UUID, extra ...any) []any {
	return append([]any{p.bound, base.String(), p.instance, room.String(), p.keys.roomUpdates(room)}, extra...)
}

// TTL returns PRESENCE_TTL.
func (p *Presence) TTL() time.Duration { return p.ttl }

func unavailable(doing string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", doing, err)
	}
	return presencestats.Wrap(presencestats.EUNAVAILABLE, fmt.Errorf("%s: %w", doing, err), "presence store unavailable")
}

// run executes script with EVALSHA (one round trip). When Redis has lost its script cache
// (NOSCRIPT: a restart) it loads the script and retries.
func (p *Presence) run(ctx context.Context, s *redis.Script, keys []string, args []any) ([]any, error) {
	eval := func() (*redis.Cmd, error) { return s.EvalSha(ctx, p.rdb, keys, args...), nil }
	if p.waitN > 0 {
		eval = func() (*redis.Cmd, error) { return p.evalAndWait(ctx, s, keys, args) }
	}
	cmd, err := eval()
	if err == nil && redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		if err := s.Load(ctx, p.rdb).Err(); err != nil {
			return nil, err
		}
		cmd, err = eval()
	}
	if err != nil {
		return nil, err
	}
	if err := cmd.Err(); err != nil {
		return nil, err
	}
	vals, ok := cmd.Val().([]any)
	if !ok {
		return nil, fmt.Errorf("script reply is %T, not an array", cmd.Val())
	}
	return vals, nil
}

// reply reads the elements of a script reply.
type reply struct {
	vals []any
	err  error
}

func (r *reply) int(i int) int64 {
	if r.err != nil {
		return 0
	}
	if i >= len(r.vals) {
		r.err = fmt.Errorf("script reply has %d elements, want more than %d", len(r.vals), i)
		return 0
	}
	switch v := r.vals[i].(type) {
	case int64:
		return v
	case string:
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			r.err = fmt.Errorf("script reply element %d: %w", i, err)
		}
		return int64(n)
	}
	r.err = fmt.Errorf("script reply element %d is %T", i, r.vals[i])
	return 0
}

func (r *reply) str(i int) string {
	if r.err != nil {
		return ""
	}
	if i >= len(r.vals) {
		r.err = fmt.Errorf("script reply has %d elements, want more than %d", len(r.vals), i)
		return ""
	}
	switch v := r.vals[i].(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	}
	r.err = fmt.Errorf("script reply element %d is %T", i, r.vals[i])
	return ""
}

func (r *reply) uuid(i int) uuid.UUID {
	s := r.str(i)
	if r.err != nil {
		return uuid.Nil
	}
	id, err := uuid.Parse(s)
	if err != nil {
		r.err = fmt.Errorf("script reply element %d: %w", i, err)
	}
	return id
}

func microTime(us int64) time.Time { return time.UnixMicro(us).UTC() }

// Join opens session s in its room, or refreshes it when it is already there. With record set
// and the session new in Redis, its connected event is appended to the outbox in the same step
// (see Outbox): set it for a session not registered before (s.ConnectedAt zero) and for one that
// a sweeper expired (its timeout event is recorded); not for one registered again after Redis
// lost it, whose connection is recorded already; but a session a sweeper expired meanwhile (its
// timeout event is recorded; the expire script keeps its id for an hour) is recorded as a new
// connection all the same. The returned event is the connected event recorded (TS, OnlineAfter,
// OnlineDelta; EventID as in the outbox), for the caller's information; Type heartbeat when none was.
// When the session was already in the room nothing changed but its deadline and nothing is
// recorded: the event then has Type heartbeat and OnlineDelta 0; except for a caller that has
// not seen its connection yet (s.ConnectedAt zero), whose reply to an earlier join of the
// session was lost after Redis applied it (and recorded it): it gets that join's connected event
// (its time, delta and count).
// A session a sweeper expired is recorded as a new connection when it joins again, even without
// record: the caller may not know of the expiry (it re-registers its sessions after an outage
// longer than PRESENCE_TTL), and the history has its timeout event.
func (p *Presence) Join(ctx context.Context, s presencestats.Session, record bool) (presencestats.PresenceEvent, presencestats.OnlineStats, error) {
	var connected int64
	if !s.ConnectedAt.IsZero() {
		connected = s.ConnectedAt.UnixMicro()
	}
	rec := 0
	if record {
		rec = 1
	}
	ip := ""
	if s.UserIP.IsValid() {
		ip = s.UserIP.String()
	}
	base := presencestats.NewID()
	room := s.RoomID
	vals, err := p.run(ctx, p.join, p.keys.room(room), p.scriptArgs(room, base,
		s.ID.String(), s.UserID.String(), p.ttl.Milliseconds(), connected, rec, ip, storableText(s.UserAgent)))
	if err != nil {
		return presencestats.PresenceEvent{}, presencestats.OnlineStats{}, unavailable("presence join", err)
	}
	r := reply{vals: vals}
	ts, delta, online, sessions, existed := microTime(r.int(0)), r.int(1), r.int(2), r.int(3), r.int(4)
	if r.err != nil {
		return presencestats.PresenceEvent{}, presencestats.OnlineStats{}, fmt.Errorf("presence join: %w", r.err)
	}
	stats := presencestats.OnlineStats{RoomID: room, OnlineCount: online, SessionCount: sessions, Timestamp: ts}
	ev := presencestats.PresenceEvent{
		EventID: base, TS: ts, RoomID: room, UserID: s.UserID, SessionID: s.ID,
		Type: presencestats.EventConnected, OnlineAfter: int(online), OnlineDelta: int(delta),
		UserIP: s.UserIP, UserAgent: s.UserAgent,
	}
	if existed == 0 && r.int(9) == 0 {
		// Registered again without a connected event (its connection is in the history already).
		ev.Type, ev.OnlineDelta = presencestats.EventHeartbeat, 0
	}
	if existed == 1 {
		ev.Type, ev.OnlineDelta = presencestats.EventHeartbeat, 0
		if joinedAt, joinedDelta, joinedOnline := r.int(6), r.int(7), r.int(8); s.ConnectedAt.IsZero() && joinedAt > 0 && r.err == nil {
			ev.Type, ev.TS = presencestats.EventConnected, microTime(joinedAt)
			ev.OnlineDelta, ev.OnlineAfter = int(joinedDelta), int(joinedOnline)
		}
	}
	return ev, stats, nil
}

// Leave closes session in room, and appends its disconnected event (with reason) to the outbox
// in the same step. The returned event is that event (TS, UserID, SessionSeconds, OnlineAfter,
// OnlineDelta, Reason; EventID as in the outbox). ENOTFOUND when the session is not in the room
// (already expired, or lost with Redis's data): nothing is recorded then; the counts are
// returned too.
func (p *Presence) Leave(ctx context.Context, room, session uuid.UUID, reason string) (presencestats.PresenceEvent, presencestats.OnlineStats, error) {
	base := presencestats.NewID()
	vals, err := p.run(ctx, p.leave, p.keys.room(room), p.scriptArgs(room, base, session.String(), reason))
	if err != nil {
		return presencestats.PresenceEvent{}, presencestats.OnlineStats{}, unavailable("presence leave", err)
	}
	r := reply{vals: vals}
	ts, delta, online, sessions, found := microTime(r.int(0)), r.int(1), r.int(2), r.int(3), r.int(4)
	if r.err != nil {
		return presencestats.PresenceEvent{}, presencestats.OnlineStats{}, fmt.Errorf("presence leave: %w", r.err)
	}
	stats := presencestats.OnlineStats{RoomID: room, OnlineCount: online, SessionCount: sessions, Timestamp: ts}
	if found == 0 {
		return presencestats.PresenceEvent{}, stats, presencestats.Errorf(presencestats.ENOTFOUND, "session %s is not in room %s", session, room)
	}
	user := r.uuid(5)
	connected := r.int(6)
	if r.err != nil {
		return presencestats.PresenceEvent{}, stats, fmt.Errorf("presence leave: %w", r.err)
	}
	return presencestats.PresenceEvent{
		EventID: base, TS: ts, RoomID: room, UserID: user, SessionID: session,
		Type: presencestats.EventDisconnected, OnlineAfter: int(online), OnlineDelta: int(delta),
		SessionSeconds: sessionSeconds(connected, ts), Reason: reason,
	}, stats, nil
}

func sessionSeconds(connectedUS int64, end time.Time) float64 {
	if connectedUS <= 0 {
		return 0
	}
	return max(0, float64(end.UnixMicro()-connectedUS)/1e6)
}

// Touch moves the deadline of sessions in room to now + TTL (their heartbeat), appends a
// heartbeat event to the outbox for each of heartbeats (a subset of sessions) still there, and
// returns the room's counts and the sessions that are no longer there (expired by a sweeper, or
// lost with Redis's data): the caller joins those again.
func (p *Presence) Touch(ctx context.Context, room uuid.UUID, sessions, heartbeats []uuid.UUID) (presencestats.OnlineStats, []uuid.UUID, error) {
	beat := make(map[uuid.UUID]bool, len(heartbeats))
	for _, s := range heartbeats {
		beat[s] = true
	}
	ids := make([]any, 0, len(sessions)+2)
	ids = append(ids, p.ttl.Milliseconds(), 0)
	for _, s := range heartbeats { // the first k ids are those recorded
		ids = append(ids, s.String())
	}
	k := len(ids) - 2
	ids[1] = k
	for _, s := range sessions {
		if !beat[s] {
			ids = append(ids, s.String())
		}
	}
	vals, err := p.run(ctx, p.touch, p.keys.room(room), p.scriptArgs(room, presencestats.NewID(), ids...))
	if err != nil {
		return presencestats.OnlineStats{}, nil, unavailable("presence touch", err)
	}
	r := reply{vals: vals}
	stats := presencestats.OnlineStats{RoomID: room, Timestamp: microTime(r.int(0)), OnlineCount: r.int(1), SessionCount: r.int(2)}
	var missing []uuid.UUID
	for i := 3; i < len(vals); i++ {
		missing = append(missing, r.uuid(i))
	}
	if r.err != nil {
		return presencestats.OnlineStats{}, nil, fmt.Errorf("presence touch: %w", r.err)
	}
	return stats, missing, nil
}

// Counts returns the counts of rooms, in their order, in one round trip.
func (p *Presence) Counts(ctx context.Context, rooms ...uuid.UUID) ([]presencestats.OnlineStats, error) {
	if len(rooms) == 0 {
		return nil, nil
	}
	for attempt := 0; ; attempt++ {
		pipe := p.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(rooms))
		for i, room := range rooms {
			cmds[i] = p.counts.EvalSha(ctx, pipe, p.keys.room(room))
		}
		_, _ = pipe.Exec(ctx)
		out := make([]presencestats.OnlineStats, len(rooms))
		var err error
		for i, cmd := range cmds {
			if err = cmd.Err(); err != nil {
				break
			}
			vals, _ := cmd.Val().([]any)
			r := reply{vals: vals}
			out[i] = presencestats.OnlineStats{RoomID: rooms[i], Timestamp: microTime(r.int(0)), OnlineCount: r.int(1), SessionCount: r.int(2)}
			if err = r.err; err != nil {
				break
			}
		}
		if redis.HasErrorPrefix(err, "NOSCRIPT") && attempt == 0 {
			if err := p.counts.Load(ctx, p.rdb).Err(); err != nil {
				return nil, unavailable("presence counts: load script", err)
			}
			continue
		}
		if err != nil {
			return nil, unavailable("presence counts", err)
		}
		return out, nil
	}
}

// Expire removes the sessions of room whose deadline has passed (at most limit of them) and
// returns one disconnected event (reason timeout; a detached session's own, see Detach) per
// removed session, in the order of removal (appended to the outbox in the same step), and the
// room's counts after. Safe with any number of sweepers: a session is removed, and its event
// made, by exactly one call.
func (p *Presence) Expire(ctx context.Context, room uuid.UUID, limit int) ([]presencestats.PresenceEvent, presencestats.OnlineStats, error) {
	evs, stats, _, err := p.expireRoom(ctx, room, limit)
	return evs, stats, err
}

func (p *Presence) expireRoom(ctx context.Context, room uuid.UUID, limit int) ([]presencestats.PresenceEvent, presencestats.OnlineStats, int64, error) {
	base := presencestats.NewID()
	vals, err := p.run(ctx, p.expire, p.keys.room(room), p.scriptArgs(room, base, limit))
	if err != nil {
		return nil, presencestats.OnlineStats{}, 0, unavailable("presence expire", err)
	}
	r := reply{vals: vals}
	ts := microTime(r.int(0))
	stats := presencestats.OnlineStats{RoomID: room, Timestamp: ts, OnlineCount: r.int(1), SessionCount: r.int(2)}
	next := r.int(3)
	var evs []presencestats.PresenceEvent
	for i := 4; i+6 < len(vals); i += 7 {
		// Each expired session's event has a time of its own (the room clock, expire.lua), so that
		// the count after the last of them is the one the aggregates keep.
		session, user, connected, at := r.uuid(i), r.uuid(i+1), r.int(i+2), microTime(r.int(i+5))
		evs = append(evs, presencestats.PresenceEvent{
			EventID: outboxEventID(base, len(evs)), TS: at, RoomID: room, UserID: user, SessionID: session,
			Type: presencestats.EventDisconnected, OnlineDelta: int(r.int(i + 3)), OnlineAfter: int(r.int(i + 4)),
			SessionSeconds: sessionSeconds(connected, at), Reason: r.str(i + 6),
		})
	}
	if r.err != nil {
		return nil, stats, 0, fmt.Errorf("presence expire: %w", r.err)
	}
	return evs, stats, next, nil
}

// Sweep expires the overdue sessions of every room that may have some (the rooms index, one
// part per shard, read in one pipelined round trip) and returns their events (appended to the
// outbox by the expire script). Several instances may sweep at once: each session is expired
// once.
func (p *Presence) Sweep(ctx context.Context, limit int) ([]presencestats.PresenceEvent, error) {
	now, err := p.rdb.Time(ctx).Result()
	if err != nil {
		return nil, unavailable("presence sweep: read time", err)
	}
	pipe := p.rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, Shards)
	for shard := range Shards {
		cmds[shard] = pipe.ZRangeByScore(ctx, p.keys.rooms(shard), &redis.ZRangeBy{
			Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: int64(limit),
		})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, unavailable("presence sweep: read rooms", err)
	}
	var all []presencestats.PresenceEvent
	for shard, cmd := range cmds {
		for _, member := range cmd.Val() {
			room, err := uuid.Parse(member)
			if err != nil {
				p.log.WarnContext(ctx, "presence sweep: dropping bad member of the rooms index", "member", member)
				p.rdb.ZRem(ctx, p.keys.rooms(shard), member)
				continue
			}
			// The expire script also moves the room's index score to its next deadline, or
			// removes the room when it is empty, in the same step.
			evs, _, _, err := p.expireRoom(ctx, room, limit)
			all = append(all, evs...)
			if err != nil {
				return all, err
			}
		}
	}
	return all, nil
}

// Ping checks that Redis answers.
func (p *Presence) Ping(ctx context.Context) error {
	if err := p.rdb.Ping(ctx).Err(); err != nil {
		return unavailable("ping redis", err)
	}
	return nil
}
