package storage

import (
	"github.com/google/uuid"

	"presencestats"
)

// For the package's external tests: where the outbox of a room lives, and a spool as an earlier
// version left it.

// KeyPrefix returns REDIS_KEY_PREFIX of the store.
func (p *Presence) KeyPrefix() string { return p.keys.prefix }

// OutboxStreamKey is the outbox stream of room's shard; OutboxDroppedKey its dropped counter.
func OutboxStreamKey(prefix string, room uuid.UUID) string {
	return redisKeys{prefix: prefix}.events(shardOf(room))
}

func OutboxDroppedKey(prefix string, room uuid.UUID) string {
	return redisKeys{prefix: prefix}.dropped(shardOf(room))
}

// WriteSpool writes batches to the spool file in dir (made if need be) as versions before the
// outbox spooled them, one frame each.
func WriteSpool(dir string, batches ...[]presencestats.PresenceEvent) error {
	s, err := createSpool(dir)
	if err != nil {
		return err
	}
	if err := s.append(batches...); err != nil {
		s.close()
		return err
	}
	return s.close()
}
