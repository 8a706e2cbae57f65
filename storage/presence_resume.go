package storage

// Session resume across a rolling restart: a shutting-down instance detaches its sessions
// instead of ending them, and the client that reconnects within RESUME_WINDOW, on any instance,
// resumes its session there. Neither step records an event or changes a count; a detached session
// not resumed in time is ended by the sweeper with the reason it was detached with (expire.lua).

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"presencestats"
)

// Detach lets go of session (held by this instance) without ending it: it stays in room,
// counted, until now + window, for its client to Resume on any instance; after that the sweeper
// ends it with reason. It reports false, changing nothing, when the session is not there, is
// overdue, or is held by another instance: the caller then ends it (Leave). EUNAVAILABLE when
// Redis cannot be reached; EINVALID for a window under 1 ms or a reason with "|".
func (p *Presence) Detach(ctx context.Context, room, session uuid.UUID, window time.Duration, reason string) (bool, error) {
	if window < time.Millisecond || reason == "" || strings.Contains(reason, "|") {
		return false, presencestats.Errorf(presencestats.EINVALID, "detach: window %s, reason %q", window, reason)
	}
	vals, err := p.runResume(ctx, p.detach, room, session.String(), window.Milliseconds(), reason)
	if err != nil {
		return false, unavailable("presence detach", err)
	}
	r := reply{vals: vals}
	ok := r.int(0)
	if r.err != nil {
		return false, fmt.Errorf("presence detach: %w", r.err)
	}
	return ok == 1, nil
}

// Resume takes over s.ID (a session a shutting-down instance detached) for this instance, when it
// is detached, not overdue, in s.RoomID and of s.UserID: its deadline moves to now + TTL, its
// later events carry s.UserIP and s.UserAgent, and its start is kept. It returns when the
// session started (zero and resumed false when it cannot be resumed: the caller makes a new
// session, nothing was changed) and the room's counts. EUNAVAILABLE when Redis cannot be reached.
func (p *Presence) Resume(ctx context.Context, s presencestats.Session) (connectedAt time.Time, stats presencestats.OnlineStats, resumed bool, err error) {
	ip := ""
	if s.UserIP.IsValid() {
		ip = s.UserIP.String()
	}
	vals, err := p.runResume(ctx, p.resume, s.RoomID,
		s.ID.String(), s.UserID.String(), p.ttl.Milliseconds(), ip, storableText(s.UserAgent))
	if err != nil {
		return time.Time{}, presencestats.OnlineStats{}, false, unavailable("presence resume", err)
	}
	r := reply{vals: vals}
	ok, connected := r.int(0), r.int(1)
	stats = presencestats.OnlineStats{RoomID: s.RoomID, Timestamp: microTime(r.int(2)), OnlineCount: r.int(3), SessionCount: r.int(4)}
	if r.err != nil {
		return time.Time{}, presencestats.OnlineStats{}, false, fmt.Errorf("presence resume: %w", r.err)
	}
	if ok != 1 || connected <= 0 {
		return time.Time{}, stats, false, nil
	}
	return microTime(connected), stats, true, nil
}

// runResume runs detach.lua or resume.lua on room's keys with the common arguments (outbox.lua's:
// the instance is ARGV[3]) and extra.
func (p *Presence) runResume(ctx context.Context, script *redis.Script, room uuid.UUID, extra ...any) ([]any, error) {
	return p.run(ctx, script, p.keys.room(room), p.scriptArgs(room, presencestats.NewID(), extra...))
}
