package main

// The client side of the churn and storm scenarios (presenced only): it opens the planned
// sessions against the targets from several loopback source addresses, reads their frames into
// the ledger, sends chat at a set rate, ends each session as planned (close frame, reset, or
// silence), and settles.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"presencestats/handlers"
)

// client runs one plan.
type client struct {
	wsBases []string
	auth    *handlers.TokenAuthority
	dialers []*websocket.Dialer // one per source address, used in turn
	next    atomic.Uint64
	dialSem chan struct{}
	ledger  *ledger
	rooms   []string // room ids, by index

	mu       sync.Mutex
	open     map[*conn]*wsClient // every socket not yet closed, silent ones included
	lastDial time.Time
	vanished time.Time // the last session that went silent
}

// wsClient is one connection of the client.
type wsClient struct {
	c       *conn
	ws      *websocket.Conn
	writeMu sync.Mutex
	done    atomic.Bool // ended by the workload: read errors after it are expected
}

// sourceDialers returns one dialer per loopback source address 127.0.0.1 .. 127.0.0.n, so that
// more connections than one address has ephemeral ports can be opened (and the server's
// per-address connect limit sees several addresses).
func sourceDialers(n int) []*websocket.Dialer {
	ds := make([]*websocket.Dialer, n)
	for i := range ds {
		nd := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))}}
		ds[i] = &websocket.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: 10 * time.Second,
			ReadBufferSize: 1024, WriteBufferSize: 512}
	}
	return ds
}

func (cl *client) dialer() *websocket.Dialer {
	return cl.dialers[cl.next.Add(1)%uint64(len(cl.dialers))]
}

// runSession waits until s.at after start, opens it, and ends it as planned.
func (cl *client) runSession(ctx context.Context, start time.Time, s session, id int) {
	if !sleepUntil(ctx, start.Add(s.at)) {
		return
	}
	select {
	case cl.dialSem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	room := cl.ledger.rooms[s.room]
	c := &conn{id: id, room: room, user: s.user, target: s.target}
	tok, err := cl.auth.Mint(s.user, handlers.RoleUser, 2*time.Hour)
	if err != nil {
		<-cl.dialSem
		cl.ledger.failed("token: " + err.Error())
		return
	}
	dial := time.Now()
	cl.mu.Lock()
	cl.lastDial = dial
	cl.mu.Unlock()
	ws, resp, err := cl.dialer().DialContext(ctx, cl.wsBases[s.target]+"/ws/rooms/"+cl.rooms[s.room]+"?access_token="+tok, nil)
	<-cl.dialSem
	if err != nil {
		kind := "dial"
		if resp != nil {
			kind = fmt.Sprintf("dial: HTTP %d", resp.StatusCode)
		} else if ctx.Err() == nil {
			kind = "dial: " + shortErr(err)
		}
		if ctx.Err() == nil {
			cl.ledger.failed(kind)
		}
		return
	}
	w := &wsClient{c: c, ws: ws}
	cl.mu.Lock()
	cl.open[c] = w
	cl.mu.Unlock()
	welcomed := make(chan struct{})
	go cl.readLoop(w, dial, welcomed)
	if s.end == endStay {
		return // closed when the run ends
	}
	select {
	case <-welcomed:
	case <-ctx.Done():
		return
	}
	if !sleepUntil(ctx, dial.Add(s.length)) {
		return
	}
	cl.end(w, s.end)
}

// end ends w the way how says.
func (cl *client) end(w *wsClient, how endMode) {
	if w.done.Swap(true) {
		return
	}
	cl.ledger.ended(w.c, how)
	switch how {
	case endVanish:
		// Silent from now on: no reads (so no pongs), no writes, the socket left open until the
		// run ends. The server must find out by its heartbeat (PRESENCE_TTL).
		cl.mu.Lock()
		cl.vanished = time.Now()
		cl.mu.Unlock()
		_ = w.ws.SetReadDeadline(time.Now())
	case endDrop:
		if tc, ok := w.ws.UnderlyingConn().(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, no close frame, no FIN handshake
		}
		cl.close(w)
	default:
		w.writeMu.Lock()
		_ = w.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		w.writeMu.Unlock()
		cl.close(w)
	}
}

func (cl *client) close(w *wsClient) {
	cl.mu.Lock()
	delete(cl.open, w.c)
	cl.mu.Unlock()
	_ = w.ws.Close()
}

// closeAll closes every socket still open (silent ones included) with a close frame.
func (cl *client) closeAll() {
	cl.mu.Lock()
	ws := make([]*wsClient, 0, len(cl.open))
	for _, w := range cl.open {
		ws = append(ws, w)
	}
	cl.mu.Unlock()
	for _, w := range ws {
		if !w.done.Load() {
			cl.end(w, endClose)
		} else {
			cl.close(w)
		}
	}
}

type serverFrame struct {
	Type string `json:"type"`
	Data struct {
		OnlineCount  int64     `json:"online_count"`
		SessionCount int64     `json:"session_count"`
		Timestamp    time.Time `json:"timestamp"`
		Text         string    `json:"text"`
		Code         string    `json:"code"`
	} `json:"data"`
}

func (cl *client) readLoop(w *wsClient, dial time.Time, welcomed chan struct{}) {
	snapshot := false
	for {
		_, b, err := w.ws.ReadMessage()
		if err != nil {
			if !w.done.Load() {
				// The server ended a session the workload did not: a failure.
				cl.ledger.failed("cut by the server: " + shortErr(err))
				w.done.Store(true)
				cl.ledger.ended(w.c, endClose)
				cl.close(w)
			}
			if !snapshot {
				close(welcomed)
			}
			return
		}
		var f serverFrame
		if err := json.Unmarshal(b, &f); err != nil {
			cl.ledger.failed("bad frame")
			continue
		}
		switch f.Type {
		case handlers.TypeOnlineStats:
			ts := f.Data.Timestamp.UnixMicro()
			if !snapshot {
				snapshot = true
				cl.ledger.connected(w.c, dial, ts, f.Data.OnlineCount, f.Data.SessionCount)
				close(welcomed)
			} else {
				cl.ledger.stats(w.c, ts, f.Data.OnlineCount, f.Data.SessionCount)
			}
		case handlers.TypeMessage:
			if id, ok := messageID(f.Data.Text); ok {
				cl.ledger.message(w.c, id)
			}
		case handlers.TypeError:
			cl.ledger.failed("error frame: " + f.Data.Code)
		}
	}
}

// chat sends messages at the Poisson instants times (from start), each from a random live
// connection.
func (cl *client) chat(ctx context.Context, start time.Time, times []time.Duration, rng *rand.Rand) {
	var id uint64
	for _, t := range times {
		if !sleepUntil(ctx, start.Add(t)) {
			return
		}
		c := cl.ledger.pick(rng)
		if c == nil {
			continue
		}
		w := cl.socketOf(c)
		if w == nil || w.done.Load() {
			continue
		}
		id++
		if !cl.ledger.sending(c, id) {
			continue
		}
		b, _ := json.Marshal(handlers.ClientFrame{Type: handlers.TypeMessage, Text: messageText(id)})
		w.writeMu.Lock()
		_ = w.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
		err := w.ws.WriteMessage(websocket.TextMessage, b)
		w.writeMu.Unlock()
		if err != nil {
			cl.ledger.unsent(c, id)
		}
	}
}

// socketOf finds the socket of a connection, or nil once it is closed.
func (cl *client) socketOf(c *conn) *wsClient {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.open[c]
}

func messageText(id uint64) string { return "loadgen chat " + strconv.FormatUint(id, 10) }

func messageID(text string) (uint64, bool) {
	s, ok := strings.CutPrefix(text, "loadgen chat ")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseUint(s, 10, 64)
	return id, err == nil
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// shortErr keeps the end of an error, without addresses and ports that make every one differ.
func shortErr(err error) string {
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Err != nil {
		return ne.Op + ": " + ne.Err.Error()
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}
