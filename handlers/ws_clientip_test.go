package handlers_test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"presencestats"
)

// The client IP of events: X-Forwarded-For is believed only from TRUSTED_PROXIES, read from the
// right, skipping trusted hops.
func TestWSClientIP(t *testing.T) {
	tests := []struct {
		name    string
		trusted []netip.Prefix
		xff     []string
		want    string
	}{
		{"no proxy trusted: header ignored", nil, []string{"203.0.113.7"}, "127.0.0.1"},
		{"trusted peer: last untrusted hop", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, []string{"198.51.100.1, 203.0.113.7"}, "203.0.113.7"},
		{"trusted chain skipped", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}, []string{"203.0.113.7, 10.1.2.3"}, "203.0.113.7"},
		{"several headers", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, []string{"198.51.100.1", "203.0.113.9"}, "203.0.113.9"},
		{"garbage stops at the proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, []string{"not-an-ip"}, "127.0.0.1"},
		{"trusted but no header", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, nil, "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newPresenceServer(t, presenceOpts{trusted: tt.trusted})
			h := http.Header{"User-Agent": {"presence-test/1.0"}}
			for _, v := range tt.xff {
				h.Add("X-Forwarded-For", v)
			}
			c, _, err := websocket.DefaultDialer.Dial(wsURL(s.URL, uuid.NewString())+"?access_token="+s.token(t, uuid.New()), h)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			eventually(t, push, "connected event", func() bool { return s.rec.count(presencestats.EventConnected, "") == 1 })
			ev := s.rec.events()[0]
			if got := ev.UserIP.String(); got != tt.want {
				t.Errorf("user_ip %s, want %s", got, tt.want)
			}
			if ev.UserAgent != "presence-test/1.0" {
				t.Errorf("user_agent %q", ev.UserAgent)
			}
		})
	}
}

// Without ALLOWED_ORIGINS only the server's own host may open a WebSocket from a browser.
func TestWSOriginDefaultSameHost(t *testing.T) {
	s := newPresenceServer(t, presenceOpts{})
	url := wsURL(s.URL, uuid.NewString()) + "?access_token=" + s.token(t, uuid.New())
	host := strings.TrimPrefix(s.URL, "http://")
	for _, tt := range []struct {
		origin string
		ok     bool
	}{{"http://" + host, true}, {"", true}, {"http://evil.example", false}, {"http://" + host + ".evil.example", false}} {
		h := http.Header{}
		if tt.origin != "" {
			h.Set("Origin", tt.origin)
		}
		c, resp, err := websocket.DefaultDialer.Dial(url, h)
		if tt.ok {
			if err != nil {
				t.Errorf("origin %q refused: %v", tt.origin, err)
				continue
			}
			c.Close()
			continue
		}
		if err == nil {
			c.Close()
			t.Errorf("origin %q accepted", tt.origin)
		} else if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("origin %q: %v, want 403", tt.origin, err)
		}
	}
}
