package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"presencestats"
)

// The outbox entry: what outbox.lua's emit writes to a shard's stream, and how it is read back
// as a PresenceEvent.

// outboxEntry is one stream entry read by this consumer.
type outboxEntry struct {
	shard int
	id    string
	ev    presencestats.PresenceEvent
	err   error // unreadable entry
}

// outboxEventID is the id of the n-th event of one script call: the call's base UUID with n
// added to its last four bytes (0: the base itself). Bases are version 7 UUIDs, random in their
// last 62 bits, so ids of different calls do not meet.
func outboxEventID(base uuid.UUID, n int) uuid.UUID {
	if n == 0 {
		return base
	}
	id := base
	binary.BigEndian.PutUint32(id[12:], binary.BigEndian.Uint32(id[12:])+uint32(n))
	return id
}

// decodeEntry reads a stream entry written by outbox.lua's emit.
func decodeEntry(shard int, m redis.XMessage) outboxEntry {
	e := outboxEntry{shard: shard, id: m.ID}
	v, _ := m.Values["e"].(string)
	e.ev, e.err = decodeEvent(v)
	return e
}

// decodeEvent parses "1|type|base|n|ts_us|room|user|session|delta|online|connected_us|reason|
// instance|ip|ua" and checks that the event can be stored.
func decodeEvent(v string) (presencestats.PresenceEvent, error) {
	f := strings.SplitN(v, "|", 15)
	if len(f) != 15 || f[0] != "1" {
		return presencestats.PresenceEvent{}, fmt.Errorf("outbox entry %.80q: not a version 1 event", v)
	}
	var errs []error
	id := func(s string) uuid.UUID {
		u, err := uuid.Parse(s)
		if err != nil {
			errs = append(errs, err)
		}
		return u
	}
	num := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			errs = append(errs, err)
		}
		return n
	}
	ev := presencestats.PresenceEvent{
		EventID: outboxEventID(id(f[2]), int(num(f[3]))), TS: microTime(num(f[4])),
		RoomID: id(f[5]), UserID: id(f[6]), SessionID: id(f[7]), Type: presencestats.EventType(f[1]),
		OnlineDelta: int(num(f[8])), OnlineAfter: int(num(f[9])), Reason: f[11], UserAgent: f[14],
	}
	if ev.Type == presencestats.EventDisconnected {
		ev.SessionSeconds = sessionSeconds(num(f[10]), ev.TS)
	}
	if f[13] != "" {
		if ip, err := netip.ParseAddr(f[13]); err == nil {
			ev.UserIP = ip
		}
	}
	if len(errs) > 0 {
		return presencestats.PresenceEvent{}, fmt.Errorf("outbox entry %.80q: %w", v, errors.Join(errs...))
	}
	if err := ev.Validate(); err != nil {
		return presencestats.PresenceEvent{}, fmt.Errorf("outbox entry %.80q: %w", v, err)
	}
	return ev, nil
}
