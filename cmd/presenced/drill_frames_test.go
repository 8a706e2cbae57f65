package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"presencestats"
	"presencestats/handlers"
)

// serverFrame is the envelope of every frame the server sends (handlers/wsmessages.go); the
// drills' clients decode it and then the data of the types they follow.
type serverFrame struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// decodeFrame reads a frame's envelope; ok is false for bytes that are not one.
func decodeFrame(b []byte) (f serverFrame, ok bool) {
	return f, json.Unmarshal(b, &f) == nil
}

// followSession reads conn's frames until the connection ends and hands a drill client what it
// follows of its session, each call under mu: welcome the session id of the welcome frame, stats
// every online_stats.
func followSession(conn *websocket.Conn, mu *sync.Mutex, welcome func(id uuid.UUID), stats func(st presencestats.OnlineStats)) {
	for {
		_, b, err := conn.ReadMessage()
		if err != nil {
			return
		}
		f, ok := decodeFrame(b)
		if !ok {
			continue
		}
		switch f.Type {
		case handlers.TypeWelcome:
			var w handlers.WelcomeData
			if json.Unmarshal(f.Data, &w) == nil {
				mu.Lock()
				welcome(w.SessionID)
				mu.Unlock()
			}
		case handlers.TypeOnlineStats:
			var st presencestats.OnlineStats
			if json.Unmarshal(f.Data, &st) == nil {
				mu.Lock()
				stats(st)
				mu.Unlock()
			}
		}
	}
}

// roomsStats asks the instance at base for the counts of rooms (GET /api/rooms/stats), with a
// fresh user token of c. err is the transport's error; a non-200 answer has an empty body.
func (c *drillCluster) roomsStats(base string, rooms []uuid.UUID) (status int, body handlers.RoomsStats, err error) {
	tok, _ := c.auth.Mint(uuid.New(), handlers.RoleUser, time.Hour)
	q := make([]string, len(rooms))
	for i, r := range rooms {
		q[i] = "room_id=" + r.String()
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/api/rooms/stats?"+strings.Join(q, "&"), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, body, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		err = json.NewDecoder(resp.Body).Decode(&body)
	}
	return resp.StatusCode, body, err
}
