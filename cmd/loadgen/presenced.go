package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"presencestats/handlers"
)

// presenced is this service's protocol: the token in the URL of GET /ws/rooms/:room_id, the
// room's counts in online_stats frames, chat in message frames.
type presenced struct {
	wsBase  string
	auth    *handlers.TokenAuthority
	dialers []*websocket.Dialer // one per loopback source address, used in turn
	next    atomic.Uint64
}

func (p *presenced) dial(ctx context.Context, room *roomState, m *member, user uuid.UUID) error {
	tok, err := p.auth.Mint(user, handlers.RoleUser, time.Hour)
	if err != nil {
		return err
	}
	d := p.dialers[p.next.Add(1)%uint64(len(p.dialers))]
	conn, resp, err := d.DialContext(ctx, p.wsBase+"/ws/rooms/"+room.id.String()+"?access_token="+tok, nil)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("dial: HTTP %d: %w", resp.StatusCode, err)
		}
		return fmt.Errorf("dial: %w", err)
	}
	m.conn = conn
	return nil
}

// read: an online_stats with online_count k tells of join k (every client is another user);
// a message frame carries a numbered chat message.
func (p *presenced) read(room *roomState, m *member, b []byte) error {
	var f struct {
		Type string `json:"type"`
		Data struct {
			OnlineCount int64  `json:"online_count"`
			Text        string `json:"text"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("frame %q: %w", b, err)
	}
	switch f.Type {
	case handlers.TypeOnlineStats:
		room.knowsJoin(m, int(f.Data.OnlineCount))
	case handlers.TypeMessage:
		if k, ok := chatNumber(f.Data.Text); ok {
			room.hasMessage(m, k)
		}
	case handlers.TypeError:
		return fmt.Errorf("error frame %s", b)
	}
	return nil
}

func (p *presenced) chat(_ *roomState, m *member, text string) error {
	b, err := json.Marshal(handlers.ClientFrame{Type: handlers.TypeMessage, Text: text})
	if err != nil {
		return err
	}
	return m.write(b)
}
