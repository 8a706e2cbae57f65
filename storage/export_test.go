package storage

import "github.com/google/uuid"

// For the package's external tests: where the outbox of a room lives.

// KeyPrefix returns REDIS_KEY_PREFIX of the store.
func (p *Presence) KeyPrefix() string { return p.keys.prefix }

// OutboxStreamKey is the outbox stream of room's shard; OutboxDroppedKey its dropped counter.
func OutboxStreamKey(prefix string, room uuid.UUID) string {
	return redisKeys{prefix: prefix}.events(shardOf(room))
}

func OutboxDroppedKey(prefix string, room uuid.UUID) string {
	return redisKeys{prefix: prefix}.dropped(shardOf(room))
}
