package handlers

// Internal: batchedConn is unexported and has no HTTP surface of its own; the WebSocket tests
// (ws_test.go, limits_test.go) run every frame of the hub through it.

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// countingConn is the network side of a batchedConn: it keeps every write call.
type countingConn struct {
	net.Conn
	writes    [][]byte
	deadlines []time.Time // every deadline set on the connection
	fail      error
}

func (c *countingConn) SetWriteDeadline(t time.Time) error {
	c.deadlines = append(c.deadlines, t)
	return nil
}

func (c *countingConn) SetDeadline(t time.Time) error { return c.SetWriteDeadline(t) }

func (c *countingConn) Write(p []byte) (int, error) {
	if c.fail != nil {
		return 0, c.fail
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

// serverFrame is a server's (unmasked) WebSocket frame with payload.
func serverFrame(op byte, payload []byte) []byte {
	f := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		f = append(f, byte(n))
	case n < 1<<16:
		f = append(f, 126, byte(n>>8), byte(n))
	default:
		f = append(f, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(f, payload...)
}

func newBatched(more *bool) (*batchedConn, *countingConn) {
	nc := &countingConn{}
	b := &batchedConn{Conn: nc, more: func() bool { return *more }, pool: &sync.Pool{}}
	if _, err := b.Write([]byte("HTTP/1.1 101 Switching Protocols\r\n\r\n")); err != nil {
		panic(err)
	}
	return b, nc
}

func TestBatchedConnWrites(t *testing.T) {
	text := func(s string) []byte { return serverFrame(websocket.TextMessage, []byte(s)) }
	big := bytes.Repeat([]byte("x"), 3000)
	huge := bytes.Repeat([]byte("y"), 70000)
	for _, tc := range []struct {
		name   string
		writes [][]byte // what gorilla writes, one call each
		more   []bool   // what more says at each write
		want   []int    // the write calls that reach the network: how many of the writes each holds
	}{
		{"nothing queued: every frame at once", [][]byte{text("a"), text("b")}, []bool{false, false}, []int{1, 1}},
		{"queued frames go with the last", [][]byte{text("a"), text("b"), text("c")}, []bool{true, true, false}, []int{3}},
		{"a ping between them goes too", [][]byte{text("a"), serverFrame(websocket.PingMessage, nil), text("c")}, []bool{true, true, false}, []int{3}},
		{"a close frame is never held", [][]byte{text("a"), serverFrame(websocket.CloseMessage, []byte{3, 232}), text("c")}, []bool{true, true, false}, []int{2, 1}},
		{"a frame in two calls goes in one", [][]byte{text(string(big))[:1024], text(string(big))[1024:]}, []bool{false, false}, []int{2}},
		{"a 64-bit length frame in two calls", [][]byte{text(string(huge))[:1024], text(string(huge))[1024:]}, []bool{false, false}, []int{2}},
		{"held bytes are bounded", [][]byte{text(string(big)), text(string(big)), text(string(big)), text(string(big)), text(string(big)), text(string(big)), text("z")}, []bool{true, true, true, true, true, true, false}, []int{6, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var more bool
			b, nc := newBatched(&more)
			var all []byte
			for i, w := range tc.writes {
				more = tc.more[i]
				n, err := b.Write(w)
				if err != nil || n != len(w) {
					t.Fatalf("write %d: %d, %v; want %d, nil", i, n, err, len(w))
				}
				all = append(all, w...)
			}
			got := nc.writes[1:] // after the handshake
			if len(got) != len(tc.want) {
				t.Fatalf("%d write calls, want %d", len(got), len(tc.want))
			}
			k := 0
			for i, n := range tc.want {
				var want []byte
				for _, w := range tc.writes[k : k+n] {
					want = append(want, w...)
				}
				k += n
				if !bytes.Equal(got[i], want) {
					t.Fatalf("write call %d: %d bytes, want the next %d writes (%d bytes)", i, len(got[i]), n, len(want))
				}
			}
			if !bytes.Equal(bytes.Join(got, nil), all) {
				t.Fatal("the bytes on the wire differ from the frames written")
			}
			if b.held != nil {
				t.Fatal("a buffer is still held with nothing queued")
			}
		})
	}
}

// A write that fails reports it to the frame that made the call; held frames are lost with the
// connection, which gorilla then closes.
func TestBatchedConnWriteError(t *testing.T) {
	more := true
	b, nc := newBatched(&more)
	if _, err := b.Write(serverFrame(websocket.TextMessage, []byte("a"))); err != nil {
		t.Fatal(err)
	}
	nc.fail = errors.New("broken pipe")
	more = false
	if _, err := b.Write(serverFrame(websocket.TextMessage, []byte("b"))); err == nil {
		t.Fatal("the write that flushed held frames to a broken connection reported no error")
	}
}

// The write deadline gorilla asks for before every frame reaches the connection at most once per
// deadlineSlack while frames keep coming, never earlier than asked and at most deadlineSlack later;
// a deadline asked for beyond that, or cleared, is set at once.
func TestBatchedConnWriteDeadline(t *testing.T) {
	more := false
	b, nc := newBatched(&more)
	t0 := time.Unix(1_000_000, 0)
	const wait = 5 * time.Second
	for i := range 2000 { // a frame every millisecond for 2 s
		asked := t0.Add(time.Duration(i)*time.Millisecond + wait)
		if err := b.SetWriteDeadline(asked); err != nil {
			t.Fatal(err)
		}
		set := nc.deadlines[len(nc.deadlines)-1]
		if set.Before(asked) || set.Sub(asked) > deadlineSlack {
			t.Fatalf("frame %d: deadline %s asked, %s set: want at most %s later", i, asked, set, deadlineSlack)
		}
	}
	if n := len(nc.deadlines); n < 2 || n > 3 {
		t.Fatalf("%d deadlines set for 2,000 frames over 2 s, want 2 or 3 (one per %s)", n, deadlineSlack)
	}
	if err := b.SetWriteDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if last := nc.deadlines[len(nc.deadlines)-1]; !last.IsZero() {
		t.Fatalf("cleared deadline: %s set, want none", last)
	}
	n := len(nc.deadlines)
	asked := t0.Add(time.Minute)
	if err := b.SetWriteDeadline(asked); err != nil {
		t.Fatal(err)
	}
	if len(nc.deadlines) != n+1 || !nc.deadlines[n].Equal(asked.Add(deadlineSlack)) {
		t.Fatalf("after a clear: deadlines %v, want %s set", nc.deadlines[n:], asked.Add(deadlineSlack))
	}
	earlier := asked.Add(-2 * deadlineSlack) // an earlier deadline than the one set is set as asked (+ slack)
	if err := b.SetWriteDeadline(earlier); err != nil {
		t.Fatal(err)
	}
	if got := nc.deadlines[len(nc.deadlines)-1]; !got.Equal(earlier.Add(deadlineSlack)) {
		t.Fatalf("an earlier deadline: %s set, want %s", got, earlier.Add(deadlineSlack))
	}
}
