package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"presencestats/storage"
)

// Config is every setting of the service. It is read from the environment here and nowhere else.
// The README lists each with its default.
type Config struct {
	HTTPAddr        string        // HTTP_ADDR
	DatabaseURL     string        // DATABASE_URL
	RedisURL        string        // REDIS_URL
	JWTSecret       string        // JWT_SECRET (required)
	LogLevel        slog.Level    // LOG_LEVEL: debug|info|warn|error
	LogFormat       string        // LOG_FORMAT: json|text
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT
	DevMode         bool          // DEV_MODE=1: the token endpoint for the chat page

	// Real-time presence.
	AllowedOrigins         []string       // ALLOWED_ORIGINS, comma-separated; empty: same host only
	TrustedProxies         []netip.Prefix // TRUSTED_PROXIES, comma-separated CIDRs or IPs
	RedisKeyPrefix         string         // REDIS_KEY_PREFIX
	RedisWaitReplicas      int            // REDIS_WAIT_REPLICAS: replicas that confirm each presence change (WAIT)
	MaxMessageBytes        int            // MAX_MESSAGE_BYTES
	PresenceTTL            time.Duration  // PRESENCE_TTL
	SweepInterval          time.Duration  // SWEEP_INTERVAL
	StatsPushInterval      time.Duration  // STATS_PUSH_INTERVAL: a room's push window (the shortest gap between two online_stats)
	StatsPushRoomRate      int            // STATS_PUSH_ROOM_RATE: online_stats frames a second a room's pushes may cost (wider windows); 0: off
	StatsCacheTTL          time.Duration  // STATS_CACHE_TTL
	HeartbeatEventInterval time.Duration  // HEARTBEAT_EVENT_INTERVAL
	ChatRatePerSecond      float64        // CHAT_RATE: chat messages per second per connection
	ChatBurst              int            // CHAT_BURST
	SendBuffer             int            // WS_SEND_BUFFER: frames queued per connection before it is dropped
	ResumeWindow           time.Duration  // RESUME_WINDOW: a shutdown keeps sessions this long for a resume (at most PRESENCE_TTL); 0: off

	// History.
	EventBatchSize     int            // EVENT_BATCH_SIZE
	EventFlushInterval time.Duration  // EVENT_FLUSH_INTERVAL
	SpoolDir           string         // SPOOL_DIR: a spool an earlier version left is replayed; empty: none
	OutboxMaxEvents    int64          // OUTBOX_MAX_EVENTS: bound of the outbox streams, all shards together
	OutboxClaimIdle    time.Duration  // OUTBOX_CLAIM_IDLE
	ReportTimezone     *time.Location // REPORT_TIMEZONE

	// Reports.
	ReportMaxPoints    int           // REPORT_MAX_POINTS
	ReportConcurrency  int           // REPORT_CONCURRENCY: report queries and exports at once per instance
	ReportQueueTimeout time.Duration // REPORT_QUEUE_TIMEOUT: the longest wait for a report slot
	ReportTimeout      time.Duration // REPORT_TIMEOUT: a report's database work

	// Limits (docs/operations.md, "Limits"); all per instance.
	MaxConnectionsPerUser int     // MAX_CONNECTIONS_PER_USER
	MaxConnections        int     // MAX_CONNECTIONS; default from RLIMIT_NOFILE (defaultMaxConnections)
	ConnectRate           float64 // CONNECT_RATE: new WebSocket connections per second per client address
	ConnectBurst          int     // CONNECT_BURST
	ConnectAddresses      int     // CONNECT_ADDRESSES: client addresses whose connect-rate bucket is kept
	MetricsAddr           string  // METRICS_ADDR: /metrics on its own listener; empty: on HTTP_ADDR
}

// fdReserve is what the default MAX_CONNECTIONS leaves of the open-file limit for everything
// that is not a WebSocket: the Redis pool (go-redis: 10 per GOMAXPROCS, and the pub/sub
// connection), the database pool (pool_max_conns), the listeners, the spool file, and the REST,
// admin and metrics requests in flight.
const fdReserve = 512

// defaultMaxConnections is MAX_CONNECTIONS's default for an open-file limit of nofile: nofile
// minus fdReserve, and at least 64 (a limit that low needs raising: ulimit -n or LimitNOFILE=).
func defaultMaxConnections(nofile uint64) int {
	if nofile <= fdReserve+64 {
		return 64
	}
	return int(min(nofile-fdReserve, 1<<30))
}

// openFileLimit is the process's soft RLIMIT_NOFILE (Go raises it to the hard limit at start);
// 1024 when it cannot be read.
func openFileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur == 0 {
		return 1024
	}
	return l.Cur
}

// Defaults point at the services that `make services-up` starts.
const (
	DefaultDatabaseURL = "postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable&pool_max_conns=1&default_query_exec_mode=cache_describe"
	DefaultRedisURL    = "redis://127.0.0.1:6380/0"
)

// LoadConfig reads the configuration through lookupEnv (os.LookupEnv in main) and validates it.
// All problems are reported at once, one per line.
func LoadConfig(lookupEnv func(string) (string, bool)) (Config, error) {
	r := envReader{lookupEnv: lookupEnv}
	c := Config{
		HTTPAddr:        r.str("HTTP_ADDR", ":8080"),
		DatabaseURL:     r.str("DATABASE_URL", DefaultDatabaseURL),
		RedisURL:        r.str("REDIS_URL", DefaultRedisURL),
		JWTSecret:       r.str("JWT_SECRET", ""),
		LogFormat:       r.str("LOG_FORMAT", "json"),
		ShutdownTimeout: r.duration("SHUTDOWN_TIMEOUT", 15*time.Second),
		DevMode:         r.boolean("DEV_MODE", false),

		AllowedOrigins:         r.list("ALLOWED_ORIGINS"),
		RedisKeyPrefix:         r.str("REDIS_KEY_PREFIX", "presence:"),
		RedisWaitReplicas:      r.integer("REDIS_WAIT_REPLICAS", 0, 0, 16),
		MaxMessageBytes:        r.integer("MAX_MESSAGE_BYTES", 4096, 64, 1<<20),
		PresenceTTL:            r.duration("PRESENCE_TTL", 60*time.Second),
		SweepInterval:          r.duration("SWEEP_INTERVAL", 5*time.Second),
		StatsPushInterval:      r.duration("STATS_PUSH_INTERVAL", time.Millisecond),
		StatsPushRoomRate:      r.integer("STATS_PUSH_ROOM_RATE", 25000, 0, 1<<30),
		StatsCacheTTL:          r.duration("STATS_CACHE_TTL", 5*time.Second),
		HeartbeatEventInterval: r.duration("HEARTBEAT_EVENT_INTERVAL", 5*time.Minute),
		ChatRatePerSecond:      r.float("CHAT_RATE", 5),
		ChatBurst:              r.integer("CHAT_BURST", 10, 1, 10000),
		SendBuffer:             r.integer("WS_SEND_BUFFER", 128, 1, 1<<16),
		ResumeWindow:           r.duration("RESUME_WINDOW", 10*time.Second),

		EventBatchSize:     r.integer("EVENT_BATCH_SIZE", 1000, 1, 100000),
		EventFlushInterval: r.duration("EVENT_FLUSH_INTERVAL", time.Second),
		SpoolDir:           r.str("SPOOL_DIR", ".data/spool"),
		OutboxMaxEvents:    int64(r.integer("OUTBOX_MAX_EVENTS", 2000000, 0, 1<<40)),
		OutboxClaimIdle:    r.duration("OUTBOX_CLAIM_IDLE", 30*time.Second),

		ReportMaxPoints:    r.integer("REPORT_MAX_POINTS", 100000, 1, 100000000),
		ReportConcurrency:  r.integer("REPORT_CONCURRENCY", 4, 1, 1000),
		ReportQueueTimeout: r.duration("REPORT_QUEUE_TIMEOUT", 10*time.Second),
		ReportTimeout:      r.duration("REPORT_TIMEOUT", 30*time.Second),

		MaxConnectionsPerUser: r.integer("MAX_CONNECTIONS_PER_USER", 20, 1, 1000000),
		MaxConnections:        r.integer("MAX_CONNECTIONS", defaultMaxConnections(openFileLimit()), 1, 1<<30),
		ConnectRate:           r.float("CONNECT_RATE", 50),
		ConnectBurst:          r.integer("CONNECT_BURST", 1000, 1, 1000000),
		ConnectAddresses:      r.integer("CONNECT_ADDRESSES", 100000, 1, 100000000),
		MetricsAddr:           r.str("METRICS_ADDR", ""),
	}
	if v, ok := r.lookup("SPOOL_DIR"); ok {
		c.SpoolDir = v // an explicit empty value disables the spool
	}
	switch lvl := strings.ToLower(r.str("LOG_LEVEL", "info")); lvl {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "info":
		c.LogLevel = slog.LevelInfo
	case "warn", "warning":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		r.fail("LOG_LEVEL", "%q is not one of debug, info, warn, error", lvl)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		r.fail("LOG_FORMAT", "%q is not json or text", c.LogFormat)
	}
	tz := r.str("REPORT_TIMEZONE", "UTC")
	loc, err := time.LoadLocation(tz)
	if err != nil {
		r.fail("REPORT_TIMEZONE", "%q is not an IANA time zone", tz)
	}
	c.ReportTimezone = loc
	for _, p := range r.list("TRUSTED_PROXIES") {
		if pfx, err := netip.ParsePrefix(p); err == nil {
			c.TrustedProxies = append(c.TrustedProxies, pfx.Masked())
		} else if a, err := netip.ParseAddr(p); err == nil {
			c.TrustedProxies = append(c.TrustedProxies, netip.PrefixFrom(a, a.BitLen()))
		} else {
			r.fail("TRUSTED_PROXIES", "%q is neither an IP address nor a CIDR", p)
		}
	}
	if c.JWTSecret == "" {
		r.fail("JWT_SECRET", "is required (make run sets a development value)")
	} else if len(c.JWTSecret) < 16 {
		r.fail("JWT_SECRET", "must be at least 16 characters")
	}
	checkURL(&r, "DATABASE_URL", c.DatabaseURL, "postgres", "postgresql")
	before := len(r.problems)
	checkURL(&r, "REDIS_URL", c.RedisURL, "redis", "rediss")
	if _, _, err := storage.ParseRedisURL(c.RedisURL); err != nil && len(r.problems) == before {
		r.fail("REDIS_URL", "%v", err) // one address, or several: a Redis Cluster
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"SHUTDOWN_TIMEOUT", c.ShutdownTimeout}, {"PRESENCE_TTL", c.PresenceTTL}, {"SWEEP_INTERVAL", c.SweepInterval},
		{"STATS_PUSH_INTERVAL", c.StatsPushInterval}, {"STATS_CACHE_TTL", c.StatsCacheTTL},
		{"HEARTBEAT_EVENT_INTERVAL", c.HeartbeatEventInterval}, {"EVENT_FLUSH_INTERVAL", c.EventFlushInterval},
		{"REPORT_QUEUE_TIMEOUT", c.ReportQueueTimeout}, {"REPORT_TIMEOUT", c.ReportTimeout},
		{"OUTBOX_CLAIM_IDLE", c.OutboxClaimIdle},
	} {
		if d.v <= 0 {
			r.fail(d.name, "must be a positive duration")
		}
	}
	if c.SweepInterval > 0 && c.PresenceTTL > 0 && c.SweepInterval >= c.PresenceTTL {
		r.fail("SWEEP_INTERVAL", "must be shorter than PRESENCE_TTL (%s)", c.PresenceTTL)
	}
	switch {
	case c.ResumeWindow < 0:
		r.fail("RESUME_WINDOW", "must be 0 (off) or a positive duration")
	case c.ResumeWindow > 0 && c.ResumeWindow < time.Millisecond:
		r.fail("RESUME_WINDOW", "must be 0 (off) or at least 1ms")
	case c.PresenceTTL > 0 && c.ResumeWindow > c.PresenceTTL:
		// A detached session waits no longer than a silent one, so the room's keys (kept 3 x
		// PRESENCE_TTL by every join and heartbeat) outlive every detached deadline. Capped rather
		// than refused: a short PRESENCE_TTL (tests, drills) keeps the default working.
		c.ResumeWindow = c.PresenceTTL
	}
	if c.ChatRatePerSecond <= 0 {
		r.fail("CHAT_RATE", "must be positive")
	}
	if c.ConnectRate <= 0 || c.ConnectRate > 1e6 {
		r.fail("CONNECT_RATE", "must be a positive number of connections per second, at most 1000000")
	}
	if c.MetricsAddr != "" {
		if _, port, err := net.SplitHostPort(c.MetricsAddr); err != nil || port == "" {
			r.fail("METRICS_ADDR", "%q is not host:port (e.g. 127.0.0.1:9090)", c.MetricsAddr)
		} else if c.MetricsAddr == c.HTTPAddr {
			r.fail("METRICS_ADDR", "must differ from HTTP_ADDR (leave it empty to serve /metrics there)")
		}
	}
	if len(r.problems) > 0 {
		return Config{}, errors.New("invalid configuration:\n  " + strings.Join(r.problems, "\n  "))
	}
	return c, nil
}

func checkURL(r *envReader, name, v string, schemes ...string) {
	u, err := url.Parse(v)
	if err != nil {
		r.fail(name, "is not a URL: %v", err)
		return
	}
	for _, s := range schemes {
		if u.Scheme == s && u.Host != "" {
			return
		}
	}
	r.fail(name, "must look like %s://host:port/... (got scheme %q, host %q)", schemes[0], u.Scheme, u.Host)
}

type envReader struct {
	lookupEnv func(string) (string, bool)
	problems  []string
}

func (r *envReader) fail(name, format string, args ...any) {
	r.problems = append(r.problems, name+": "+fmt.Sprintf(format, args...))
}

func (r *envReader) lookup(name string) (string, bool) {
	v, ok := r.lookupEnv(name)
	return strings.TrimSpace(v), ok
}

func (r *envReader) str(name, def string) string {
	if v, ok := r.lookup(name); ok && v != "" {
		return v
	}
	return def
}

func (r *envReader) list(name string) []string {
	var out []string
	v, _ := r.lookup(name)
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (r *envReader) duration(name string, def time.Duration) time.Duration {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		r.fail(name, "%q is not a duration like 500ms, 5s or 2m", v)
		return def
	}
	return d
}

func (r *envReader) integer(name string, def, min, max int) int {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		r.fail(name, "%q is not a whole number from %d to %d", v, min, max)
		return def
	}
	return n
}

func (r *envReader) float(name string, def float64) float64 {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		r.fail(name, "%q is not a number", v)
		return def
	}
	return f
}

func (r *envReader) boolean(name string, def bool) bool {
	switch strings.ToLower(r.str(name, "")) {
	case "":
		return def
	case "1", "true", "yes", "on":
		return true
	case "0", "false", "no", "off":
		return false
	default:
		r.fail(name, "is not 1 or 0")
		return def
	}
}
