-- counts: the room's counts with the server's time, read in one atomic step.
-- KEYS[1] room sessions ZSET, KEYS[2] room session-data HASH, KEYS[3] room users HASH
-- Returns {now_us, online, sessions}.
local t = redis.call('TIME')
return {string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2])), redis.call('HLEN', KEYS[3]), redis.call('ZCARD', KEYS[1])}
