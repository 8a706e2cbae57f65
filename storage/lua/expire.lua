-- expire: remove the sessions of a room whose deadline has passed (the sweeper), append one
-- disconnected event per session to the outbox (outbox.lua) with reason timeout, or the reason a
-- shutdown detached it with (detach.lua: not resumed within RESUME_WINDOW), and move the room's
-- score in the shard's index to its next deadline (or remove the empty room). Two sweepers racing
-- on a room cannot both remove a session: the script runs atomically.
-- KEYS[1] room sessions ZSET, KEYS[2] room session-data HASH, KEYS[3] room users HASH,
-- KEYS[4..6] the shard's index, stream and dropped counter (outbox.lua), KEYS[7] the room's expired
-- sessions (ZSET session -> when, kept an hour: join.lua records the return of one as a new connection)
-- ARGV[1..5] see outbox.lua; ARGV[6] at most this many sessions
-- Returns {now_us, online, sessions, next_deadline_ms (-1: room empty),
--          then per expired session: session, user, connected_us, online_delta, online_after,
--          event time in microseconds (the room clock: each session its own), reason}.
-- tick(us) is the room's event clock, clock.lua (storage/presence.go puts it before this script).
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local now_s = string.format('%.0f', now_us)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now_ms, 'LIMIT', 0, tonumber(ARGV[6]))
local out = {now_s, 0, 0, -1}
for _, s in ipairs(due) do
  redis.call('ZREM', KEYS[1], s)
  local data = redis.call('HGET', KEYS[2], s) or ''
  redis.call('HDEL', KEYS[2], s)
  local user, connected, inst, ip, ua = string.match(data, '^([^|]*)|([^|]*)|([^|]*)|[^|]*|[^|]*|([^|]*)|(.*)$')
  if not user then user, connected = string.match(data, '^([^|]*)|([^|]*)') end
  -- A session detached by a shutdown (detach.lua) and not resumed in time ends with the reason
  -- it was detached with.
  local reason = 'timeout'
  if inst and string.sub(inst, 1, 1) == '~' and #inst > 1 then reason = string.sub(inst, 2) end
  local delta = 0
  if user then
    if redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then
      redis.call('HDEL', KEYS[3], user)
      delta = -1
    end
  end
  local ts = tick(now_us)
  local online = redis.call('HLEN', KEYS[3])
  if user and user ~= '' then
    emit('disconnected', ts, user, s, delta, online, connected or '0', reason, ip or '', ua or '')
  end
  redis.call('ZADD', KEYS[7], now_ms, s)
  local n = #out
  out[n + 1] = s
  out[n + 2] = user or ''
  out[n + 3] = connected or '0'
  out[n + 4] = delta
  out[n + 5] = online
  out[n + 6] = string.format('%.0f', ts)
  out[n + 7] = reason
end
out[2] = redis.call('HLEN', KEYS[3])
out[3] = redis.call('ZCARD', KEYS[1])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 2 then
  out[4] = first[2]
  redis.call('ZADD', KEYS[4], first[2], ARGV[4])
else
  redis.call('ZREM', KEYS[4], ARGV[4])
end
if #due > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now_ms - 3600000)
  redis.call('PEXPIRE', KEYS[7], 3600000)
  publish_counts(out[2], out[3], now_s)
end
return out
