-- detach: a shutting-down instance lets go of one of its sessions without ending it, so that the
-- client can resume it on another instance (resume.lua): the session stays in the room, counted,
-- its deadline moved to now + ARGV[7] ms (RESUME_WINDOW), and its instance field set to
-- "~" .. ARGV[8]: held by nobody, and the reason the sweeper records when the window passes
-- without a resume (expire.lua). No event, no change of the counts, nothing published.
-- KEYS[1] room sessions ZSET, KEYS[2] room session-data HASH, KEYS[3] room users HASH,
-- KEYS[4] the shard's rooms index ZSET (KEYS[5..6], the outbox's, are not used)
-- ARGV[1..5] see outbox.lua (ARGV[3] the instance letting go); ARGV[6] session id,
-- ARGV[7] window ms, ARGV[8] reason
-- Returns {1} when detached; {0} when the session is not there, is overdue (the sweeper ends it with
-- a timeout) or is not held by ARGV[3]: the caller leaves it instead.
local t = redis.call('TIME')
local now_ms = math.floor((tonumber(t[1]) * 1000000 + tonumber(t[2])) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[6])
if not score or tonumber(score) <= now_ms then return {0} end
local data = redis.call('HGET', KEYS[2], ARGV[6]) or ''
local user, connected, inst, rest = string.match(data, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
if not user or inst ~= ARGV[3] then return {0} end
local window = tonumber(ARGV[7])
local deadline = now_ms + window
redis.call('ZADD', KEYS[1], deadline, ARGV[6])
redis.call('HSET', KEYS[2], ARGV[6], user .. '|' .. connected .. '|~' .. ARGV[8] .. '|' .. rest)
-- The index score is a lower bound of the room's deadlines (rediskeys.go): this one may be earlier.
redis.call('ZADD', KEYS[4], 'LT', deadline, ARGV[4])
-- The room's keys must outlive the window even when it is longer than their TTL.
for i = 1, 3 do
  if redis.call('PTTL', KEYS[i]) < window * 3 then redis.call('PEXPIRE', KEYS[i], window * 3) end
end
return {1}
