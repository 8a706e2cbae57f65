package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"presencestats"
)

// Causes of a refused WebSocket connection (the cause label of presence_ws_refused_total).
const (
	RefusedUserLimit     = "user_limit"     // MAX_CONNECTIONS_PER_USER: 429
	RefusedInstanceLimit = "instance_limit" // MAX_CONNECTIONS: 503
	RefusedConnectRate   = "connect_rate"   // CONNECT_RATE / CONNECT_BURST: 429
)

// fullRetryAfter is the Retry-After of a full instance: long enough for a balancer to have
// taken it out (its /readyz says full), short enough that a client comes back soon.
const fullRetryAfter = 5 * time.Second

// ConnLimitsConfig is what bounds the WebSocket connections of one instance; cmd fills it from
// Config. A zero value in any field means no limit of that kind.
type ConnLimitsConfig struct {
	MaxPerUser int     // MAX_CONNECTIONS_PER_USER: open connections of one user on this instance
	MaxTotal   int     // MAX_CONNECTIONS: open connections on this instance
	Rate       float64 // CONNECT_RATE: new connections per second per client address
	Burst      int     // CONNECT_BURST
	// MaxAddresses is CONNECT_ADDRESSES: the most client addresses whose buckets are kept.
	MaxAddresses int
	Now          func() time.Time
}

// ConnLimits counts this instance's WebSocket connections per user and in all, and meters new
// connections per client address. Everything is in process memory: a check costs a mutex, never
// a Redis round trip, so the limits are per instance (an operator with N instances behind a
// balancer allows a user up to N x MAX_CONNECTIONS_PER_USER in all, see docs/operations.md).
type ConnLimits struct {
	cfg ConnLimitsConfig
	now func() time.Time

	mu      sync.Mutex
	perUser map[uuid.UUID]int
	total   int

	bmu       sync.Mutex
	buckets   map[netip.Addr]*addrBucket
	lastSweep time.Time

	refused *prometheus.CounterVec
}

// addrBucket is one client address's token bucket.
type addrBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// NewConnLimits returns the limits and registers their metrics with reg: the refusals by cause,
// the open and user-counted connections, the address table's size, and every limit's value.
func NewConnLimits(cfg ConnLimitsConfig, reg prometheus.Registerer) *ConnLimits {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &ConnLimits{
		cfg: cfg, now: cfg.Now, perUser: map[uuid.UUID]int{}, buckets: map[netip.Addr]*addrBucket{},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "presence_ws_refused_total", Help: "WebSocket connections refused before the upgrade, by the limit that refused them.",
		}, []string{"cause"}),
	}
	for _, c := range []string{RefusedUserLimit, RefusedInstanceLimit, RefusedConnectRate} {
		l.refused.WithLabelValues(c) // present at 0 from the start
	}
	limits := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "presence_limit", Help: "The value of each limit setting (0: no limit).",
	}, []string{"setting"})
	limits.WithLabelValues("MAX_CONNECTIONS").Set(float64(cfg.MaxTotal))
	limits.WithLabelValues("MAX_CONNECTIONS_PER_USER").Set(float64(cfg.MaxPerUser))
	limits.WithLabelValues("CONNECT_RATE").Set(cfg.Rate)
	limits.WithLabelValues("CONNECT_BURST").Set(float64(cfg.Burst))
	limits.WithLabelValues("CONNECT_ADDRESSES").Set(float64(cfg.MaxAddresses))
	reg.MustRegister(l.refused, limits,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "presence_ws_connections_held", Help: "WebSocket connections counted against MAX_CONNECTIONS (from the check before the upgrade to the end of the session).",
		}, func() float64 { return float64(l.Open()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "presence_connect_rate_addresses", Help: "Client addresses whose connect-rate bucket is kept (at most CONNECT_ADDRESSES).",
		}, func() float64 { return float64(l.addresses()) }))
	return l
}

// AllowConnect takes one token from the bucket of ip (IPv6: its /64, what one subscriber
// usually gets). It returns ETOOMANY with a Retry-After when the bucket is empty.
func (l *ConnLimits) AllowConnect(ip netip.Addr) error {
	if l == nil || l.cfg.Rate <= 0 {
		return nil
	}
	key := addrKey(ip)
	now := l.now()
	l.bmu.Lock()
	b := l.buckets[key]
	if b == nil {
		l.makeRoomLocked(now)
		b = &addrBucket{lim: rate.NewLimiter(rate.Limit(l.cfg.Rate), max(l.cfg.Burst, 1))}
		l.buckets[key] = b
	}
	b.seen = now
	ok := b.lim.AllowN(now, 1)
	l.bmu.Unlock()
	if ok {
		return nil
	}
	l.refused.WithLabelValues(RefusedConnectRate).Inc()
	return withRetryAfter(presencestats.Errorf(presencestats.ETOOMANY,
		"too many new connections from this address: retry later"), time.Duration(float64(time.Second)/l.cfg.Rate))
}

// makeRoomLocked keeps the address table within MaxAddresses (l.bmu held) before an address is
// added. Buckets that have refilled (idle for Burst/Rate) are dropped first: a new bucket is the
// same. Past that, an arbitrary one goes, which gives its address a fresh burst: under a flood of
// distinct addresses the bound wins over exactness. The full sweep runs at most once a second.
func (l *ConnLimits) makeRoomLocked(now time.Time) {
	if l.cfg.MaxAddresses <= 0 || len(l.buckets) < l.cfg.MaxAddresses {
		return
	}
	if now.Sub(l.lastSweep) >= time.Second {
		l.lastSweep = now
		refill := time.Duration(float64(max(l.cfg.Burst, 1)) / l.cfg.Rate * float64(time.Second))
		for k, b := range l.buckets {
			if now.Sub(b.seen) >= refill {
				delete(l.buckets, k)
			}
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < l.cfg.MaxAddresses {
			break
		}
		delete(l.buckets, k)
	}
}

func (l *ConnLimits) addresses() int {
	l.bmu.Lock()
	defer l.bmu.Unlock()
	return len(l.buckets)
}

// addrKey is the bucket of ip: the address itself for IPv4, its /64 for IPv6.
func addrKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// Acquire counts one more connection of user, or refuses it: ETOOMANY (429) past
// MaxPerUser, EUNAVAILABLE (503, with Retry-After) past MaxTotal. The returned release must be
// called exactly once when the connection ends, however it ends; it is safe to call it twice.
func (l *ConnLimits) Acquire(user uuid.UUID) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	l.mu.Lock()
	if l.cfg.MaxTotal > 0 && l.total >= l.cfg.MaxTotal {
		l.mu.Unlock()
		l.refused.WithLabelValues(RefusedInstanceLimit).Inc()
		return nil, withRetryAfter(presencestats.Errorf(presencestats.EUNAVAILABLE,
			"this server is full (MAX_CONNECTIONS): retry later"), fullRetryAfter)
	}
	if l.cfg.MaxPerUser > 0 && l.perUser[user] >= l.cfg.MaxPerUser {
		l.mu.Unlock()
		l.refused.WithLabelValues(RefusedUserLimit).Inc()
		return nil, presencestats.Errorf(presencestats.ETOOMANY,
			"this user has %d connections open on this server, the most allowed: close one first", l.cfg.MaxPerUser)
	}
	l.total++
	l.perUser[user]++
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total--
			if n := l.perUser[user] - 1; n > 0 {
				l.perUser[user] = n
			} else {
				delete(l.perUser, user)
			}
		})
	}, nil
}

// Open returns the connections counted now.
func (l *ConnLimits) Open() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// OfUser returns the connections of user counted now.
func (l *ConnLimits) OfUser(user uuid.UUID) int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perUser[user]
}

// Full reports whether the instance is at MAX_CONNECTIONS; /readyz then answers "full".
func (l *ConnLimits) Full() bool {
	if l == nil || l.cfg.MaxTotal <= 0 {
		return false
	}
	return l.Open() >= l.cfg.MaxTotal
}

// Capacity is what /readyz says of the connections: open now and the most allowed.
func (l *ConnLimits) Capacity() (open, limit int) {
	if l == nil {
		return 0, 0
	}
	return l.Open(), l.cfg.MaxTotal
}

// ReportLimitsConfig is what bounds the report load of one instance; cmd fills it from Config.
type ReportLimitsConfig struct {
	Concurrency  int           // REPORT_CONCURRENCY: report queries and exports at once (< 1: 1)
	QueueTimeout time.Duration // REPORT_QUEUE_TIMEOUT: how long a request waits for a slot
	Timeout      time.Duration // REPORT_TIMEOUT: a report's database work (<= 0: none)
}

// ReportLimits bounds the report queries and exports running at once on this instance: a
// request waits up to REPORT_QUEUE_TIMEOUT for one of REPORT_CONCURRENCY slots, then gets 429. A
// slot is held for the whole request, the streaming of a download included. The database work of
// a report is bounded by REPORT_TIMEOUT (see reportDeadline); past it the answer is 504.
type ReportLimits struct {
	cfg      ReportLimitsConfig
	sem      chan struct{}
	waiting  prometheus.Gauge
	refused  prometheus.Counter
	timedOut prometheus.Counter
}

// NewReportLimits returns the limits and registers their metrics with reg.
func NewReportLimits(cfg ReportLimitsConfig, reg prometheus.Registerer) *ReportLimits {
	s := &ReportLimits{
		cfg: cfg,
		sem: make(chan struct{}, max(cfg.Concurrency, 1)),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "presence_report_waiting", Help: "Report requests waiting for a slot (REPORT_CONCURRENCY).",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "presence_report_refused_total", Help: "Report requests refused with 429 after waiting REPORT_QUEUE_TIMEOUT for a slot.",
		}),
		timedOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "presence_report_timeouts_total", Help: "Report requests answered 504 because their database work passed REPORT_TIMEOUT.",
		}),
	}
	limits := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "presence_report_limit", Help: "The value of each report limit setting (durations in seconds).",
	}, []string{"setting"})
	limits.WithLabelValues("REPORT_CONCURRENCY").Set(float64(cap(s.sem)))
	limits.WithLabelValues("REPORT_QUEUE_TIMEOUT").Set(cfg.QueueTimeout.Seconds())
	limits.WithLabelValues("REPORT_TIMEOUT").Set(cfg.Timeout.Seconds())
	reg.MustRegister(s.waiting, s.refused, s.timedOut, limits, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "presence_report_running", Help: "Report requests holding a slot (REPORT_CONCURRENCY).",
	}, func() float64 { return float64(len(s.sem)) }))
	return s
}

// acquire waits for a slot up to the queue timeout. Errors: ETOOMANY (429, with Retry-After)
// when none freed in time, EUNAVAILABLE when the client went away meanwhile. release frees it.
func (s *ReportLimits) acquire(ctx context.Context) (release func(), err error) {
	if s == nil {
		return func() {}, nil
	}
	select {
	case s.sem <- struct{}{}:
		return s.releaser(), nil
	default:
	}
	s.waiting.Inc()
	defer s.waiting.Dec()
	t := time.NewTimer(s.cfg.QueueTimeout)
	defer t.Stop()
	select {
	case s.sem <- struct{}{}:
		return s.releaser(), nil
	case <-t.C:
		s.refused.Inc()
		return nil, withRetryAfter(presencestats.Errorf(presencestats.ETOOMANY,
			"%d reports are running on this server, the most allowed (REPORT_CONCURRENCY), and none ended within %s: retry later",
			cap(s.sem), s.cfg.QueueTimeout), s.cfg.QueueTimeout)
	case <-ctx.Done():
		return nil, presencestats.Wrap(presencestats.EUNAVAILABLE, ctx.Err(), "request ended while waiting for a report slot")
	}
}

func (s *ReportLimits) releaser() func() {
	var once sync.Once
	return func() { once.Do(func() { <-s.sem }) }
}

// errReportTimeout is the cause of a report context cancelled by REPORT_TIMEOUT.
var errReportTimeout = errors.New("REPORT_TIMEOUT passed")

// reportDeadline bounds a report's database work by REPORT_TIMEOUT. The deadline is a timer
// that cancels ctx rather than a context deadline, so that it can be stopped: a CSV download
// streams its query's rows to the client, and a slow client must not turn into a timeout once
// the database has produced the first row (the stall guard and REPORT_MAX_POINTS bound the rest).
// Cancelling ctx makes pgx cancel the query (a cancel request, then closing the connection: see
// storage.OpenPool and docs/operations.md for what each engine does with it).
type reportDeadline struct {
	ctx    context.Context
	timer  *time.Timer
	cancel context.CancelCauseFunc
	limits *ReportLimits
}

// deadline starts the REPORT_TIMEOUT of a report's database work on ctx. Call close when the
// request ends.
func (s *ReportLimits) deadline(ctx context.Context) *reportDeadline {
	d := &reportDeadline{limits: s}
	d.ctx, d.cancel = context.WithCancelCause(ctx)
	if s != nil && s.cfg.Timeout > 0 {
		d.timer = time.AfterFunc(s.cfg.Timeout, func() { d.cancel(errReportTimeout) })
	}
	return d
}

// stop ends the deadline: the database work is done, or its rows have begun to stream.
func (d *reportDeadline) stop() {
	if d.timer != nil {
		d.timer.Stop()
	}
}

func (d *reportDeadline) close() {
	d.stop()
	d.cancel(context.Canceled)
}

// check returns err, or ETIMEOUT (504) when the deadline cut the work off.
func (d *reportDeadline) check(err error) error {
	if err == nil || !errors.Is(context.Cause(d.ctx), errReportTimeout) {
		return err
	}
	d.limits.timedOut.Inc()
	return presencestats.Wrap(presencestats.ETIMEOUT, err, fmt.Sprintf(
		"the report's queries took longer than REPORT_TIMEOUT (%s): narrow the range, pick fewer rooms or a coarser granularity",
		d.limits.cfg.Timeout))
}
