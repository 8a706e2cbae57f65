-- outbox_gc: delete the consumers of the group that hold no entry and were idle for longer than
-- ARGV[3] ms (instances gone for good), except ARGV[2] (the caller). A consumer holding entries
-- is never deleted: that would lose them (they are taken over with XAUTOCLAIM instead).
-- KEYS[1] the shard's event stream, ARGV[1] consumer group
-- Returns the number deleted.
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if consumers.err then return 0 end
local n = 0
for _, c in ipairs(consumers) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] ~= ARGV[2] and tonumber(f['pending']) == 0 and tonumber(f['idle']) > tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    n = n + 1
  end
end
return n
