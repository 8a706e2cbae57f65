package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"presencestats/handlers"
)

// /readyz: each dependency gets its own deadline, so one that hangs is reported down without
// taking the time of the others (a slow database used to make Redis look down too).
func TestReadyzChecksApart(t *testing.T) {
	router := handlers.NewRouter(handlers.RouterConfig{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry(),
		Checks: []handlers.ReadinessCheck{
			{Name: "database", Check: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
			{Name: "redis", Check: func(ctx context.Context) error { return ctx.Err() }},
			{Name: "broken", Check: func(context.Context) error { return errors.New("refused") }},
		},
	})
	srv := httptest.NewServer(router)
	defer srv.Close()
	res, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Status       string                       `json:"status"`
		Dependencies map[string]map[string]string `json:"dependencies"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusServiceUnavailable || body.Status != "not_ready" {
		t.Fatalf("status %d %q, want 503 not_ready", res.StatusCode, body.Status)
	}
	for name, want := range map[string]string{"database": "down", "redis": "up", "broken": "down"} {
		if got := body.Dependencies[name]["status"]; got != want {
			t.Errorf("%s: %q, want %q (%v)", name, got, want, body.Dependencies)
		}
	}
}

// presence_dependency_up runs the readiness checks at each scrape: 1 for a dependency that
// answers, 0 for one that fails, whether or not anything polls /readyz.
func TestDependencyUpMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	handlers.NewRouter(handlers.RouterConfig{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: reg,
		Checks: []handlers.ReadinessCheck{
			{Name: "redis", Check: func(context.Context) error { return nil }},
			{Name: "database", Check: func(context.Context) error { return errors.New("refused") }},
		},
	})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "presence_dependency_up" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "dependency" {
					got[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	if want := map[string]float64{"redis": 1, "database": 0}; len(got) != 2 || got["redis"] != want["redis"] || got["database"] != want["database"] {
		t.Fatalf("presence_dependency_up: got %v, want %v", got, want)
	}
}
