-- outbox: emit(...) appends a presence event to the shard's stream (the outbox, KEYS[5]) in the
-- same atomic step as the change it records, so the history can never disagree with what Redis
-- applied. Put before the presence scripts (join, leave, touch, expire) by storage/presence.go.
-- Common arguments of those scripts: ARGV[1] the stream's bound (0: none), ARGV[2] the event id
-- base (a UUID made by the caller: the n-th event of the call gets base + n, see outbox_entry.go),
-- ARGV[3] instance id, ARGV[4] room id, ARGV[5] the shard's updates channel (sharded pub/sub, in
-- the script's slot: rediskeys.go). KEYS[6] counts the events the
-- bound removed before a collector had them (a loss: the database was away for too long).
-- The entry's one field "e" is "1|type|base|n|ts_us|room|user|session|delta|online|connected_us|
-- reason|instance|ip|ua" (the user agent last: it may hold "|"); see rediskeys.go.
local emitted = 0
local function emit(typ, ts, user, session, delta, online, connected, reason, ip, ua)
  local v = table.concat({'1', typ, ARGV[2], tostring(emitted), string.format('%.0f', ts), ARGV[4], user, session,
    tostring(delta), tostring(online), connected, reason, ARGV[3], ip, ua}, '|')
  emitted = emitted + 1
  local bound = tonumber(ARGV[1])
  if bound > 0 then
    local n = redis.call('XLEN', KEYS[5])
    if n >= bound then
      redis.call('XADD', KEYS[5], 'MAXLEN', '~', bound, '*', 'e', v)
      local dropped = n + 1 - redis.call('XLEN', KEYS[5])
      if dropped > 0 then redis.call('INCRBY', KEYS[6], dropped) end
      return
    end
  end
  redis.call('XADD', KEYS[5], '*', 'e', v)
end

-- publish_counts(online, sessions, ts_s) tells every instance the room's counts after the change,
-- on the shard's sharded channel (SPUBLISH: stays on the slot's node in a cluster); the payload
-- carries the room, since the channel is the shard's (rediskeys.go).
local function publish_counts(online, sessions, ts_s)
  redis.call('SPUBLISH', ARGV[5], 's|' .. ARGV[4] .. '|' .. online .. '|' .. sessions .. '|' .. ts_s)
end
