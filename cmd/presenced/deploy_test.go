package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"presencestats/handlers"
	"presencestats/storage/storagetest"
)

// prometheusOwn are series Prometheus records itself for every scrape target: the rules may use
// them although no server exports them.
var prometheusOwn = map[string]bool{"up": true}

// promQLKeywords are the words of PromQL that look like metric names but are not.
var promQLKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
	"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true,
}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
)

// promQLMetrics returns the metric names a PromQL expression reads: identifiers that are not
// functions or aggregations (followed by "("), keywords, label names (inside {} or a grouping
// clause), strings or durations.
func promQLMetrics(expr string) []string {
	e := promString.ReplaceAllString(expr, `""`)
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRange.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	var out []string
	for _, m := range promIdent.FindAllStringSubmatchIndex(e, -1) {
		if m[2] >= 0 { // a function or an aggregation
			continue
		}
		// Part of a number (1e3) or a duration (5m) outside brackets: the character before is a digit.
		if m[0] > 0 && (e[m[0]-1] >= '0' && e[m[0]-1] <= '9' || e[m[0]-1] == '.') {
			continue
		}
		name := e[m[0]:m[1]]
		if promQLKeywords[strings.ToLower(name)] || slices.Contains(out, name) {
			continue
		}
		out = append(out, name)
	}
	return out
}

func TestPromQLMetrics(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`sum by (instance) (presence_ws_connections)`, []string{"presence_ws_connections"}},
		{`histogram_quantile(0.95, sum by (le) (rate(x_seconds_bucket{route="/a b", status=~"5.."}[5m])))`, []string{"x_seconds_bucket"}},
		{`a > 0 and deriv(b[15m]) > 0 or increase(c_total[$__rate_interval]) > 1e3`, []string{"a", "b", "c_total"}},
		{`max by (instance) (d{dependency="redis"}) == 0 unless on (instance) e offset 5m`, []string{"d", "e"}},
		{`up{job="presenced"} == 0`, []string{"up"}},
	} {
		if got := promQLMetrics(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("promQLMetrics(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}

// deployExprs returns every PromQL expression of the dashboard and the alert rules, by file.
func deployExprs(t *testing.T) map[string][]string {
	t.Helper()
	dir := filepath.Join(storagetest.RepoRoot(t), "deploy")
	out := map[string][]string{}

	b, err := os.ReadFile(filepath.Join(dir, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatal("grafana-dashboard.json: no title or no panels")
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("dashboard panel %q has an empty query", p.Title)
			}
			out["grafana-dashboard.json"] = append(out["grafana-dashboard.json"], tg.Expr)
		}
	}

	// The rules file in the shape Prometheus loads (rule_files): groups of named rules, each
	// an alert with an expression; unknown keys are refused, as Prometheus refuses them.
	b, err = os.ReadFile(filepath.Join(dir, "prometheus-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.UnmarshalWithOptions(b, &rules, yaml.DisallowUnknownField()); err != nil {
		t.Fatalf("prometheus-alerts.yml: %v", err)
	}
	if len(rules.Groups) == 0 {
		t.Fatal("prometheus-alerts.yml: no groups")
	}
	var alerts []string
	for _, g := range rules.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("rule group %q: a name and rules are required", g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" || strings.TrimSpace(r.Expr) == "" {
				t.Errorf("group %q: a rule without alert name or expr: %+v", g.Name, r)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("alert %s: for %q: %v", r.Alert, r.For, err)
				}
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert %s: needs labels.severity and annotations.summary", r.Alert)
			}
			alerts = append(alerts, r.Alert)
			out["prometheus-alerts.yml"] = append(out["prometheus-alerts.yml"], r.Expr)
		}
	}
	// What docs/operations.md promises the rules cover.
	for _, want := range []string{"PresenceRedisDown", "PresenceOutboxGrowing", "PresenceEventsDropped", "PresenceReadinessFailing"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("prometheus-alerts.yml has no alert %s", want)
		}
	}
	return out
}

// exportedSeries returns the sample names of a Prometheus text exposition (a histogram's
// _bucket, _sum and _count, as PromQL reads them).
func exportedSeries(t *testing.T, r io.Reader) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// TestDeployKitMetrics: every metric the Grafana dashboard and the alert rules read is exported
// by /metrics of a running server. Some series exist only after first use (a leave reason, an
// HTTP route), so the server is used first: a WebSocket joins and leaves, a report is asked for,
// /readyz answers.
func TestDeployKitMetrics(t *testing.T) {
	exprs := deployExprs(t)
	// The test binary's shared database (migrated; fresh room ids keep this test's data apart).
	dsn := storagetest.SharedDatabase(t).Config().ConnString()
	base := startServer(t, map[string]string{"REDIS_URL": storagetest.RedisURL(t), "DATABASE_URL": dsn,
		"REDIS_KEY_PREFIX": storagetest.KeyPrefix(t)})

	auth := handlers.NewTokenAuthority(testSecret)
	user, err := auth.Mint(uuid.New(), handlers.RoleUser, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stats := dialPresence(t, base, user, uuid.New())
	waitOnline(t, stats, 1, 10*time.Second)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws/rooms/"+uuid.NewString()+"?access_token="+user, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Closed once joined (its snapshot came): a close before the join is no leave.
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("the second connection's snapshot: %v", err)
		}
		if f, ok := decodeFrame(b); ok && f.Type == handlers.TypeOnlineStats {
			break
		}
	}
	ws.Close() // a leave on the server

	admin, err := auth.Mint(uuid.New(), handlers.RoleAdmin, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	req, _ := http.NewRequest(http.MethodGet, base+"/admin/api/stats/reports?granularity=hour&start_time="+
		now.Add(-2*time.Hour).Format(time.RFC3339)+"&end_time="+now.Format(time.RFC3339), nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("report: %d", resp.StatusCode)
	}
	if code, _ := getReady(t, base); code != http.StatusOK {
		t.Fatalf("readyz: %d", code)
	}

	// The leave is counted once the server has seen the close: poll until nothing is missing or
	// the deadline passes, then say what is missing.
	var missing []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		exported := exportedSeries(t, resp.Body)
		resp.Body.Close()
		missing = missing[:0]
		for file, list := range exprs {
			for _, e := range list {
				for _, name := range promQLMetrics(e) {
					if !exported[name] && !prometheusOwn[name] {
						missing = append(missing, file+": "+name+" (in "+e+")")
					}
				}
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Fatalf("metrics the deploy kit uses but /metrics does not export:\n%s", strings.Join(missing, "\n"))
	}
}

// TestDeployEnvExample: the example environment file is a configuration LoadConfig accepts, it
// names every setting, and the systemd unit gives the shutdown the time it needs.
func TestDeployEnvExample(t *testing.T) {
	dir := filepath.Join(storagetest.RepoRoot(t), "deploy")
	f, err := os.Open(filepath.Join(dir, "presenced.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("presenced.env.example: %q is not KEY=value", line)
		}
		vars[k] = v
	}
	cfg, err := LoadConfig(env(vars))
	if err != nil {
		t.Fatalf("presenced.env.example: %v", err)
	}
	if cfg.DevMode {
		t.Error("presenced.env.example turns DEV_MODE on")
	}
	src, err := os.ReadFile(filepath.Join(storagetest.RepoRoot(t), "cmd", "presenced", "config.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`r\.(?:str|duration|boolean|list|integer|float|lookup)\("([A-Z_]+)"`).FindAllStringSubmatch(string(src), -1) {
		if _, ok := vars[m[1]]; !ok {
			t.Errorf("presenced.env.example does not name %s", m[1])
		}
	}

	unit, err := os.ReadFile(filepath.Join(dir, "presenced.service"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^TimeoutStopSec=(\S+)$`).FindSubmatch(unit)
	if m == nil {
		t.Fatal("presenced.service has no TimeoutStopSec")
	}
	stop, err := time.ParseDuration(string(m[1]))
	if err != nil {
		t.Fatalf("TimeoutStopSec=%s: %v", m[1], err)
	}
	if stop < cfg.ShutdownTimeout+2*time.Second {
		t.Errorf("TimeoutStopSec=%s is less than SHUTDOWN_TIMEOUT (%s) + 2 s", stop, cfg.ShutdownTimeout)
	}
	for _, want := range []string{"EnvironmentFile=", "ExecStart=/usr/local/bin/presenced serve", "Restart=on-failure", "LimitNOFILE="} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("presenced.service has no %s", want)
		}
	}
}
