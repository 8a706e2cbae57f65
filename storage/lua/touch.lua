-- touch: move the deadline of live sessions (a heartbeat), batched per room, and append a
-- heartbeat event to the outbox (outbox.lua) for each of the first ARGV[7] sessions still there.
-- KEYS[1] room sessions ZSET, KEYS[2] room session-data HASH, KEYS[3] room users HASH,
-- KEYS[4..6] the shard's index, stream and dropped counter (outbox.lua)
-- ARGV[1..5] see outbox.lua; ARGV[6] ttl ms, ARGV[7] k, ARGV[8..] session ids, the first k of them
-- those whose heartbeat is recorded
-- Returns {now_us, online, sessions, missing session ids...}: a missing session was expired
-- (or lost with Redis's data) and must be joined again.
-- tick(us) is the room's event clock, clock.lua (storage/presence.go puts it before this script).
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl = tonumber(ARGV[6])
local k = tonumber(ARGV[7])
local deadline = math.floor(now_us / 1000) + ttl
local out = {string.format('%.0f', now_us), 0, 0}
local beats = {}
for i = 8, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], deadline, ARGV[i])
    if i < 8 + k then beats[#beats + 1] = ARGV[i] end
  else
    out[#out + 1] = ARGV[i]
  end
end
local online = redis.call('HLEN', KEYS[3])
if #ARGV - 7 > #out - 3 then
  -- A session is there: the time of its heartbeat events.
  local ts = tick(now_us)
  out[1] = string.format('%.0f', ts)
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl * 3) end
  for _, s in ipairs(beats) do
    local data = redis.call('HGET', KEYS[2], s) or ''
    local user, ip, ua = string.match(data, '^([^|]*)|[^|]*|[^|]*|[^|]*|[^|]*|([^|]*)|(.*)$')
    if not user then user = string.match(data, '^([^|]*)|') end
    if user and user ~= '' then
      emit('heartbeat', ts, user, s, 0, online, '0', '', ip or '', ua or '')
    end
  end
end
out[2] = online
out[3] = redis.call('ZCARD', KEYS[1])
return out
