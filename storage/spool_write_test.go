package storage

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"

	"presencestats"
)

// The spool's writer, as versions before the outbox appended to it: only tests write spools now
// (to make the file an earlier version left).

// createSpool creates an empty spool file in dir (and dir) and opens it.
func createSpool(dir string) (*spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, spoolFile), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return openSpool(dir, slog.New(slog.DiscardHandler))
}

// append writes each batch as a frame at the end of the whole frames, then fsyncs once.
func (s *spool) append(batches ...[]presencestats.PresenceEvent) error {
	var buf []byte
	for _, events := range batches {
		payload, err := json.Marshal(toSpoolEvents(events))
		if err != nil {
			return fmt.Errorf("encode spool frame: %w", err)
		}
		var hdr [spoolFrameHeader]byte
		binary.BigEndian.PutUint32(hdr[0:4], uint32(len(payload)))
		binary.BigEndian.PutUint32(hdr[4:8], crc32.Checksum(payload, spoolCRC))
		buf = append(append(buf, hdr[:]...), payload...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.f.WriteAt(buf, s.size); err != nil {
		_ = s.f.Truncate(s.size)
		return fmt.Errorf("write spool: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("fsync spool: %w", err)
	}
	s.size += int64(len(buf))
	return nil
}

func toSpoolEvents(events []presencestats.PresenceEvent) []spoolEvent {
	out := make([]spoolEvent, len(events))
	for i, e := range events {
		out[i] = spoolEvent{
			EventID: e.EventID, TS: e.TS, RoomID: e.RoomID, UserID: e.UserID, SessionID: e.SessionID,
			Type: string(e.Type), OnlineAfter: e.OnlineAfter, OnlineDelta: e.OnlineDelta,
			SessionSeconds: e.SessionSeconds, Reason: e.Reason, UserAgent: e.UserAgent,
		}
		if e.UserIP.IsValid() {
			out[i].UserIP = e.UserIP.String()
		}
	}
	return out
}
