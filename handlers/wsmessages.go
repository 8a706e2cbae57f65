package handlers

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"presencestats"
)

// Every WebSocket message of GET /ws/rooms/:room_id, both directions, is declared in this file.
// Frames are JSON text frames {"type": ..., "data": ...}.
//
// Server -> client:
//
//	welcome       first frame after the upgrade: the session's ids and the client's duties
//	              (heartbeat_interval_ms: send {"type":"ping"} at least this often when the
//	              WebSocket library does not answer server pings by itself; max_message_bytes),
//	              and resumed (the session named by ?resume= was resumed, see below)
//	online_stats  the room's counts (presencestats.OnlineStats): once right after joining (the
//	              snapshot, which counts the joiner: no push or chat reaches a session before
//	              it) and after every change, coalesced per room (the first change after a
//	              quiet window at once; the window is STATS_PUSH_INTERVAL, wider in a large
//	              room: wshub_push.go)
//	message       a chat message relayed to everyone in the room, on every instance
//	pong          the answer to {"type":"ping"}
//	error         a bad frame (the connection stays open): data.code is one of the Code* below
//
// Client -> server:
//
//	{"type":"message","text":"..."}   chat (frame at most MAX_MESSAGE_BYTES, rate-limited)
//	{"type":"ping"}                   application heartbeat; WebSocket pongs count as well
//
// Close codes the server uses: 1000 normal, 1001 server shutdown (RESUME_WINDOW 0: the session
// ended), 1008 slow consumer (its send buffer of WS_SEND_BUFFER frames overflowed), 1009 frame
// above 4 x MAX_MESSAGE_BYTES, 1012 service restart (CloseServiceRestart: the instance is
// stopping and kept the session for RESUME_WINDOW).
//
// Resume (wshub_resume.go): after a 1012 close, reconnect, to any instance, to the same room with
// ?resume=<session_id of the welcome frame> (beside access_token) within RESUME_WINDOW. The
// welcome frame then has "resumed": true and the same session_id: the session goes on, with no
// disconnected/connected pair and no change of the counts. A resume that cannot be honoured (the
// window passed, the session is someone else's or was resumed already, another room, resume off)
// is a new session ("resumed": false, a new session_id), never an error; a resume that is not a
// UUID is a 400. A client may send resume on every reconnect: after a plain network drop the old
// session is still held by its instance, so it is a new session and the old one times out.
const (
	TypeWelcome     = "welcome"
	TypeOnlineStats = "online_stats"
	TypeMessage     = "message"
	TypePing        = "ping"
	TypePong        = "pong"
	TypeError       = "error"
)

// Error codes of error frames.
const (
	CodeTooLarge     = "too_large"    // frame above MAX_MESSAGE_BYTES
	CodeInvalidJSON  = "invalid_json" // not a JSON object
	CodeUnknownType  = "unknown_type" // a type the server does not know
	CodeInvalidField = "invalid"      // a known type with a bad field (empty text...)
	CodeRateLimited  = "rate_limited" // chat faster than CHAT_RATE / CHAT_BURST
	CodeUnavailable  = "unavailable"  // the message could not be relayed to other instances
)

// ServerFrame is every server -> client frame.
type ServerFrame struct {
	Type string `json:"type"`
	Data any    `json:"data,omitempty"`
}

// WelcomeData is the data of a welcome frame.
type WelcomeData struct {
	SessionID           uuid.UUID `json:"session_id"`
	RoomID              uuid.UUID `json:"room_id"`
	UserID              uuid.UUID `json:"user_id"`
	HeartbeatIntervalMS int64     `json:"heartbeat_interval_ms"`
	MaxMessageBytes     int       `json:"max_message_bytes"`
	// Resumed is true when the connection resumed the session named by ?resume= (the session of a
	// socket a restarting instance closed with 1012): same session_id, nothing recorded, no count
	// changed. False: a new session (session_id is new), whatever ?resume= said.
	Resumed bool `json:"resumed"`
}

// ChatMessage is the data of a message frame, and what instances relay to each other.
type ChatMessage struct {
	RoomID    uuid.UUID `json:"room_id"`
	UserID    uuid.UUID `json:"user_id"`
	Text      string    `json:"text"`
	Timestamp time.Time `json:"timestamp"`
}

// ErrorFrameData is the data of an error frame.
type ErrorFrameData struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ClientFrame is every client -> server frame.
type ClientFrame struct {
	Type string `json:"type"`
	Text string `json:"text,omitempty"`
}

// StatsFrame returns the online_stats frame of st.
func StatsFrame(st presencestats.OnlineStats) []byte {
	return mustFrame(TypeOnlineStats, st)
}

func mustFrame(typ string, data any) []byte {
	b, err := json.Marshal(ServerFrame{Type: typ, Data: data})
	if err != nil { // only plain structs are marshalled here
		panic(err)
	}
	return b
}

const pongFrame = `{"type":"pong"}`

func errorFrame(code, msg string) []byte {
	return mustFrame(TypeError, ErrorFrameData{Code: code, Message: msg})
}

// parseClientFrame decodes one client text frame of at most maxBytes. It returns the frame, or
// the code and message of the error frame that answers it. A frame it returns is a ping or a
// message whose text is trimmed, non-empty UTF-8.
func parseClientFrame(msg []byte, maxBytes int) (f ClientFrame, code, why string) {
	if len(msg) > maxBytes {
		return ClientFrame{}, CodeTooLarge, "frame larger than max_message_bytes"
	}
	// json.Unmarshal, not a Decoder: a Decoder stops after the first value, and More() is false
	// before a stray ']' or '}', so `{"type":"ping"}]` passed as a ping.
	if t := bytes.TrimLeft(msg, " \t\r\n"); len(t) == 0 || t[0] != '{' || json.Unmarshal(msg, &f) != nil {
		return ClientFrame{}, CodeInvalidJSON, "frame is not a JSON object"
	}
	switch f.Type {
	case TypePing:
		return ClientFrame{Type: TypePing}, "", ""
	case TypeMessage:
		f.Text = strings.TrimSpace(f.Text)
		if f.Text == "" || !utf8.ValidString(f.Text) {
			return ClientFrame{}, CodeInvalidField, "text must be non-empty UTF-8"
		}
		return f, "", ""
	}
	return ClientFrame{}, CodeUnknownType, "unknown message type: send message or ping"
}

// messageFrame is the message frame of a chat message relayed as payload (a ChatMessage's JSON).
func messageFrame(payload []byte) []byte {
	frame := make([]byte, 0, len(payload)+32)
	frame = append(frame, `{"type":"message","data":`...)
	frame = append(frame, payload...)
	return append(frame, '}')
}
