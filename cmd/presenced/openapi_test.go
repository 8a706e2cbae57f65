package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"presencestats/handlers"
	"presencestats/storage/storagetest"
)

const openAPIBase = "mem://presenced/openapi.json"

var openAPIMethods = []string{"get", "put", "post", "delete", "patch", "head", "options", "trace"}

// openAPI is the served description with a JSON Schema compiler over it (draft 2020-12, the
// dialect of OpenAPI 3.1, formats asserted).
type openAPI struct {
	doc      map[string]any
	compiler *jsonschema.Compiler
}

func loadOpenAPI(t *testing.T, b []byte) *openAPI {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi: %v, want 3.1.0", doc["openapi"])
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(openAPIBase, inst); err != nil {
		t.Fatal(err)
	}
	return &openAPI{doc: doc, compiler: c}
}

// schemaAt compiles the schema at a JSON pointer of the document (its $refs resolve in it).
func (o *openAPI) schemaAt(t *testing.T, pointer ...string) *jsonschema.Schema {
	t.Helper()
	esc := make([]string, len(pointer))
	for i, p := range pointer {
		esc[i] = strings.NewReplacer("~", "~0", "/", "~1").Replace(p)
	}
	frag := (&url.URL{Fragment: "/" + strings.Join(esc, "/")}).EscapedFragment()
	s, err := o.compiler.Compile(openAPIBase + "#" + frag)
	if err != nil {
		t.Fatalf("compile schema %s: %v", frag, err)
	}
	return s
}

func (o *openAPI) operation(path, method string) map[string]any {
	item, _ := o.doc["paths"].(map[string]any)[path].(map[string]any)
	op, _ := item[method].(map[string]any)
	return op
}

// response returns the documented response of an operation for status, resolving a $ref to
// components/responses, and the JSON pointer of its object.
func (o *openAPI) response(path, method string, status int) (map[string]any, []string) {
	op := o.operation(path, method)
	if op == nil {
		return nil, nil
	}
	r, _ := op["responses"].(map[string]any)[strconv.Itoa(status)].(map[string]any)
	ptr := []string{"paths", path, method, "responses", strconv.Itoa(status)}
	if ref, ok := r["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/responses/")
		r, _ = o.doc["components"].(map[string]any)["responses"].(map[string]any)[name].(map[string]any)
		ptr = []string{"components", "responses", name}
	}
	return r, ptr
}

// ginPath turns a gin route (/a/:id, /s/*file) into an OpenAPI path template (/a/{id}, /s/{file}).
func ginPath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if strings.HasPrefix(s, ":") || strings.HasPrefix(s, "*") {
			parts[i] = "{" + s[1:] + "}"
		}
	}
	return strings.Join(parts, "/")
}

// TestOpenAPI holds /openapi.json to the real router of `presenced serve` (DEV_MODE=1, so that
// every route exists): every route is documented and every documented operation is a route;
// every example validates against its schema; and real answers of the running handlers (2xx and
// errors, JSON and WebSocket frames) have a documented status and content type and validate too.
func TestOpenAPI(t *testing.T) {
	// The test binary's shared database (migrated; fresh room ids keep this test's data apart).
	dsn := storagetest.SharedDatabase(t).Config().ConnString()
	cfg, err := LoadConfig(env(map[string]string{
		"JWT_SECRET": testSecret, "SPOOL_DIR": t.TempDir(), "LOG_LEVEL": "warn", "DEV_MODE": "1",
		"REDIS_URL": storagetest.RedisURL(t), "DATABASE_URL": dsn, "REDIS_KEY_PREFIX": storagetest.KeyPrefix(t),
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := newService(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.router)
	t.Cleanup(func() {
		srv.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		svc.close(sctx, log)
		cancel()
	})

	resp, err := http.Get(srv.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /openapi.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	o := loadOpenAPI(t, b)

	t.Run("routes", func(t *testing.T) {
		routes := map[string]bool{}
		for _, r := range svc.router.Routes() {
			key := strings.ToLower(r.Method) + " " + ginPath(r.Path)
			routes[key] = true
			if o.operation(ginPath(r.Path), strings.ToLower(r.Method)) == nil {
				t.Errorf("route %s %s is not in openapi.json", r.Method, r.Path)
			}
		}
		var documented []string
		for path, item := range o.doc["paths"].(map[string]any) {
			for _, m := range openAPIMethods {
				if _, ok := item.(map[string]any)[m]; ok {
					documented = append(documented, m+" "+path)
				}
			}
		}
		sort.Strings(documented)
		for _, d := range documented {
			if !routes[d] {
				t.Errorf("openapi.json documents %s, which the router does not have", d)
			}
		}
		if len(documented) != len(routes) {
			t.Errorf("%d documented operations, %d routes", len(documented), len(routes))
		}
	})

	t.Run("examples", func(t *testing.T) {
		n := 0
		check := func(ptr []string, media map[string]any) {
			ex, ok := media["example"]
			if !ok || media["schema"] == nil {
				return
			}
			n++
			s := o.schemaAt(t, append(slices.Clone(ptr), "schema")...)
			if err := s.Validate(ex); err != nil {
				t.Errorf("example at %s: %v", strings.Join(ptr, " "), err)
			}
		}
		for path, item := range o.doc["paths"].(map[string]any) {
			for m, op := range item.(map[string]any) {
				if !slices.Contains(openAPIMethods, m) {
					continue
				}
				for status, r := range op.(map[string]any)["responses"].(map[string]any) {
					for ct, media := range mapAt(r, "content") {
						check([]string{"paths", path, m, "responses", status, "content", ct}, media.(map[string]any))
					}
				}
				for ct, media := range mapAt(mapAt(op, "requestBody"), "content") {
					check([]string{"paths", path, m, "requestBody", "content", ct}, media.(map[string]any))
				}
			}
		}
		for name, r := range o.doc["components"].(map[string]any)["responses"].(map[string]any) {
			for ct, media := range mapAt(r, "content") {
				check([]string{"components", "responses", name, "content", ct}, media.(map[string]any))
			}
		}
		if n < 15 {
			t.Errorf("only %d examples checked", n)
		}
	})

	t.Run("answers", func(t *testing.T) {
		auth := handlers.NewTokenAuthority(testSecret)
		user, _ := auth.Mint(uuid.New(), handlers.RoleUser, time.Hour)
		admin, _ := auth.Mint(uuid.New(), handlers.RoleAdmin, time.Hour)
		room := uuid.New()
		now := time.Now().UTC().Truncate(time.Second)
		report := "/admin/api/stats/reports?granularity=hour&room_ids=" + room.String() +
			"&start_time=" + now.Add(-3*time.Hour).Format(time.RFC3339) + "&end_time=" + now.Format(time.RFC3339)

		// A live session in room, so that the counts and the report have something to say.
		ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws/rooms/"+room.String()+"?access_token="+user, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		frames := o.schemaAt(t, "components", "schemas", "WsServerFrame")
		for i := range 2 { // welcome, then the online_stats snapshot
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, msg, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			inst, _ := jsonschema.UnmarshalJSON(bytes.NewReader(msg))
			if err := frames.Validate(inst); err != nil {
				t.Errorf("WebSocket frame %s: %v", msg, err)
			}
		}

		for _, c := range []struct {
			method, route, url, token, body string
			want                            int
		}{
			{"get", "/healthz", "/healthz", "", "", 200},
			{"get", "/readyz", "/readyz", "", "", 200},
			{"get", "/api/rooms/{room_id}/stats", "/api/rooms/" + room.String() + "/stats", user, "", 200},
			{"get", "/api/rooms/{room_id}/stats", "/api/rooms/nope/stats", user, "", 400},
			{"get", "/api/rooms/{room_id}/stats", "/api/rooms/" + room.String() + "/stats", "", "", 401},
			{"get", "/api/rooms/stats", "/api/rooms/stats?room_id=" + room.String() + "&room_id=" + uuid.NewString(), user, "", 200},
			{"get", "/api/rooms/stats", "/api/rooms/stats", user, "", 400},
			{"get", "/admin/api/stats/reports", report, admin, "", 200},
			{"get", "/admin/api/stats/reports", report + "&metrics=unique_users", admin, "", 200},
			{"get", "/admin/api/stats/reports", report + "&format=csv", admin, "", 200},
			{"get", "/admin/api/stats/reports", report + "&format=xlsx", admin, "", 200},
			{"get", "/admin/api/stats/reports", strings.Replace(report, "granularity=hour", "granularity=minute", 1), admin, "", 400},
			{"get", "/admin/api/stats/reports", report, user, "", 403},
			{"get", "/admin/api/stats/reports", report, "", "", 401},
			{"get", "/admin/api/audit", "/admin/api/audit?limit=2", admin, "", 200},
			{"get", "/admin/api/audit", "/admin/api/audit?limit=0", admin, "", 400},
			{"get", "/admin/api/rooms", "/admin/api/rooms", admin, "", 200},
			{"get", "/admin/api/rooms", "/admin/api/rooms", user, "", 403},
			{"post", "/dev/token", "/dev/token", "", `{"name":"ada","role":"admin"}`, 200},
			{"post", "/dev/token", "/dev/token", "", `{"role":"root"}`, 400},
			{"get", "/ws/rooms/{room_id}", "/ws/rooms/" + room.String(), "", "", 401},
			{"get", "/ws/rooms/{room_id}", "/ws/rooms/nope?access_token=" + user, "", "", 400},
			{"get", "/", "/", "", "", 200},
			{"head", "/admin/", "/admin/", "", "", 200},
			{"get", "/static/{filepath}", "/static/nope.js", "", "", 404},
			{"get", "/openapi.json", "/openapi.json", "", "", 200},
		} {
			req, _ := http.NewRequest(strings.ToUpper(c.method), srv.URL+c.url, strings.NewReader(c.body))
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			if c.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			name := c.method + " " + c.url
			if resp.StatusCode != c.want {
				t.Errorf("%s: status %d, want %d: %s", name, resp.StatusCode, c.want, body)
				continue
			}
			r, ptr := o.response(c.route, c.method, resp.StatusCode)
			if r == nil {
				t.Errorf("%s: status %d is not documented for %s %s", name, resp.StatusCode, c.method, c.route)
				continue
			}
			content := mapAt(r, "content")
			if len(content) == 0 {
				continue // documented without a body (HEAD, 304)
			}
			ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
			media, ok := content[ct].(map[string]any)
			if !ok {
				t.Errorf("%s: content type %q is not documented for %d", name, ct, resp.StatusCode)
				continue
			}
			if ct != "application/json" || media["schema"] == nil || c.route == "/openapi.json" {
				continue
			}
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
			if err != nil {
				t.Errorf("%s: body is not JSON: %v", name, err)
				continue
			}
			if err := o.schemaAt(t, append(ptr, "content", ct, "schema")...).Validate(inst); err != nil {
				t.Errorf("%s: answer does not match its schema: %v\n%s", name, err, body)
			}
		}
	})
}

func mapAt(v any, key string) map[string]any {
	m, _ := v.(map[string]any)
	out, _ := m[key].(map[string]any)
	return out
}
