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
	// The limits are on by default.
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"MaxConnectionsPerUser", c.MaxConnectionsPerUser, 20},
		{"MaxConnections", c.MaxConnections, defaultMaxConnections(openFileLimit())},
		{"ConnectRate", c.ConnectRate, 50.0},
		{"ConnectBurst", c.ConnectBurst, 1000},
		{"ConnectAddresses", c.ConnectAddresses, 100000},
		{"ReportConcurrency", c.ReportConcurrency, 4},
		{"ReportQueueTimeout", c.ReportQueueTimeout, 10 * time.Second},
		{"ReportTimeout", c.ReportTimeout, 30 * time.Second},
		{"MetricsAddr", c.MetricsAddr, ""},
	} {
		if tc.got != tc.want {
			t.Errorf("%s %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if c.MaxConnections < 64 {
		t.Errorf("MaxConnections %d, want at least 64", c.MaxConnections)
	}
}

// MAX_CONNECTIONS's default: the open-file limit minus the reserve, never below 64.
func TestDefaultMaxConnections(t *testing.T) {
	for _, tc := range []struct {
		nofile uint64
		want   int
	}{
		{1024, 512}, {20000, 19488}, {1 << 20, 1<<20 - 512}, {600, 88}, {576, 64}, {256, 64}, {0, 64},
	} {
		if got := defaultMaxConnections(tc.nofile); got != tc.want {
			t.Errorf("defaultMaxConnections(%d) = %d, want %d", tc.nofile, got, tc.want)
		}
	}
}

func TestLoadConfigLimits(t *testing.T) {
	c, err := LoadConfig(env(map[string]string{
		"JWT_SECRET": "0123456789abcdef", "MAX_CONNECTIONS_PER_USER": "3", "MAX_CONNECTIONS": "100",
		"CONNECT_RATE": "0.5", "CONNECT_BURST": "7", "CONNECT_ADDRESSES": "1000", "REPORT_CONCURRENCY": "2",
		"REPORT_QUEUE_TIMEOUT": "1s", "REPORT_TIMEOUT": "2m", "METRICS_ADDR": "127.0.0.1:9090",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxConnectionsPerUser != 3 || c.MaxConnections != 100 || c.ConnectRate != 0.5 || c.ConnectBurst != 7 ||
		c.ConnectAddresses != 1000 || c.ReportConcurrency != 2 || c.ReportQueueTimeout != time.Second ||
		c.ReportTimeout != 2*time.Minute || c.MetricsAddr != "127.0.0.1:9090" {
		t.Fatalf("limits not taken: %+v", c)
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
		{"cluster REDIS_URL with a database", map[string]string{"JWT_SECRET": "0123456789abcdef", "REDIS_URL": "redis://a:7000,b:7001/3"}, "REDIS_URL: parse REDIS_URL: a Redis Cluster has only database 0"},
		{"cluster REDIS_URL with an empty address", map[string]string{"JWT_SECRET": "0123456789abcdef", "REDIS_URL": "redis://a:7000,,b:7001"}, "REDIS_URL: parse REDIS_URL: empty address"},
		{"negative REDIS_WAIT_REPLICAS", map[string]string{"JWT_SECRET": "0123456789abcdef", "REDIS_WAIT_REPLICAS": "-1"}, "REDIS_WAIT_REPLICAS"},
		{"bad duration", map[string]string{"JWT_SECRET": "0123456789abcdef", "PRESENCE_TTL": "sixty"}, "PRESENCE_TTL: \"sixty\" is not a duration"},
		{"sweep not shorter than ttl", map[string]string{"JWT_SECRET": "0123456789abcdef", "PRESENCE_TTL": "5s", "SWEEP_INTERVAL": "5s"}, "SWEEP_INTERVAL: must be shorter than PRESENCE_TTL"},
		{"bad integer", map[string]string{"JWT_SECRET": "0123456789abcdef", "EVENT_BATCH_SIZE": "0"}, "EVENT_BATCH_SIZE: \"0\" is not a whole number"},
		{"bad zone", map[string]string{"JWT_SECRET": "0123456789abcdef", "REPORT_TIMEZONE": "Mars/Olympus"}, "REPORT_TIMEZONE"},
		{"bad log format", map[string]string{"JWT_SECRET": "0123456789abcdef", "LOG_FORMAT": "xml"}, "LOG_FORMAT"},
		{"bad proxy", map[string]string{"JWT_SECRET": "0123456789abcdef", "TRUSTED_PROXIES": "10.0.0.0/8,nonsense"}, "TRUSTED_PROXIES: \"nonsense\""},
		{"zero per-user limit", map[string]string{"JWT_SECRET": "0123456789abcdef", "MAX_CONNECTIONS_PER_USER": "0"}, "MAX_CONNECTIONS_PER_USER: \"0\" is not a whole number"},
		{"bad instance limit", map[string]string{"JWT_SECRET": "0123456789abcdef", "MAX_CONNECTIONS": "many"}, "MAX_CONNECTIONS: \"many\" is not a whole number"},
		{"zero connect rate", map[string]string{"JWT_SECRET": "0123456789abcdef", "CONNECT_RATE": "0"}, "CONNECT_RATE: must be a positive number"},
		{"bad connect rate", map[string]string{"JWT_SECRET": "0123456789abcdef", "CONNECT_RATE": "fast"}, "CONNECT_RATE: \"fast\" is not a number"},
		{"zero burst", map[string]string{"JWT_SECRET": "0123456789abcdef", "CONNECT_BURST": "0"}, "CONNECT_BURST"},
		{"zero address table", map[string]string{"JWT_SECRET": "0123456789abcdef", "CONNECT_ADDRESSES": "0"}, "CONNECT_ADDRESSES"},
		{"zero report concurrency", map[string]string{"JWT_SECRET": "0123456789abcdef", "REPORT_CONCURRENCY": "0"}, "REPORT_CONCURRENCY"},
		{"negative queue timeout", map[string]string{"JWT_SECRET": "0123456789abcdef", "REPORT_QUEUE_TIMEOUT": "-1s"}, "REPORT_QUEUE_TIMEOUT: must be a positive duration"},
		{"bad report timeout", map[string]string{"JWT_SECRET": "0123456789abcdef", "REPORT_TIMEOUT": "30"}, "REPORT_TIMEOUT: \"30\" is not a duration"},
		{"metrics addr without port", map[string]string{"JWT_SECRET": "0123456789abcdef", "METRICS_ADDR": "localhost"}, "METRICS_ADDR: \"localhost\" is not host:port"},
		{"negative resume window", map[string]string{"JWT_SECRET": "0123456789abcdef", "RESUME_WINDOW": "-1s"}, "RESUME_WINDOW: must be 0 (off)"},
		{"metrics addr is the http addr", map[string]string{"JWT_SECRET": "0123456789abcdef", "METRICS_ADDR": ":8080"}, "METRICS_ADDR: must differ from HTTP_ADDR"},
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

// RESUME_WINDOW: 10 s by default, 0 turns resume off, and it never exceeds PRESENCE_TTL (the room's
// keys, kept 3 x PRESENCE_TTL, must outlive a detached session's deadline).
func TestLoadConfigResumeWindow(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want time.Duration
	}{
		{map[string]string{}, 10 * time.Second},
		{map[string]string{"RESUME_WINDOW": "0"}, 0},
		{map[string]string{"RESUME_WINDOW": "3s"}, 3 * time.Second},
		{map[string]string{"PRESENCE_TTL": "2s", "SWEEP_INTERVAL": "500ms"}, 2 * time.Second},
	} {
		tc.env["JWT_SECRET"] = "0123456789abcdef"
		c, err := LoadConfig(env(tc.env))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ResumeWindow; got != tc.want {
			t.Errorf("%v: ResumeWindow %s, want %s", tc.env, got, tc.want)
		}
	}
}
