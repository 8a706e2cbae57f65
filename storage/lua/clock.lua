-- clock: the room's event clock, put before the scripts that make presence events (join, leave,
-- touch, expire) by storage/presence.go. Its state is field "clock" of the session-data HASH
-- KEYS[2] (see rediskeys.go): the time of every presence event of a room, strictly increasing, so
-- that no two share a time and last(online_after, ts) in the aggregates is the count after the
-- room's last change. tick(us) returns the time for an event made at Redis time us.
local function tick(us)
  local last = tonumber(redis.call('HGET', KEYS[2], 'clock') or '0')
  if us <= last then us = last + 1 end
  redis.call('HSET', KEYS[2], 'clock', string.format('%.0f', us))
  -- A HASH made here (its sessions' data lost) must not outlive the room's keys by forever.
  if redis.call('PTTL', KEYS[2]) == -1 then redis.call('PEXPIRE', KEYS[2], 3600000) end
  return us
end
