package storage

import (
	"strings"
	"testing"
)

// Every query that reads rooms' rows has a selection's text, whose every room predicate is one an
// index on room_id answers in any plan, and an every-room text without one.
func TestByRoomsTexts(t *testing.T) {
	r := NewReports(nil, nil)
	queries := map[string]byRooms{"stats hours": r.statsHours}
	for g, q := range r.stats {
		queries["stats "+string(g)] = q
	}
	for g, q := range r.recentTemplate {
		queries["recent users "+string(g)] = q
	}
	for name, q := range queries {
		if strings.Contains(q.rooms, "{{in_rooms") || strings.Contains(q.every, "{{in_rooms") {
			t.Errorf("%s: a room placeholder is left", name)
		}
		if strings.Contains(q.rooms, "IS NULL OR") || !strings.Contains(q.rooms, ".room_id = ANY ($1::uuid[])") {
			t.Errorf("%s: the selection's text has no plain room filter:\n%s", name, q.rooms)
		}
		if strings.Contains(q.every, "room_id = ANY ($1::uuid[])") {
			t.Errorf("%s: the every-room text filters rooms:\n%s", name, q.every)
		}
		if got, want := strings.Count(q.rooms, "ANY ($1::uuid[])"), strings.Count(q.every, "$1::uuid[] IS NULL"); got != want {
			t.Errorf("%s: %d room filters for a selection, %d for every room", name, got, want)
		}
	}
	if got := r.stats["hour"].of(selection{every: true}); got != r.stats["hour"].every {
		t.Error("of(every) is not the every-room text")
	}
}
