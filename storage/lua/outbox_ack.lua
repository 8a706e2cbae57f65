-- outbox_ack: acknowledge and delete outbox entries whose events the database has committed
-- (storage/outbox_commit.go), in one step so that no acknowledged entry stays in the stream.
-- KEYS[1] the shard's event stream, ARGV[1] consumer group, ARGV[2..] entry ids
-- Returns the number acknowledged.
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
local n = redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
redis.call('XDEL', KEYS[1], unpack(ids))
return n
