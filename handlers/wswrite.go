package handlers

// Writes of a WebSocket connection: the frames queued for a connection go out in as few system
// calls as the queue allows.

import (
	"encoding/binary"
	"net"
	"sync"
	"time"
)

// maxHeld bounds the bytes of frames a connection holds back before it writes them anyway.
const maxHeld = 16 << 10

// deadlineSlack is how much later than asked a write's deadline may be: gorilla sets the
// connection's write deadline before every frame (now + WriteWait), and each such call rearms
// a runtime timer (5 % of the server's CPU in make bench-peer's joins). batchedConn sets it
// deadlineSlack later than asked and skips the calls that ask for no later time than that, so a
// busy connection rearms it about once a second; a client that reads nothing is still cut, after
// WriteWait to WriteWait + deadlineSlack.
const deadlineSlack = time.Second

// batchedConn is a WebSocket's network connection as gorilla/websocket (under melody's write
// loop) writes to it. melody writes one frame per queued message, and gorilla makes one write
// call per frame: one system call each. batchedConn holds a frame back while another one is
// queued behind it for the same connection (more), and writes the frames it holds with the
// next one that has nothing queued behind it, in one system call. The frames on the wire do not
// change (one JSON message per WebSocket frame); only how many go in one write call.
//
// A frame is never held when nothing is queued behind it, so nothing waits for a frame that
// does not come: the queue is melody's channel, and more counts the frames put in it and not
// yet written (wsConn.queued). A close frame is never held (melody's write loop ends after it).
// gorilla/websocket serialises a connection's writes (frames, pings, pongs, the close frame), so
// Write is never called concurrently; Close may be, and leaves held frames to the collector.
type batchedConn struct {
	net.Conn
	more func() bool // another frame is queued behind the one being written
	pool *sync.Pool  // of *[]byte, the hub's: a connection holds a buffer only while it holds frames

	upgraded bool    // the handshake's response went out: every write from now on is a frame
	partial  int     // bytes still to come of a frame written in two calls (gorilla's net.Buffers)
	held     *[]byte // frames held back, nil when none

	deadline time.Time // the write deadline set on Conn (zero: none)
}

// SetWriteDeadline sets t + deadlineSlack on the connection, unless the deadline set already
// lies between t and that (gorilla calls it before every frame, under its write lock).
func (b *batchedConn) SetWriteDeadline(t time.Time) error {
	if !t.IsZero() && !b.deadline.IsZero() && !t.After(b.deadline) && b.deadline.Sub(t) <= deadlineSlack {
		return nil
	}
	if !t.IsZero() {
		t = t.Add(deadlineSlack)
	}
	if err := b.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	b.deadline = t
	return nil
}

// SetDeadline sets both deadlines; the write one is then as asked.
func (b *batchedConn) SetDeadline(t time.Time) error {
	b.deadline = t
	return b.Conn.SetDeadline(t)
}

func (b *batchedConn) Write(p []byte) (int, error) {
	if !b.upgraded {
		// gorilla writes the handshake's response in one call before any frame.
		b.upgraded = true
		return b.Conn.Write(p)
	}
	closing := false
	if b.partial > 0 {
		b.partial = max(0, b.partial-len(p))
	} else if n, op, ok := frameHeader(p); ok {
		b.partial = max(0, n-len(p))
		closing = op == opClose
	}
	// The rest of a frame written in two calls follows at once; another queued frame follows
	// as soon as the write loop takes it.
	if b.partial > 0 || (!closing && b.heldLen()+len(p) < maxHeld && b.more()) {
		b.hold(p)
		return len(p), nil
	}
	if b.held == nil {
		return b.Conn.Write(p)
	}
	buf := append(*b.held, p...)
	_, err := b.Conn.Write(buf)
	*b.held = buf[:0]
	if cap(buf) <= 4*maxHeld {
		b.pool.Put(b.held)
	}
	b.held = nil
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (b *batchedConn) heldLen() int {
	if b.held == nil {
		return 0
	}
	return len(*b.held)
}

func (b *batchedConn) hold(p []byte) {
	if b.held == nil {
		if v, ok := b.pool.Get().(*[]byte); ok {
			b.held = v
		} else {
			buf := make([]byte, 0, 4<<10)
			b.held = &buf
		}
	}
	*b.held = append(*b.held, p...)
}

const opClose = 8

// frameHeader reads the header of the WebSocket frame p starts with: the frame's length in bytes
// (header included) and its opcode.
func frameHeader(p []byte) (n int, op byte, ok bool) {
	if len(p) < 2 {
		return 0, 0, false
	}
	op = p[0] & 0x0f
	size, h := uint64(p[1]&0x7f), 2
	switch size {
	case 126:
		if len(p) < 4 {
			return 0, 0, false
		}
		size, h = uint64(binary.BigEndian.Uint16(p[2:])), 4
	case 127:
		if len(p) < 10 {
			return 0, 0, false
		}
		size, h = binary.BigEndian.Uint64(p[2:]), 10
	}
	if p[1]&0x80 != 0 {
		h += 4 // masked: never from a server, but the length is exact either way
	}
	if size > 1<<40 {
		return 0, 0, false
	}
	return h + int(size), op, true
}

// moreQueued reports whether more than one text frame is queued for c and not yet written: while
// its write loop writes one of them, another follows.
func (c *wsConn) moreQueued() bool {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.queued > 1 && !c.dropped
}
