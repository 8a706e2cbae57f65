package storage

import "github.com/google/uuid"

// The Redis key layout of live presence: every key the service writes is listed here and built
// only by the functions below. P is REDIS_KEY_PREFIX (default "presence:"); {room} is the room
// UUID inside braces, a Redis Cluster hash tag, so all keys of one room live in one slot and the
// Lua scripts (storage/lua/*.lua) may touch them together.
//
//	key                          type   content                                         TTL
//	---------------------------  -----  ----------------------------------------------  ---------------------
//	P{room}:sessions             ZSET   member session UUID, score = deadline in Unix  3 x PRESENCE_TTL,
//	                                    ms (last heartbeat + PRESENCE_TTL)              refreshed by every
//	P{room}:sessdata             HASH   field session UUID ->                           join and touch; the
//	                                    "user|connected_us|inst|delta|online" (user     sweeper normally
//	                                    UUID, connected-at in Unix microseconds from    empties them first
//	                                    Redis TIME, id of the instance holding it, and
//	                                    the online_delta and count after of the join
//	                                    that registered it: its connected event, for a
//	                                    caller whose reply was lost)
//	                                    and field "clock" -> the room's event clock:    (sessdata keeps
//	                                    the Unix microseconds of its last presence      "clock" until the
//	                                    event; every event takes max(TIME, clock + 1),  TTL: an event
//	                                    so no two events of a room share a time         after it is later)
//	P{room}:users                HASH   field user UUID -> number of open sessions;    (an empty ZSET/HASH
//	                                    HLEN = online_count (O(1)), the ZSET's ZCARD =  is deleted by Redis)
//	                                    session_count (O(1))
//	Prooms                       ZSET   member room UUID, score = a lower bound of the  none (members are
//	                                    room's earliest session deadline (Unix ms): the removed when the
//	                                    sweeper's index of rooms that may hold expired  sweeper finds the
//	                                    sessions                                        room empty)
//
// Prooms is the one key outside a room's slot. On a single Redis the join script adds the room
// (ZADD LT) when its first session joins; on Redis Cluster, where Prooms hashes to a slot of its
// own and a script may not touch it, Join does that with a second command. The sweeper raises the
// score to the room's next deadline after expiring, and removes empty rooms. Touch only moves
// deadlines later, so the score stays a lower bound without being written.
//
// Pub/sub, one channel per room, all matched by the pattern "Proom:*" (every instance
// subscribes to the pattern, so its cache of counts is fresh for every room):
//
//	channel        payload
//	-------------  ------------------------------------------------------------------------------
//	Proom:<room>   "s|<online>|<sessions>|<ts_us>": the room's counts after a change, published by
//	               the Lua script that made it (so messages are in the order of the changes);
//	               "m|<json>": a chat message {"user_id","text","timestamp"}, published by the
//	               instance that received it.
type redisKeys struct {
	prefix string
}

func (k redisKeys) roomTag(room uuid.UUID) string { return k.prefix + "{" + room.String() + "}" }

// room returns the three keys of a room, in the order the Lua scripts take them as KEYS.
func (k redisKeys) room(room uuid.UUID) []string {
	tag := k.roomTag(room)
	return []string{tag + ":sessions", tag + ":sessdata", tag + ":users"}
}

// rooms is the sweeper's index of rooms with sessions.
func (k redisKeys) rooms() string { return k.prefix + "rooms" }

// channel is the pub/sub channel of a room; channelPattern matches every room's channel.
func (k redisKeys) channel(room uuid.UUID) string { return k.prefix + "room:" + room.String() }
func (k redisKeys) channelPattern() string        { return k.prefix + "room:*" }
