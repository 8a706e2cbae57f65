package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"presencestats"
)

const (
	requestIDKey = "request_id"
	clientIPKey  = "presencestats.client_ip"
)

// Feature is a part of the API that adds its own routes (presence, reports, web pages).
type Feature interface {
	Register(r *gin.Engine)
}

// ReadinessCheck is one dependency that /readyz reports on.
type ReadinessCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// RouterConfig is what NewRouter needs.
type RouterConfig struct {
	Logger   *slog.Logger
	Registry *prometheus.Registry // the service's own registry, served at /metrics
	Checks   []ReadinessCheck
	Features []Feature
	// TrustedProxies are the peers whose X-Forwarded-For is believed for the client IP of every
	// request (request log, audit trail, presence events); none by default.
	TrustedProxies []netip.Prefix
	// Capacity, when set, says how many WebSocket connections are open and the most allowed
	// (ConnLimits.Capacity): at the limit /readyz answers 503 "full", so that a load balancer
	// sends new clients to another instance.
	Capacity func() (open, limit int)
	// NoMetrics leaves /metrics off this router (METRICS_ADDR serves it on its own listener).
	NoMetrics bool
}

// NewRouter returns the gin engine with recovery, request logging and metrics, the health
// endpoints, and every feature's routes.
func NewRouter(cfg RouterConfig) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.ContextWithFallback = true
	r.HandleMethodNotAllowed = true
	// gin believes X-Forwarded-For from any peer by default; the client IP is requestIP's, whose
	// rule is TRUSTED_PROXIES, so gin's own must believe no header.
	if err := r.SetTrustedProxies(nil); err != nil {
		panic(err) // nil is always accepted
	}
	m := newHTTPMetrics(cfg.Registry)
	cfg.Registry.MustRegister(newDependencyCollector(cfg.Checks))
	r.Use(requestLog(cfg.Logger, m, cfg.TrustedProxies), recovery(cfg.Logger))
	r.NoRoute(func(c *gin.Context) {
		writeError(c, cfg.Logger, presencestats.Errorf(presencestats.ENOTFOUND, "no route %s %s", c.Request.Method, c.Request.URL.Path))
	})
	r.NoMethod(func(c *gin.Context) {
		c.AbortWithStatusJSON(http.StatusMethodNotAllowed, ErrorBody{Error: ErrorDetail{Code: "method_not_allowed", Message: "method not allowed"}})
	})

	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", readyz(cfg.Checks, cfg.Capacity))
	if !cfg.NoMetrics {
		r.GET("/metrics", gin.WrapH(MetricsHandler(cfg.Registry)))
	}
	r.GET("/openapi.json", serveOpenAPI)
	for _, f := range cfg.Features {
		f.Register(r)
	}
	return r
}

// MetricsHandler serves reg in the Prometheus format: on the main router, or on METRICS_ADDR.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// readyz answers 200 when every dependency answers, 503 otherwise, naming each one's state; with
// every dependency up but the WebSocket connections at their limit, 503 with status "full". The
// checks run side by side, each with its own 2 s: a slow database does not make Redis look down.
func readyz(checks []ReadinessCheck, capacity func() (open, limit int)) gin.HandlerFunc {
	return func(c *gin.Context) {
		errs := runChecks(c.Request.Context(), checks)
		status := http.StatusOK
		deps := make(map[string]gin.H, len(checks))
		for i, ch := range checks {
			if err := errs[i]; err != nil {
				status = http.StatusServiceUnavailable
				deps[ch.Name] = gin.H{"status": "down", "error": presencestats.ErrorMessage(err)}
				continue
			}
			deps[ch.Name] = gin.H{"status": "up"}
		}
		state := "ready"
		if status != http.StatusOK {
			state = "not_ready"
		}
		body := gin.H{"status": state, "dependencies": deps}
		if capacity != nil {
			open, limit := capacity()
			body["connections"] = gin.H{"open": open, "max": limit}
			if limit > 0 && open >= limit && status == http.StatusOK {
				status, body["status"] = http.StatusServiceUnavailable, "full"
			}
		}
		c.JSON(status, body)
	}
}

// runChecks runs the checks side by side, each with its own 2 s, and returns their errors in order.
func runChecks(ctx context.Context, checks []ReadinessCheck) []error {
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, ch := range checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			errs[i] = ch.Check(ctx)
		})
	}
	wg.Wait()
	return errs
}

// dependencyCollector exports presence_dependency_up{dependency}: the readiness checks run at
// each scrape, so a dashboard and an alert see Redis and the database as /readyz does, whether
// or not anything polls /readyz.
type dependencyCollector struct {
	checks []ReadinessCheck
	desc   *prometheus.Desc
}

func newDependencyCollector(checks []ReadinessCheck) *dependencyCollector {
	return &dependencyCollector{checks: checks, desc: prometheus.NewDesc("presence_dependency_up",
		"1 when the dependency answered its readiness check at this scrape, else 0.", []string{"dependency"}, nil)}
}

func (d *dependencyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- d.desc }

func (d *dependencyCollector) Collect(ch chan<- prometheus.Metric) {
	for i, err := range runChecks(context.Background(), d.checks) {
		up := 1.0
		if err != nil {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.GaugeValue, up, d.checks[i].Name)
	}
}

type httpMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "presence_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "presence_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5},
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}

// requestLog gives every request an id (X-Request-ID, kept when the client sent a sane one) and
// logs one line per request with route, status and latency.
func requestLog(log *slog.Logger, m *httpMetrics, trusted []netip.Prefix) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		ip := clientIP(c.Request, trusted)
		c.Set(clientIPKey, ip)
		id := c.GetHeader("X-Request-ID")
		if id == "" || len(id) > 64 {
			id = uuid.NewString()
		}
		c.Set(requestIDKey, id)
		c.Header("X-Request-ID", id)
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		status := c.Writer.Status()
		elapsed := time.Since(start)
		m.requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(status)).Inc()
		m.latency.WithLabelValues(route).Observe(elapsed.Seconds())
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		}
		log.LogAttrs(c.Request.Context(), level, "request",
			slog.String("request_id", id), slog.String("method", c.Request.Method),
			slog.String("route", route), slog.Int("status", status),
			slog.Float64("latency_ms", float64(elapsed.Microseconds())/1000),
			slog.String("client_ip", ip.String()))
	}
}

// recovery turns a panic into a logged 500 without the panic's text in the answer.
func recovery(log *slog.Logger) gin.HandlerFunc {
	return gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, rec any) {
		log.ErrorContext(c.Request.Context(), "panic", "panic", rec, "route", c.FullPath(),
			"request_id", c.GetString(requestIDKey))
		c.AbortWithStatusJSON(http.StatusInternalServerError, ErrorBody{Error: ErrorDetail{Code: presencestats.EINTERNAL, Message: "internal error"}})
	})
}

// RequireUser lets any request with a valid token through; others get 401.
func RequireUser(auth *TokenAuthority, log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		if _, err := auth.authenticate(c); err != nil {
			writeError(c, log, err)
			return
		}
		c.Next()
	}
}

// RequireAdmin lets admins through; other valid tokens get 403, none or invalid 401.
func RequireAdmin(auth *TokenAuthority, log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		claims, err := auth.authenticate(c)
		if err != nil {
			writeError(c, log, err)
			return
		}
		if claims.Role != RoleAdmin {
			writeError(c, log, presencestats.Errorf(presencestats.EFORBIDDEN, "admin role required"))
			return
		}
		c.Next()
	}
}
