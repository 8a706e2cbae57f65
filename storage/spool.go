package storage

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"

	"presencestats"
)

// spool is the file in which versions before the outbox kept the events the database had not
// taken (during an outage, at shutdown): one append-only file of frames, each frame one batch of
// events, fsynced when written. A frame is
//
//	uint32 length of payload (big endian) | uint32 CRC-32C of payload | payload (JSON array of events)
//
// Nothing writes spools any more; Collector.ReplaySpool replays one an earlier version left, in
// order from the front, and truncates the file once every frame has been written to the database.
// Replayed again after a crash, frames already written are no-ops there (ON CONFLICT DO NOTHING).
// A torn or corrupt frame at the tail (a crash while appending) ends the file: it was never
// acknowledged as spooled.
type spool struct {
	log  *slog.Logger
	path string

	mu     sync.Mutex
	f      *os.File
	size   int64 // bytes of whole frames in the file
	offset int64 // start of the first frame not yet replayed
}

const spoolFrameHeader = 8

var spoolCRC = crc32.MakeTable(crc32.Castagnoli)

// spoolFile is the spool's name in SPOOL_DIR.
const spoolFile = "presence-events.spool"

// openSpool opens the spool file in dir and finds the frames a previous run left there, cutting
// a torn tail. Errors: fs.ErrNotExist when there is no spool file.
func openSpool(dir string, log *slog.Logger) (*spool, error) {
	path := filepath.Join(dir, spoolFile)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	s := &spool{log: log, path: path, f: f}
	// Walk the frames to find where the whole ones end; cut a torn tail.
	var off int64
	for {
		_, n, err := s.readFrameAt(off)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				log.Warn("spool: cutting a damaged tail", "path", path, "offset", off, "err", err)
			}
			break
		}
		off += n
	}
	if err := f.Truncate(off); err != nil {
		f.Close()
		return nil, fmt.Errorf("truncate spool: %w", err)
	}
	s.size = off
	return s, nil
}

// pending reports whether frames wait to be replayed.
func (s *spool) pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.offset < s.size
}

// bytes returns the file's size.
func (s *spool) bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// next returns the first frame not yet replayed and its end offset, or ok=false when none is.
func (s *spool) next() (events []presencestats.PresenceEvent, end int64, ok bool, err error) {
	s.mu.Lock()
	off, size := s.offset, s.size
	s.mu.Unlock()
	if off >= size {
		return nil, 0, false, nil
	}
	payload, n, err := s.readFrameAt(off)
	if err != nil {
		return nil, 0, false, fmt.Errorf("read spool frame at %d: %w", off, err)
	}
	var se []spoolEvent
	if err := json.Unmarshal(payload, &se); err != nil {
		return nil, 0, false, fmt.Errorf("decode spool frame at %d: %w", off, err)
	}
	return fromSpoolEvents(se), off + n, true, nil
}

// done marks the frames before end as written; once every frame is, the file is emptied.
func (s *spool) done(end int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset = end
	if s.offset < s.size {
		return nil
	}
	if err := s.f.Truncate(0); err != nil {
		return fmt.Errorf("truncate spool: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("fsync spool: %w", err)
	}
	s.offset, s.size = 0, 0
	return nil
}

// skip drops a frame that cannot be decoded, so that it does not block the ones behind it.
func (s *spool) skip() {
	s.mu.Lock()
	off := s.offset
	s.mu.Unlock()
	var hdr [spoolFrameHeader]byte
	if _, err := s.f.ReadAt(hdr[:], off); err == nil {
		_ = s.done(off + spoolFrameHeader + int64(binary.BigEndian.Uint32(hdr[0:4])))
		return
	}
	s.mu.Lock()
	end := s.size
	s.mu.Unlock()
	_ = s.done(end)
}

func (s *spool) readFrameAt(off int64) (payload []byte, n int64, err error) {
	var hdr [spoolFrameHeader]byte
	if _, err := s.f.ReadAt(hdr[:], off); err != nil {
		if errors.Is(err, io.EOF) {
			// A header cut short is a torn tail; no header at all is the end.
			return nil, 0, io.EOF
		}
		return nil, 0, err
	}
	length := binary.BigEndian.Uint32(hdr[0:4])
	if length > 1<<30 {
		return nil, 0, fmt.Errorf("frame length %d is not plausible", length)
	}
	// A damaged length must not make us allocate what the file does not hold (up to 1 GiB).
	fi, err := s.f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("stat spool: %w", err)
	}
	if int64(length) > fi.Size()-off-spoolFrameHeader {
		return nil, 0, fmt.Errorf("frame cut short: length %d at %d runs past the end of the file (%d bytes)", length, off, fi.Size())
	}
	payload = make([]byte, length)
	if _, err := s.f.ReadAt(payload, off+spoolFrameHeader); err != nil {
		return nil, 0, fmt.Errorf("frame cut short: %w", err)
	}
	if crc32.Checksum(payload, spoolCRC) != binary.BigEndian.Uint32(hdr[4:8]) {
		return nil, 0, errors.New("frame checksum mismatch")
	}
	return payload, spoolFrameHeader + int64(length), nil
}

func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Close()
}

// spoolEvent is the stored form of a PresenceEvent; field names are the column names.
type spoolEvent struct {
	EventID        uuid.UUID `json:"event_id"`
	TS             time.Time `json:"ts"`
	RoomID         uuid.UUID `json:"room_id"`
	UserID         uuid.UUID `json:"user_id"`
	SessionID      uuid.UUID `json:"session_id"`
	Type           string    `json:"event_type"`
	OnlineAfter    int       `json:"online_after"`
	OnlineDelta    int       `json:"online_delta"`
	SessionSeconds float64   `json:"session_seconds,omitempty"`
	Reason         string    `json:"reason,omitempty"`
	UserIP         string    `json:"user_ip,omitempty"`
	UserAgent      string    `json:"user_agent,omitempty"`
}

func fromSpoolEvents(se []spoolEvent) []presencestats.PresenceEvent {
	out := make([]presencestats.PresenceEvent, len(se))
	for i, e := range se {
		out[i] = presencestats.PresenceEvent{
			EventID: e.EventID, TS: e.TS, RoomID: e.RoomID, UserID: e.UserID, SessionID: e.SessionID,
			Type: presencestats.EventType(e.Type), OnlineAfter: e.OnlineAfter, OnlineDelta: e.OnlineDelta,
			SessionSeconds: e.SessionSeconds, Reason: e.Reason, UserAgent: e.UserAgent,
		}
		if ip, err := netip.ParseAddr(e.UserIP); err == nil {
			out[i].UserIP = ip
		}
	}
	return out
}
