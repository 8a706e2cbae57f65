package storage

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"

	"presencestats"
)

// spoolBatches returns n batches of 1 to 5 distinct events, a function of seed.
func spoolBatches(seed uint64, n int) [][]presencestats.PresenceEvent {
	r := rand.New(rand.NewPCG(seed, 7))
	id := func() uuid.UUID {
		var u uuid.UUID
		for i := range u {
			u[i] = byte(r.UintN(256))
		}
		return u
	}
	types := []presencestats.EventType{presencestats.EventConnected, presencestats.EventDisconnected, presencestats.EventHeartbeat}
	ips := []netip.Addr{{}, netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8::1")}
	out := make([][]presencestats.PresenceEvent, n)
	for b := range out {
		for range 1 + r.IntN(5) {
			ev := presencestats.PresenceEvent{
				EventID: id(), TS: time.UnixMicro(1767225600_000000 + r.Int64N(1e12)).UTC(),
				RoomID: id(), UserID: id(), SessionID: id(), Type: types[r.IntN(len(types))],
				OnlineAfter: r.IntN(1000), OnlineDelta: r.IntN(3) - 1, UserIP: ips[r.IntN(len(ips))],
				UserAgent: "agent/" + string(rune('a'+r.IntN(26))),
			}
			if ev.Type == presencestats.EventDisconnected {
				ev.SessionSeconds, ev.Reason = float64(r.IntN(1e6))/8, presencestats.ReasonClosed
			}
			out[b] = append(out[b], ev)
		}
	}
	return out
}

// writeSpool appends batches one frame each and returns the file's bytes and the end offset of
// every frame.
func writeSpool(t *testing.T, dir string, batches [][]presencestats.PresenceEvent) ([]byte, []int64) {
	t.Helper()
	s, err := createSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	ends := make([]int64, len(batches))
	for i, b := range batches {
		if err := s.append(b); err != nil {
			t.Fatal(err)
		}
		ends[i] = s.bytes()
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "presence-events.spool"))
	if err != nil {
		t.Fatal(err)
	}
	return data, ends
}

// replaySpool opens the spool in dir and reads it as Collector.ReplaySpool does (next; skip
// what cannot be read; done), then appends one more batch and reads that too: a damaged tail
// must not swallow what is spooled after the restart. It returns the events read before the
// extra batch.
func replaySpool(t *testing.T, dir string, extra []presencestats.PresenceEvent) []presencestats.PresenceEvent {
	t.Helper()
	s, err := openSpool(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open a damaged spool: %v", err)
	}
	defer s.close()
	drain := func() []presencestats.PresenceEvent {
		var got []presencestats.PresenceEvent
		for i := 0; s.pending(); i++ {
			if i > 1<<16 {
				t.Fatal("the spool never runs dry")
			}
			events, end, ok, err := s.next()
			if err != nil {
				s.skip()
				continue
			}
			if !ok {
				break
			}
			got = append(got, events...)
			if err := s.done(end); err != nil {
				t.Fatal(err)
			}
		}
		return got
	}
	got := drain()
	if err := s.append(extra); err != nil {
		t.Fatalf("append after opening a damaged spool: %v", err)
	}
	if after := drain(); !equalEvents(after, extra) {
		t.Fatalf("the batch spooled after the restart came back as %d events, want %d", len(after), len(extra))
	}
	return got
}

func equalEvents(a, b []presencestats.PresenceEvent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzSpoolDamage writes valid frames, damages the file at a fuzzed offset (cut there, bytes
// overwritten, or bytes inserted), and replays it: every event of the frames that end before
// the first damaged byte must come back, first and in order; nothing panics; reading allocates
// in proportion to the file, whatever its length fields claim; what is spooled after the restart
// is read back.
func FuzzSpoolDamage(f *testing.F) {
	f.Add(uint64(1), uint8(3), uint32(0), uint8(0), []byte{})
	f.Add(uint64(2), uint8(4), uint32(40), uint8(0), []byte{})     // cut inside a frame
	f.Add(uint64(3), uint8(4), uint32(3), uint8(1), []byte{0xff})  // a length byte
	f.Add(uint64(4), uint8(4), uint32(5), uint8(1), []byte{0x00})  // a checksum byte
	f.Add(uint64(5), uint8(4), uint32(200), uint8(1), []byte("]")) // a payload byte
	f.Add(uint64(7), uint8(5), uint32(300), uint8(2), []byte("garbage"))
	f.Add(uint64(8), uint8(1), uint32(1<<20), uint8(2), []byte{0, 0, 0, 0, 0, 0, 0, 0}) // an empty frame appended
	f.Fuzz(func(t *testing.T, seed uint64, n uint8, at uint32, mode uint8, junk []byte) {
		dir := t.TempDir()
		batches := spoolBatches(seed, 1+int(n%8))
		data, ends := writeSpool(t, dir, batches)
		off := int(at) % (len(data) + 1)
		var damaged []byte
		switch mode % 3 {
		case 0: // a crash mid-write: the file ends at off
			damaged = data[:off]
		case 1: // bytes overwritten (the file may grow)
			damaged = append([]byte(nil), data...)
			for i, b := range junk {
				if off+i < len(damaged) {
					damaged[off+i] = b
				} else {
					damaged = append(damaged, b)
				}
			}
		case 2: // bytes inserted
			damaged = append(append(append([]byte(nil), data[:off]...), junk...), data[off:]...)
		}
		first := 0 // the first byte that differs from what was written
		for first < len(damaged) && first < len(data) && damaged[first] == data[first] {
			first++
		}
		var want []presencestats.PresenceEvent
		for i, end := range ends {
			if end <= int64(first) {
				want = append(want, batches[i]...)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "presence-events.spool"), damaged, 0o640); err != nil {
			t.Fatal(err)
		}

		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got := replaySpool(t, dir, spoolBatches(seed+1, 1)[0])
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20+64*uint64(len(damaged)) {
			t.Fatalf("replaying a %d-byte spool allocated %d bytes", len(damaged), alloc)
		}
		if len(got) < len(want) || !equalEvents(got[:len(want)], want) {
			t.Fatalf("damage at byte %d of %d (mode %d): got %d events, want the %d of the frames before it first",
				first, len(data), mode%3, len(got), len(want))
		}
	})
}

// FuzzSpoolFrame puts a fuzzed payload, with a correct header and checksum, between two valid
// frames: whatever the payload (not JSON, JSON of the wrong shape, odd values), the frames on
// both sides come back whole and nothing panics.
func FuzzSpoolFrame(f *testing.F) {
	for _, s := range []string{
		`[]`, `null`, `{}`, `[{}]`, `[1]`, `"x"`, `[{"ts":"not a time"}]`, `[{"event_id":"nope"}]`,
		`[{"user_ip":"999.1.1.1","online_after":-5,"event_type":"bogus"}]`,
		`[{"ts":"10000-01-01T00:00:00Z"}]`, `[{"session_seconds":1e999}]`, `[`, ``, "\xff",
	} {
		f.Add(uint64(1), []byte(s))
	}
	f.Fuzz(func(t *testing.T, seed uint64, payload []byte) {
		dir := t.TempDir()
		batches := spoolBatches(seed, 2)
		data, ends := writeSpool(t, dir, batches)
		var hdr [spoolFrameHeader]byte
		binary.BigEndian.PutUint32(hdr[0:4], uint32(len(payload)))
		binary.BigEndian.PutUint32(hdr[4:8], crc32.Checksum(payload, spoolCRC))
		file := bytes.Join([][]byte{data[:ends[0]], hdr[:], payload, data[ends[0]:]}, nil)
		if err := os.WriteFile(filepath.Join(dir, "presence-events.spool"), file, 0o640); err != nil {
			t.Fatal(err)
		}
		got := replaySpool(t, dir, spoolBatches(seed+1, 1)[0])
		if len(got) < len(batches[0])+len(batches[1]) {
			t.Fatalf("got %d events, want at least the %d of the frames around the fuzzed one", len(got), len(batches[0])+len(batches[1]))
		}
		if !equalEvents(got[:len(batches[0])], batches[0]) || !equalEvents(got[len(got)-len(batches[1]):], batches[1]) {
			t.Fatalf("the frames around the fuzzed one did not come back whole: %d events", len(got))
		}
	})
}
