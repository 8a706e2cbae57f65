-- resume: a client that reconnects with the id of a session a shutting-down instance detached
-- (detach.lua) takes it over on the instance ARGV[3]: same session, same connected-at, nothing
-- recorded, the counts unchanged, nothing published. Only a session that is detached (instance
-- field "~reason"), not overdue, and of the same user is resumed; anything else (unknown, expired,
-- already resumed by another connection, another user's) is refused, untouched, and the caller
-- makes a new session. Two resumes of one session: the first takes it, the second is refused.
-- KEYS[1] room sessions ZSET, KEYS[2] room session-data HASH, KEYS[3] room users HASH
-- (KEYS[4..6], the shard's index and outbox, are not used: the deadline only moves later)
-- ARGV[1..5] see outbox.lua (ARGV[3] the instance taking it); ARGV[6] session id, ARGV[7] user id,
-- ARGV[8] ttl ms, ARGV[9] client IP, ARGV[10] user agent (of the new connection, for the
-- session's later events)
-- Returns {resumed (0|1), connected_us, now_us, online, sessions}.
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local now_s = string.format('%.0f', now_us)
local score = redis.call('ZSCORE', KEYS[1], ARGV[6])
local data = redis.call('HGET', KEYS[2], ARGV[6]) or ''
local user, connected, inst, delta, online = string.match(data, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|')
if not score or tonumber(score) <= now_ms or not user or user ~= ARGV[7] or string.sub(inst, 1, 1) ~= '~' then
  return {0, '0', now_s, redis.call('HLEN', KEYS[3]), redis.call('ZCARD', KEYS[1])}
end
local ttl = tonumber(ARGV[8])
redis.call('ZADD', KEYS[1], now_ms + ttl, ARGV[6])
redis.call('HSET', KEYS[2], ARGV[6], user .. '|' .. connected .. '|' .. ARGV[3] .. '|' .. delta .. '|' .. online ..
  '|' .. ARGV[9] .. '|' .. ARGV[10])
for i = 1, 3 do
  if redis.call('PTTL', KEYS[i]) < ttl * 3 then redis.call('PEXPIRE', KEYS[i], ttl * 3) end
end
return {1, connected, now_s, redis.call('HLEN', KEYS[3]), redis.call('ZCARD', KEYS[1])}
