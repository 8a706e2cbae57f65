-- leave: remove a session from a room and append its disconnected event to the outbox (outbox.lua).
-- KEYS[1] room sessions ZSET, KEYS[2] room session-data HASH, KEYS[3] room users HASH,
-- KEYS[4..6] the shard's index, stream and dropped counter (outbox.lua)
-- ARGV[1..5] see outbox.lua; ARGV[6] session id, ARGV[7] reason
-- Returns {event time in microseconds (the room clock when found), online_delta, online, sessions, found (0|1), user id, connected_us}.
-- tick(us) is the room's event clock, clock.lua (storage/presence.go puts it before this script).
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
if redis.call('ZREM', KEYS[1], ARGV[6]) == 0 then
  return {string.format('%.0f', now_us), 0, redis.call('HLEN', KEYS[3]), redis.call('ZCARD', KEYS[1]), 0, '', '0'}
end
local ts = tick(now_us)
local now_s = string.format('%.0f', ts)
local data = redis.call('HGET', KEYS[2], ARGV[6]) or ''
redis.call('HDEL', KEYS[2], ARGV[6])
local user, connected, ip, ua = string.match(data, '^([^|]*)|([^|]*)|[^|]*|[^|]*|[^|]*|([^|]*)|(.*)$')
if not user then user, connected = string.match(data, '^([^|]*)|([^|]*)') end
local delta = 0
if user then
  if redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then
    redis.call('HDEL', KEYS[3], user)
    delta = -1
  end
end
local online = redis.call('HLEN', KEYS[3])
local sessions = redis.call('ZCARD', KEYS[1])
if user and user ~= '' then
  emit('disconnected', ts, user, ARGV[6], delta, online, connected or '0', ARGV[7], ip or '', ua or '')
end
publish_counts(online, sessions, now_s)
return {now_s, delta, online, sessions, 1, user or '', connected or '0'}
