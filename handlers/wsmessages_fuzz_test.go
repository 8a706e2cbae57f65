package handlers

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// FuzzClientFrame feeds parseClientFrame, the decoder of every client -> server frame, any bytes.
// A frame it accepts is a JSON object of a known type (a chat text trimmed, non-empty UTF-8)
// that survives the trip client -> server -> relayed message frame; every other frame gets an
// error frame with one of the documented codes; nothing panics.
func FuzzClientFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"ping"}`,
		`{"type":"message","text":"hello"}`,
		`{"type":"message","text":"  padded \t"}`,
		`{"type":"message","text":""}`,
		`{"type":"message","text":"\ud800"}`,
		`{"type":"message","text":"日本語 ✓"}`,
		`{"type":"message","text":1}`,
		`{"type":"shout","text":"x"}`,
		`{"TYPE":"ping"}`,
		`{"type":"ping","type":"message","text":"dup"}`,
		`{"type":"ping"}{"type":"ping"}`,
		` {"type":"ping"} `,
		`[]`,
		`"ping"`,
		`{`,
		"{\"type\":\"message\",\"text\":\"\xff\xfe\"}",
		"",
	} {
		f.Add([]byte(s), 64)
	}
	f.Add([]byte(`{"type":"message","text":"`+strings.Repeat("a", 100)+`"}`), 64)
	f.Fuzz(func(t *testing.T, msg []byte, maxBytes int) {
		if maxBytes < 0 || maxBytes > 1<<16 {
			maxBytes = 1 << 16
		}
		fr, code, why := parseClientFrame(msg, maxBytes)
		if code != "" {
			switch code {
			case CodeTooLarge, CodeInvalidJSON, CodeUnknownType, CodeInvalidField:
			default:
				t.Fatalf("%q: error code %q is not one a client frame can get", msg, code)
			}
			if why == "" || fr != (ClientFrame{}) {
				t.Fatalf("%q: refused (%s) with frame %+v and reason %q", msg, code, fr, why)
			}
			if len(msg) > maxBytes && code != CodeTooLarge {
				t.Fatalf("%q: %d bytes > %d but code %q", msg, len(msg), maxBytes, code)
			}
			// An error frame is itself a well-formed server frame.
			var sf struct {
				Type string         `json:"type"`
				Data ErrorFrameData `json:"data"`
			}
			if err := json.Unmarshal(errorFrame(code, why), &sf); err != nil || sf.Type != TypeError || sf.Data.Code != code {
				t.Fatalf("error frame of %q: %+v, %v", code, sf, err)
			}
			return
		}
		if len(msg) > maxBytes {
			t.Fatalf("%q: accepted %d bytes above max %d", msg, len(msg), maxBytes)
		}
		// Accepted: exactly one JSON object, nothing before or after it.
		if !json.Valid(msg) {
			t.Fatalf("%q: accepted as %+v but is not valid JSON", msg, fr)
		}
		if trimmed := bytes.TrimSpace(msg); len(trimmed) == 0 || trimmed[0] != '{' {
			t.Fatalf("%q: accepted as %+v but is not a JSON object", msg, fr)
		}
		switch fr.Type {
		case TypePing:
			if fr.Text != "" {
				t.Fatalf("%q: ping with text %q", msg, fr.Text)
			}
		case TypeMessage:
			if fr.Text == "" || fr.Text != strings.TrimSpace(fr.Text) || !utf8.ValidString(fr.Text) {
				t.Fatalf("%q: message text %q is not trimmed non-empty UTF-8", msg, fr.Text)
			}
		default:
			t.Fatalf("%q: accepted unknown type %q", msg, fr.Type)
		}
		// Round trip: the frame a client library would write for fr decodes to fr again.
		again, err := json.Marshal(fr)
		if err != nil {
			t.Fatal(err)
		}
		if fr2, code, _ := parseClientFrame(again, len(again)); code != "" || fr2 != fr {
			t.Fatalf("%q -> %+v -> %s -> %+v (%s)", msg, fr, again, fr2, code)
		}
		if fr.Type != TypeMessage {
			return
		}
		// What the other members get: the relayed message frame carries the text unchanged.
		cm := ChatMessage{RoomID: uuid.New(), UserID: uuid.New(), Text: fr.Text, Timestamp: time.Unix(1767225600, 0).UTC()}
		payload, err := json.Marshal(cm)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Type string      `json:"type"`
			Data ChatMessage `json:"data"`
		}
		out := messageFrame(payload)
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("message frame %s: %v", out, err)
		}
		if got.Type != TypeMessage || got.Data != cm {
			t.Fatalf("message frame %s decodes to %+v, want %+v", out, got.Data, cm)
		}
	})
}

// TestClientFrameByHand pins what the fuzz properties above leave open: which ordinary frames
// are accepted, and as what.
func TestClientFrameByHand(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want ClientFrame
		code string
	}{
		{`{"type":"ping"}`, ClientFrame{Type: TypePing}, ""},
		{` {"type":"ping"}` + "\n", ClientFrame{Type: TypePing}, ""},
		{`{"type":"message","text":"  hi  "}`, ClientFrame{Type: TypeMessage, Text: "hi"}, ""},
		{`{"type":"message","text":" "}`, ClientFrame{}, CodeInvalidField},
		{`{"type":"nope"}`, ClientFrame{}, CodeUnknownType},
		{`{"type":"ping"} {}`, ClientFrame{}, CodeInvalidJSON},
		{`{"type":"ping"}]`, ClientFrame{}, CodeInvalidJSON},
		{`{"type":"ping"}}`, ClientFrame{}, CodeInvalidJSON},
		{`null`, ClientFrame{}, CodeInvalidJSON},
		{`{"type":"message","text":"` + strings.Repeat("x", 70) + `"}`, ClientFrame{}, CodeTooLarge},
	} {
		got, code, _ := parseClientFrame([]byte(tc.msg), 64)
		if got != tc.want || code != tc.code {
			t.Errorf("%q: got %+v %q, want %+v %q", tc.msg, got, code, tc.want, tc.code)
		}
	}
}
