package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"presencestats/handlers"
)

// centrifugo is Centrifugo v6's JSON client protocol on /connection/websocket: a connect command
// with an HS256 token (sub = the user; the token presenced mints, whose extra claims Centrifugo
// ignores) and a subscribe command to room:<id>, sent in one frame as the protocol allows (one
// command per line); the namespace "room" has presence, join_leave and force_push_join_leave (the
// join push is what every member learns of a join from) and allow_publish_for_subscriber (chat
// is a publish). Replies and pushes may come several to a frame, one per line; an empty command
// {} is the server's ping, answered with {}.
type centrifugo struct {
	wsBase string
	auth   *handlers.TokenAuthority
}

const (
	cfConnectID   = 1
	cfSubscribeID = 2
)

func cfChannel(room *roomState) string { return "room:" + room.id.String() }

func (p *centrifugo) dial(ctx context.Context, room *roomState, m *member, user uuid.UUID) error {
	tok, err := p.auth.Mint(user, handlers.RoleUser, time.Hour)
	if err != nil {
		return err
	}
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, p.wsBase+"/connection/websocket", nil)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	m.conn = conn
	connect, _ := json.Marshal(map[string]any{"id": cfConnectID, "connect": map[string]any{"token": tok, "name": "loadgen"}})
	subscribe, _ := json.Marshal(map[string]any{"id": cfSubscribeID, "subscribe": map[string]any{"channel": cfChannel(room)}})
	return m.write(append(append(connect, '\n'), subscribe...))
}

type cfReply struct {
	ID    uint32 `json:"id"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Subscribe json.RawMessage `json:"subscribe"`
	Push      *struct {
		Channel string `json:"channel"`
		Join    *struct {
			Info struct {
				User string `json:"user"`
			} `json:"info"`
		} `json:"join"`
		Pub *struct {
			Data struct {
				Text string `json:"text"`
			} `json:"data"`
		} `json:"pub"`
	} `json:"push"`
}

// read: the joiner knows of its join from its subscribe reply, every other member from the join
// push that names the joiner's user; a publication carries a numbered chat message.
func (p *centrifugo) read(room *roomState, m *member, frame []byte) error {
	for line := range bytes.Lines(frame) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if bytes.Equal(line, []byte("{}")) {
			if err := m.write([]byte("{}")); err != nil {
				return fmt.Errorf("pong: %w", err)
			}
			continue
		}
		var r cfReply
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("frame %q: %w", line, err)
		}
		switch {
		case r.Error != nil:
			return fmt.Errorf("reply %d: error %d %s", r.ID, r.Error.Code, r.Error.Message)
		case r.ID == cfSubscribeID && r.Subscribe != nil:
			room.knowsJoin(m, m.k)
		case r.Push != nil && r.Push.Join != nil:
			room.mu.Lock()
			k := room.index[r.Push.Join.Info.User]
			room.mu.Unlock()
			room.knowsJoin(m, k)
		case r.Push != nil && r.Push.Pub != nil:
			if k, ok := chatNumber(r.Push.Pub.Data.Text); ok {
				room.hasMessage(m, k)
			}
		}
	}
	return nil
}

const cfPublishID = 1000

func (p *centrifugo) chat(room *roomState, m *member, text string) error {
	b, err := json.Marshal(map[string]any{"id": cfPublishID, "publish": map[string]any{"channel": cfChannel(room), "data": map[string]string{"text": text}}})
	if err != nil {
		return err
	}
	return m.write(b)
}
