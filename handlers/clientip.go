package handlers

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/gin-gonic/gin"
)

// requestIP returns the client IP that the router's request log worked out for c (clientIP with
// TRUSTED_PROXIES); outside the router, the peer address.
func requestIP(c *gin.Context) netip.Addr {
	if v, ok := c.Get(clientIPKey); ok {
		if ip, ok := v.(netip.Addr); ok {
			return ip
		}
	}
	return clientIP(c.Request, nil)
}

// clientIP returns the address of the client that made r: the peer address, unless the peer is
// one of the trusted proxies, in which case X-Forwarded-For is read from the right, skipping
// trusted hops, and the first untrusted address is the client. A forged X-Forwarded-For from an
// untrusted peer is ignored. The zero Addr when nothing parses.
func clientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	ip := ap.Addr().Unmap()
	if !isTrusted(ip, trusted) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h := strings.TrimSpace(hops[i])
		if h == "" {
			continue
		}
		a, err := netip.ParseAddr(h)
		if err != nil {
			return ip // garbage: stop at the last address a trusted proxy vouched for
		}
		ip = a.Unmap()
		if !isTrusted(ip, trusted) {
			return ip
		}
	}
	return ip
}

func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
