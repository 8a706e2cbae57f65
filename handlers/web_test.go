package handlers_test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"presencestats"
	"presencestats/handlers"
	"presencestats/web"
)

const webSecret = "web-test-secret-0123456789"

// webServer serves the pages (and, when rooms is not nil, GET /admin/api/rooms behind
// RequireAdmin, standing in for the admin API's audited guard).
func webServer(tb testing.TB, devMode bool, rooms handlers.RoomLister) (*httptest.Server, *handlers.TokenAuthority) {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	auth := handlers.NewTokenAuthority(webSecret)
	pages, err := handlers.NewWebPages(handlers.WebPagesConfig{Files: web.Static(), Logger: log, Auth: auth, DevMode: devMode})
	if err != nil {
		tb.Fatal(err)
	}
	features := []handlers.Feature{pages}
	if rooms != nil {
		features = append(features, handlers.NewWebAPI(rooms, log, handlers.RequireAdmin(auth, log)))
	}
	r := handlers.NewRouter(handlers.RouterConfig{Logger: log, Registry: prometheus.NewRegistry(), Features: features})
	srv := httptest.NewServer(r)
	tb.Cleanup(srv.Close)
	return srv, auth
}

func get(tb testing.TB, url string, header ...string) (*http.Response, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return res, string(b)
}

func TestWebPages(t *testing.T) {
	srv, _ := webServer(t, false, nil)

	for _, tc := range []struct {
		path, title string
	}{
		{"/", "presence-stats · chat"},
		{"/admin/", "presence-stats · dashboard"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			res, body := get(t, srv.URL+tc.path)
			if got, want := res.StatusCode, http.StatusOK; got != want {
				t.Fatalf("status = %d, want %d", got, want)
			}
			if got := res.Header.Get("Content-Type"); got != "text/html; charset=utf-8" {
				t.Errorf("Content-Type = %q", got)
			}
			if got := res.Header.Get("Cache-Control"); got != "no-cache" {
				t.Errorf("Cache-Control = %q, want no-cache", got)
			}
			if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
				t.Errorf("Content-Security-Policy = %q", csp)
			}
			if !strings.Contains(body, "<title>"+tc.title+"</title>") {
				t.Errorf("body has no title %q", tc.title)
			}
			// Revalidation is cheap: the ETag answers 304.
			res304, _ := get(t, srv.URL+tc.path, "If-None-Match", res.Header.Get("ETag"))
			if got, want := res304.StatusCode, http.StatusNotModified; got != want {
				t.Errorf("If-None-Match: status = %d, want %d", got, want)
			}
		})
	}

	t.Run("/admin redirects to /admin/", func(t *testing.T) {
		res, _ := get(t, srv.URL+"/admin")
		if res.StatusCode/100 != 3 || res.Header.Get("Location") != "/admin/" {
			t.Fatalf("status %d Location %q, want a redirect to /admin/", res.StatusCode, res.Header.Get("Location"))
		}
	})

	t.Run("versioned assets are cached for good, others revalidate", func(t *testing.T) {
		_, page := get(t, srv.URL+"/admin/")
		refs := regexp.MustCompile(`"/static/([^"?]+)\?v=([0-9a-f]+)"`).FindAllStringSubmatch(page, -1)
		if len(refs) < 3 { // app.css, the chart library, dashboard.js (and the icon)
			t.Fatalf("versioned asset references in /admin/: %v", refs)
		}
		for _, ref := range refs {
			res, body := get(t, srv.URL+"/static/"+ref[1]+"?v="+ref[2])
			if res.StatusCode != http.StatusOK || len(body) == 0 {
				t.Fatalf("%s: status %d, %d bytes", ref[1], res.StatusCode, len(body))
			}
			if got := res.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
				t.Errorf("%s?v=current: Cache-Control = %q", ref[1], got)
			}
			res, _ = get(t, srv.URL+"/static/"+ref[1]+"?v=000000000000")
			if got := res.Header.Get("Cache-Control"); got != "no-cache" {
				t.Errorf("%s?v=old: Cache-Control = %q, want no-cache", ref[1], got)
			}
		}
	})

	t.Run("content types", func(t *testing.T) {
		for path, want := range map[string]string{
			"/static/app.css":                    "text/css; charset=utf-8",
			"/static/chat.js":                    "text/javascript; charset=utf-8",
			"/static/vendor/chart.umd.min.js":    "text/javascript; charset=utf-8",
			"/static/vendor/chart.js.LICENSE.md": "text/plain; charset=utf-8",
			"/static/favicon.svg":                "image/svg+xml",
		} {
			res, _ := get(t, srv.URL+path)
			if got := res.Header.Get("Content-Type"); res.StatusCode != http.StatusOK || got != want {
				t.Errorf("%s: status %d, Content-Type %q, want 200 %q", path, res.StatusCode, got, want)
			}
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("%s: X-Content-Type-Options = %q", path, got)
			}
		}
	})

	t.Run("gzip for clients that take it", func(t *testing.T) {
		_, plain := get(t, srv.URL+"/static/vendor/chart.umd.min.js")
		res, zipped := get(t, srv.URL+"/static/vendor/chart.umd.min.js", "Accept-Encoding", "gzip, deflate, br")
		if got := res.Header.Get("Content-Encoding"); got != "gzip" {
			t.Fatalf("Content-Encoding = %q, want gzip", got)
		}
		if len(zipped) >= len(plain)/2 {
			t.Errorf("gzipped %d bytes, plain %d", len(zipped), len(plain))
		}
		zr, err := gzip.NewReader(strings.NewReader(zipped))
		if err != nil {
			t.Fatal(err)
		}
		unzipped, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if string(unzipped) != plain {
			t.Error("the gzipped body is not the file")
		}
		if res.Header.Get("Vary") != "Accept-Encoding" || !strings.HasSuffix(res.Header.Get("ETag"), `-gz"`) {
			t.Errorf("Vary %q ETag %q", res.Header.Get("Vary"), res.Header.Get("ETag"))
		}
		res, _ = get(t, srv.URL+"/static/vendor/chart.umd.min.js", "Accept-Encoding", "gzip;q=0, identity")
		if got := res.Header.Get("Content-Encoding"); got != "" {
			t.Errorf("gzip;q=0: Content-Encoding = %q", got)
		}
	})

	t.Run("missing asset, and pages only at their own URLs", func(t *testing.T) {
		for _, path := range []string{"/static/nope.js", "/static/index.html", "/static/admin.html"} {
			res, body := get(t, srv.URL+path)
			if got, want := res.StatusCode, http.StatusNotFound; got != want {
				t.Fatalf("%s: status = %d, want %d", path, got, want)
			}
			if !strings.Contains(body, `"code":"not_found"`) {
				t.Errorf("%s: body = %s", path, body)
			}
		}
	})

	t.Run("no dev token without DEV_MODE", func(t *testing.T) {
		res, err := http.Post(srv.URL+"/dev/token", "application/json", strings.NewReader(`{"name":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got, want := res.StatusCode, http.StatusNotFound; got != want {
			t.Errorf("status = %d, want %d", got, want)
		}
	})
}

type devTokenAnswer struct {
	Token  string    `json:"token"`
	UserID uuid.UUID `json:"user_id"`
	Role   string    `json:"role"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func postDevToken(tb testing.TB, url, body string) (int, devTokenAnswer) {
	tb.Helper()
	res, err := http.Post(url+"/dev/token", "application/json", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	var a devTokenAnswer
	if err := json.NewDecoder(res.Body).Decode(&a); err != nil {
		tb.Fatal(err)
	}
	return res.StatusCode, a
}

func TestDevToken(t *testing.T) {
	srv, auth := webServer(t, true, nil)

	for _, tc := range []struct {
		name, body, role string
	}{
		{"no body", "", handlers.RoleUser},
		{"a name", `{"name":"Ada"}`, handlers.RoleUser},
		{"admin", `{"name":"boss","role":"admin"}`, handlers.RoleAdmin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, a := postDevToken(t, srv.URL, tc.body)
			if status != http.StatusOK {
				t.Fatalf("status = %d (%+v)", status, a.Error)
			}
			claims, err := auth.Verify(a.Token)
			if err != nil {
				t.Fatalf("the minted token does not verify: %v", err)
			}
			if claims.UserID != a.UserID || claims.Role != tc.role || a.Role != tc.role {
				t.Errorf("claims %+v, answer user %s role %s; want role %s", claims, a.UserID, a.Role, tc.role)
			}
			if ttl := time.Until(claims.Expiry); ttl < 11*time.Hour || ttl > 13*time.Hour {
				t.Errorf("token lives %s, want about 12h", ttl)
			}
		})
	}

	t.Run("the same name is the same user", func(t *testing.T) {
		_, a := postDevToken(t, srv.URL, `{"name":"Grace"}`)
		_, b := postDevToken(t, srv.URL, `{"name":"grace"}`)
		_, c := postDevToken(t, srv.URL, `{"name":"Linus"}`)
		if a.UserID != b.UserID || a.UserID == c.UserID {
			t.Errorf("Grace %s, grace %s, Linus %s: want the first two equal, the third different", a.UserID, b.UserID, c.UserID)
		}
		_, n1 := postDevToken(t, srv.URL, ``)
		_, n2 := postDevToken(t, srv.URL, ``)
		if n1.UserID == n2.UserID {
			t.Error("two anonymous tokens got the same user")
		}
	})

	for _, tc := range []struct {
		name, body, want string
	}{
		{"unknown role", `{"role":"root"}`, "role"},
		{"unknown field", `{"nam":"x"}`, "unknown field"},
		{"not JSON", `name=x`, "body"},
		{"long name", `{"name":"` + strings.Repeat("x", 65) + `"}`, "name"},
		{"stray brace after the object", `{"name":"a"}}`, "unexpected data after the JSON object"},
		{"a second object", `{"name":"a"} {"name":"b"}`, "unexpected data after the JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, a := postDevToken(t, srv.URL, tc.body)
			if status != http.StatusBadRequest || a.Error == nil || !strings.Contains(a.Error.Message, tc.want) {
				t.Errorf("status %d error %+v, want 400 mentioning %q", status, a.Error, tc.want)
			}
		})
	}
}

type fakeRooms struct {
	rooms []uuid.UUID
	err   error
}

func (f fakeRooms) Rooms(context.Context) ([]uuid.UUID, error) { return f.rooms, f.err }

func TestAdminRooms(t *testing.T) {
	room := uuid.New()
	for _, tc := range []struct {
		name       string
		rooms      fakeRooms
		role       string // "" = no token
		wantStatus int
		wantBody   string
	}{
		{"admin", fakeRooms{rooms: []uuid.UUID{room}}, handlers.RoleAdmin, http.StatusOK, `{"rooms":["` + room.String() + `"]}`},
		{"no rooms yet", fakeRooms{}, handlers.RoleAdmin, http.StatusOK, `{"rooms":[]}`},
		{"user", fakeRooms{}, handlers.RoleUser, http.StatusForbidden, `"code":"forbidden"`},
		{"no token", fakeRooms{}, "", http.StatusUnauthorized, `"code":"unauthorized"`},
		{"database down", fakeRooms{err: presencestats.Errorf(presencestats.EUNAVAILABLE, "database unavailable")}, handlers.RoleAdmin, http.StatusServiceUnavailable, `"code":"unavailable"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, auth := webServer(t, false, tc.rooms)
			var hdr []string
			if tc.role != "" {
				tok, err := auth.Mint(uuid.New(), tc.role, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				hdr = []string{"Authorization", "Bearer " + tok}
			}
			res, body := get(t, srv.URL+"/admin/api/rooms", hdr...)
			if res.StatusCode != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
				t.Errorf("status %d body %s, want %d containing %s", res.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
		})
	}
}
