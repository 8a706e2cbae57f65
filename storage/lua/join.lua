-- join: add a session to a room (or refresh it when it is already there), index the room for the
-- sweeper, and append the connected event to the outbox (outbox.lua) when the session is new and
-- the caller asks for it.
-- KEYS[1] room sessions ZSET, KEYS[2] room session-data HASH, KEYS[3] room users HASH,
-- KEYS[4] the shard's rooms index ZSET, KEYS[5] the shard's event stream, KEYS[6] its dropped counter,
-- KEYS[7] the room's expired sessions (expire.lua)
-- ARGV[1..5] see outbox.lua; ARGV[6] session id, ARGV[7] user id, ARGV[8] ttl ms,
-- ARGV[9] connected-at in microseconds (0: now), ARGV[10] 1: record the connected event of a new
-- session (0: a session registered again after an outage, whose connection is recorded already),
-- ARGV[11] client IP, ARGV[12] user agent
-- A session registered again (ARGV[10] 0) that a sweeper expired meanwhile (it is in KEYS[7]: the
-- history has its timeout) comes back as a new connection: its connected event is recorded, at now.
-- Returns {event time in microseconds (the room clock), online_delta, online, sessions, existed (0|1), deadline_ms,
--          then, when the session existed and ARGV[9] is 0 (the caller has not seen its
--          connection: the reply to its earlier join was lost), that join's connected event:
--          time in microseconds, online_delta, online_after (0, 0, 0 when unknown);
--          then recorded (0|1): whether a connected event was recorded by this call}.
-- tick(us) is the room's event clock, clock.lua (storage/presence.go puts it before this script).
local t = redis.call('TIME')
local now_ms = math.floor((tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000)
local now_us = tick(tonumber(t[1]) * 1000000 + tonumber(t[2]))
local ttl = tonumber(ARGV[8])
local deadline = now_ms + ttl
local existed = redis.call('ZSCORE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[1], deadline, ARGV[6])
local delta = 0
local joined = {'0', '0', '0'}
local connected_s
local record = ARGV[10] == '1'
if not existed then
  if redis.call('ZREM', KEYS[7], ARGV[6]) == 1 then record = true end -- expired: its return is a new connection
  local connected = tonumber(ARGV[9])
  if connected == 0 or (record and ARGV[10] == '0') then connected = now_us end
  connected_s = string.format('%.0f', connected)
  if redis.call('HINCRBY', KEYS[3], ARGV[7], 1) == 1 then delta = 1 end
  -- user|connected_us|instance|online_delta|online_after|ip|ua: delta and count are this join's,
  -- so that a caller whose reply was lost learns the connected event as it happened (below).
  redis.call('HSET', KEYS[2], ARGV[6], ARGV[7] .. '|' .. connected_s .. '|' .. ARGV[3] ..
    '|' .. delta .. '|' .. redis.call('HLEN', KEYS[3]) .. '|' .. ARGV[11] .. '|' .. ARGV[12])
elseif tonumber(ARGV[9]) == 0 then
  local data = redis.call('HGET', KEYS[2], ARGV[6]) or ''
  local c, d, o = string.match(data, '^[^|]*|([^|]*)|[^|]*|([^|]*)|([^|]*)')
  if c then joined = {c, d, o} end
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl * 3) end
local online = redis.call('HLEN', KEYS[3])
local sessions = redis.call('ZCARD', KEYS[1])
local now_s = string.format('%.0f', now_us)
if sessions == 1 then
  -- The room was empty, so it may be missing from the index (see rediskeys.go).
  redis.call('ZADD', KEYS[4], 'LT', deadline, ARGV[4])
end
if not existed then
  if record then
    emit('connected', now_us, ARGV[7], ARGV[6], delta, online, connected_s, '', ARGV[11], ARGV[12])
  end
  publish_counts(online, sessions, now_s)
end
return {now_s, delta, online, sessions, existed and 1 or 0, string.format('%.0f', deadline), joined[1], joined[2], joined[3],
  (not existed and record) and 1 or 0}
