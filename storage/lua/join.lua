-- join: add a session to a room (or refresh it when it is already there).
-- KEYS[1] room sessions ZSET, KEYS[2] room session-data HASH, KEYS[3] room users HASH,
-- KEYS[4] (optional, not on Redis Cluster: another slot) the sweeper's rooms index ZSET
-- ARGV[1] session id, ARGV[2] user id, ARGV[3] ttl ms, ARGV[4] instance id,
-- ARGV[5] connected-at in microseconds (0: now), ARGV[6] stats channel, ARGV[7] room id
-- Returns {event time in microseconds (the room clock), online_delta, online, sessions, existed (0|1), deadline_ms,
--          then, when the session existed and ARGV[5] is 0 (the caller has not recorded its
--          connection: the reply to its earlier join was lost), that join's connected event:
--          time in microseconds, online_delta, online_after (0, 0, 0 when unknown)}.
-- tick(us) is the room's event clock, clock.lua (storage/presence.go puts it before this script).
local t = redis.call('TIME')
local now_ms = math.floor((tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000)
local now_us = tick(tonumber(t[1]) * 1000000 + tonumber(t[2]))
local ttl = tonumber(ARGV[3])
local deadline = now_ms + ttl
local existed = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], deadline, ARGV[1])
local delta = 0
local joined = {'0', '0', '0'}
if not existed then
  local connected = tonumber(ARGV[5])
  if connected == 0 then connected = now_us end
  if redis.call('HINCRBY', KEYS[3], ARGV[2], 1) == 1 then delta = 1 end
  -- user|connected_us|instance|online_delta|online_after: the last two are this join's, so that
  -- a caller whose reply was lost can record the connected event as it happened (below).
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. '|' .. string.format('%.0f', connected) .. '|' .. ARGV[4] ..
    '|' .. delta .. '|' .. redis.call('HLEN', KEYS[3]))
elseif tonumber(ARGV[5]) == 0 then
  local data = redis.call('HGET', KEYS[2], ARGV[1]) or ''
  local c, d, o = string.match(data, '^[^|]*|([^|]*)|[^|]*|([^|]*)|([^|]*)$')
  if c then joined = {c, d, o} end
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl * 3) end
local online = redis.call('HLEN', KEYS[3])
local sessions = redis.call('ZCARD', KEYS[1])
local now_s = string.format('%.0f', now_us)
if sessions == 1 and KEYS[4] then
  -- The room was empty, so it may be missing from the index (see rediskeys.go).
  redis.call('ZADD', KEYS[4], 'LT', deadline, ARGV[7])
end
if not existed then
  redis.call('PUBLISH', ARGV[6], 's|' .. online .. '|' .. sessions .. '|' .. now_s)
end
return {now_s, delta, online, sessions, existed and 1 or 0, string.format('%.0f', deadline), joined[1], joined[2], joined[3]}
