package main

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadConfigDefaults(t *testing.T) {
	c, err := LoadConfig(env(map[string]string{"JWT_SECRET": "0123456789abcdef"}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.HTTPAddr, ":8080"; got != want {
		t.Errorf("HTTPAddr %q, want %q", got, want)
	}
	if got, want := c.DatabaseURL, DefaultDatabaseURL; got != want {
		t.Errorf("DatabaseURL %q, want %q", got, want)
	}
	if got, want := c.RedisURL, "redis://127.0.0.1:6380/0"; got != want {
		t.Errorf("RedisURL %q, want %q", got, want)
	}
	if got, want := c.PresenceTTL, 60*time.Second; got != want {
		t.Errorf("PresenceTTL %v, want %v", got, want)
	}
	if got, want := c.ReportTimezone.String(), "UTC"; got != want {
		t.Errorf("ReportTimezone %q, want %q", got, want)
	}
	if got, want := c.SpoolDir, ".data/spool"; got != want {
		t.Errorf("SpoolDir %q, want %q", got, want)
	}
}

func TestLoadConfigEmptySpoolDirDisablesSpool(t *testing.T) {
	c, err := LoadConfig(env(map[string]string{"JWT_SECRET": "0123456789abcdef", "SPOOL_DIR": ""}))
	if err != nil {
		t.Fatal(err)
	}
	if c.SpoolDir != "" {
		t.Fatalf("SpoolDir %q, want empty", c.SpoolDir)
	}
}

func TestLoadConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // part of the message
	}{
		{"missing JWT_SECRET", map[string]string{}, "JWT_SECRET: is required"},
		{"short JWT_SECRET", map[string]string{"JWT_SECRET": "short"}, "JWT_SECRET: must be at least 16"},
		{"malformed DATABASE_URL", map[string]string{"JWT_SECRET": "0123456789abcdef", "DATABASE_URL": "localhost:5432"}, "DATABASE_URL: must look like postgres://"},
		{"unparsable DATABASE_URL", map[string]string{"JWT_SECRET": "0123456789abcdef", "DATABASE_URL": "postgres://%zz"}, "DATABASE_URL: is not a URL"},
		{"mysql DATABASE_URL", map[string]string{"JWT_SECRET": "0123456789abcdef", "DATABASE_URL": "mysql://h:1/db"}, "DATABASE_URL: must look like postgres://"},
		{"bad REDIS_URL", map[string]string{"JWT_SECRET": "0123456789abcdef", "REDIS_URL": "http://h:1"}, "REDIS_URL: must look like redis://"},
		{"bad duration", map[string]string{"JWT_SECRET": "0123456789abcdef", "PRESENCE_TTL": "sixty"}, "PRESENCE_TTL: \"sixty\" is not a duration"},
		{"sweep not shorter than ttl", map[string]string{"JWT_SECRET": "0123456789abcdef", "PRESENCE_TTL": "5s", "SWEEP_INTERVAL": "5s"}, "SWEEP_INTERVAL: must be shorter than PRESENCE_TTL"},
		{"bad integer", map[string]string{"JWT_SECRET": "0123456789abcdef", "EVENT_BATCH_SIZE": "0"}, "EVENT_BATCH_SIZE: \"0\" is not a whole number"},
		{"bad zone", map[string]string{"JWT_SECRET": "0123456789abcdef", "REPORT_TIMEZONE": "Mars/Olympus"}, "REPORT_TIMEZONE"},
		{"bad log format", map[string]string{"JWT_SECRET": "0123456789abcdef", "LOG_FORMAT": "xml"}, "LOG_FORMAT"},
		{"bad proxy", map[string]string{"JWT_SECRET": "0123456789abcdef", "TRUSTED_PROXIES": "10.0.0.0/8,nonsense"}, "TRUSTED_PROXIES: \"nonsense\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig(env(tc.env))
			if err == nil {
				t.Fatalf("no error, want one containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestLoadConfigReportsEveryProblem(t *testing.T) {
	_, err := LoadConfig(env(map[string]string{"DATABASE_URL": "nope", "LOG_LEVEL": "loud"}))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"JWT_SECRET", "DATABASE_URL", "LOG_LEVEL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}
