-- touch: move the deadline of live sessions (a heartbeat), batched per room.
-- KEYS[1] room sessions ZSET, KEYS[2] room session-data HASH, KEYS[3] room users HASH
-- ARGV[1] ttl ms, ARGV[2..] session ids
-- Returns {now_us, online, sessions, missing session ids...}: a missing session was expired
-- (or lost with Redis's data) and must be joined again.
-- tick(us) is the room's event clock, clock.lua (storage/presence.go puts it before this script).
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ttl = tonumber(ARGV[1])
local deadline = math.floor(now_us / 1000) + ttl
local out = {string.format('%.0f', now_us), 0, 0}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], deadline, ARGV[i])
  else
    out[#out + 1] = ARGV[i]
  end
end
if #ARGV > #out - 2 then
  -- A session is there: the time of the heartbeat events the caller may record.
  out[1] = string.format('%.0f', tick(now_us))
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl * 3) end
end
out[2] = redis.call('HLEN', KEYS[3])
out[3] = redis.call('ZCARD', KEYS[1])
return out
