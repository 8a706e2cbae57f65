package storage

import (
	"hash/fnv"
	"strconv"

	"github.com/google/uuid"
)

// Shards is the number of shards rooms are spread over. Every key of a room carries its shard's
// Redis Cluster hash tag {sN}, and so do the shard's room index and event stream: one Lua script
// changes a room's presence, its index entry and appends the event to the outbox in one slot
// (Redis Cluster runs a script on one slot only). 64 shards spread over the cluster's masters
// (64 slots, each on some node) and cost a collector 64 reads per poll (see Outbox). Changing it
// moves rooms to other shards: it is a change of key layout, deployed as one (see below).
const Shards = 64

// The Redis key layout of live presence: every key the service writes is listed here and built
// only by the functions below. P is REDIS_KEY_PREFIX (default "presence:"); {sN} is the hash tag
// of shard N (0..Shards-1) of the room, shardOf(room) = FNV-1a 32 of the room UUID's 16 bytes
// mod Shards.
//
//	key                        type    content                                         TTL
//	-------------------------  ------  ----------------------------------------------  ---------------------
//	P{sN}:room:<uuid>:sessions ZSET    member session UUID, score = deadline in Unix  3 x PRESENCE_TTL,
//	                                   ms (last heartbeat + PRESENCE_TTL; detached:    refreshed by every
//	                                   the detach + RESUME_WINDOW)                     join and touch
//	P{sN}:room:<uuid>:sessdata HASH    field session UUID ->                           (a detach makes it
//	                                   "user|connected_us|inst|delta|online|ip|ua"     at least 3 x
//	                                   (user UUID, connected-at in Unix microseconds   RESUME_WINDOW); the
//	                                   from Redis TIME, id of the instance holding it  sweeper normally
//	                                   or, for a session a shutting-down instance      empties them first
//	                                   detached until its client resumes it, "~" and
//	                                   the reason its expiry is recorded with,
//	                                   the online_delta and count after of the join
//	                                   that registered it: its connected event, for a
//	                                   caller whose reply was lost; the client's IP
//	                                   and user agent, for the session's later events)
//	                                   and field "clock" -> the room's event clock:    (sessdata keeps
//	                                   the Unix microseconds of its last presence      "clock" until the
//	                                   event; every event takes max(TIME, clock + 1),  TTL: an event
//	                                   so no two events of a room share a time         after it is later)
//	P{sN}:room:<uuid>:users    HASH    field user UUID -> number of open sessions;    (an empty ZSET/HASH
//	                                   HLEN = online_count (O(1)), the ZSET's ZCARD =  is deleted by Redis)
//	                                   session_count (O(1))
//	P{sN}:rooms                ZSET    member room UUID, score = a lower bound of the  none (members are
//	                                   room's earliest session deadline (Unix ms): the removed when the
//	                                   sweeper's index of the shard's rooms that may   sweeper finds the
//	                                   hold expired sessions                           room empty)
//	P{sN}:events               STREAM  the outbox: one entry per presence event of the none; entries are
//	                                   shard's rooms, field "e" = "1|type|event_id|    deleted once in the
//	                                   index|ts_us|room|user|session|delta|online|     database (XACK +
//	                                   connected_us|reason|instance|ip|ua" (outbox.lua XDEL); MAXLEN ~
//	                                   writes it, outbox.go reads it); consumer group  OUTBOX_MAX_EVENTS /
//	                                   "history"                                       Shards while away
//	P{sN}:events:dropped       STRING  events the MAXLEN bound removed before the      none
//	                                   database had them (a loss, counted)
//	P{sN}:room:<uuid>:expired  ZSET    member session UUID, score = when a sweeper     1 hour, refreshed
//	                                   expired it (Unix ms), for an hour: a session    by every expiry;
//	                                   its instance registers again after an outage    older members are
//	                                   (join without record) was given a timeout       removed then
//	                                   event, so its return is a new connected event
//	                                   (expire.lua writes, join.lua reads and removes)
//
// A rolling restart (presence_resume.go): a shutting-down instance detaches its sessions
// (detach.lua: inst becomes "~server_shutdown", the deadline the end of RESUME_WINDOW, the index
// score lowered to it if it was later), and a client that reconnects in time resumes its session
// on whichever instance it reaches (resume.lua: inst becomes that instance, the deadline now +
// PRESENCE_TTL); neither changes the users HASH or records an event. The expire script records a
// detached session's end with the reason after "~" instead of timeout.
//
// Every key of a room, its index and its stream share the slot of {sN}: the join script adds the
// room to the index (ZADD LT) when its first session joins, the expire script moves the room's
// score to its next deadline or removes the empty room, and each presence script appends the
// event it made to the stream, all in its one atomic step. Touch only moves deadlines later, so
// the score stays a lower bound without being written.
//
// Changing this layout (this one replaced P{room}:... and one global Prooms in December 2026):
// instances of the new and the old layout on one Redis do not see each other's sessions. A rolling
// deploy therefore shows, for its duration, each instance counting only the sessions of its own
// layout; a client reconnecting to a new instance is a new session there (its old session was
// ended, recorded, by the old instance's shutdown). Old keys expire by their TTL (3 x PRESENCE_TTL);
// the old global index Prooms has no TTL and is swept only by old instances: delete it when the
// last old instance has stopped. Sessions of an old instance killed (not stopped) when no old
// instance is left to sweep them end without a disconnected event in the history.
//
// Pub/sub: sharded channels (SSUBSCRIBE/SPUBLISH, Redis 7), one per shard, carrying the room id
// in the payload. Every instance subscribes to all Shards channels, so its cache of counts is
// fresh for every room:
//
//	channel        payload
//	-------------  ------------------------------------------------------------------------------
//	P{sN}:updates  "s|<room>|<online>|<sessions>|<ts_us>": a room's counts after a change,
//	               published by the Lua script that made it (outbox.lua's publish_counts), so
//	               messages are in the order of the changes; "m|<room>|<json>": a chat message
//	               {"user_id","text","timestamp"}, published by the instance that received it.
//
// Why sharded channels, one per shard: in Redis Cluster a plain PUBLISH is broadcast to every node
// of the cluster (each node forwards it to its subscribers), so fan-out traffic would grow with
// the cluster instead of spreading over it. A sharded channel lives on the node owning its slot;
// P{sN}:updates has the hash tag {sN}, so it is in the slot of the shard's keys and the scripts
// SPUBLISH it in their own slot (a script may only touch its slot). SSUBSCRIBE has no pattern
// form, hence one channel per shard rather than per room; a room's messages all go through its
// shard's channel, in order. On one Redis server (not a cluster) the same commands work
// unchanged. Messages are delivered only to subscribers of the same channel kind: an instance of
// the layout before this one (PUBLISH to Proom:<room>, PSUBSCRIBE Proom:*) and one of this
// layout do not hear each other during a rolling deploy (see docs/operations.md).
//
// Why the sweeper's index is sharded (P{sN}:rooms, not one P:rooms): every join of a room's first
// session and every sweep writes the index, in the same script as the room's keys. One global
// index would be one key in one slot: on a cluster, every presence script would have to reach it,
// which is impossible in a single-slot script, and it would be a hot key on one node taking a
// write from every room of the service. Sharded, each part lives with its rooms' keys (same
// {sN}), the writes spread over the cluster's masters, and the sweeper reads the Shards parts in
// one pipelined round (go-redis sends each node its parts).
type redisKeys struct {
	prefix string
}

// shardOf returns the shard of a room.
func shardOf(room uuid.UUID) int {
	h := fnv.New32a()
	_, _ = h.Write(room[:])
	return int(h.Sum32() % Shards)
}

// RoomHashTag returns the Redis Cluster hash tag of a room's keys and channel, "{sN}": the slot
// of a room is CLUSTER KEYSLOT of it (operators and tests find a room's node with it).
func RoomHashTag(room uuid.UUID) string { return "{s" + strconv.Itoa(shardOf(room)) + "}" }

func (k redisKeys) shardTag(shard int) string { return k.prefix + "{s" + strconv.Itoa(shard) + "}" }

// room returns the keys of a room's presence scripts, in the order they take them as KEYS: the
// room's three keys, then its shard's index, event stream and dropped-events counter, then the
// room's expired sessions (KEYS[7]).
func (k redisKeys) room(room uuid.UUID) []string {
	shard := shardOf(room)
	tag := k.shardTag(shard)
	r := tag + ":room:" + room.String()
	return []string{r + ":sessions", r + ":sessdata", r + ":users", tag + ":rooms", tag + ":events", tag + ":events:dropped",
		r + ":expired"}
}

// rooms is shard's part of the sweeper's index of rooms with sessions.
func (k redisKeys) rooms(shard int) string { return k.shardTag(shard) + ":rooms" }

// events is shard's outbox stream; dropped counts what its MAXLEN bound removed unread.
func (k redisKeys) events(shard int) string  { return k.shardTag(shard) + ":events" }
func (k redisKeys) dropped(shard int) string { return k.shardTag(shard) + ":events:dropped" }

// updates is shard's sharded pub/sub channel; roomUpdates is the one of room's shard.
func (k redisKeys) updates(shard int) string          { return k.shardTag(shard) + ":updates" }
func (k redisKeys) roomUpdates(room uuid.UUID) string { return k.updates(shardOf(room)) }
