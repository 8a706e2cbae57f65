// Command loadgen puts real-time presence under load on this machine and measures it from the
// clients' side. Three scenarios:
//
//   - steps (the default; presenced or, -target centrifugo, Centrifugo v6, the same workload and
//     measurement for both): clients join their room one after another, rooms in parallel; each
//     join is timed from the joiner's dial until every member knows of it; with every room full,
//     -chat messages per room, one at a time, each timed until every member has it. With -pid it
//     reads the server's RSS growth per connection and CPU per 1,000 joins from /proc; without,
//     presenced's heap + stacks per connection from its /metrics (steps.go).
//
//   - churn (presenced): a population of -clients connections in -rooms rooms, opened as a Poisson
//     process over -ramp, kept steady over -hold by Poisson arrivals of visits whose sessions have
//     heavy-tailed lengths (lognormal, capped); some visits open several tabs of one user; sessions
//     end by a close frame, by a reset without one (-drop), or by going silent (-vanish: the server
//     must expire them by its heartbeat); chat at -chat-rate; several -url targets share the
//     visits. Loadgen keeps the ground truth and reports join -> every member latency, chat fan-out,
//     counts that disagree with the truth after settling (every member's last online_stats and
//     REST on every target), messages lost or duplicated, and with -database-url the collector's
//     rows against the truth (workload.go, client.go, truth.go, scenario.go, report.go).
//
//   - storm: churn's machinery for -clients users joining one room within -ramp (default 1 s)
//     and staying: counted exactly, the last join known to all, online_stats frames per member.
//
//     JWT_SECRET=... go run ./cmd/loadgen -url http://127.0.0.1:8080 -clients 2000 -rooms 20
//     JWT_SECRET=... go run ./cmd/loadgen -target centrifugo -url http://127.0.0.1:8000 -pid 1234
//     JWT_SECRET=... go run ./cmd/loadgen -scenario churn -url http://127.0.0.1:8080,http://127.0.0.1:8081 -clients 2000 -rooms 20 -hold 2m
//     JWT_SECRET=... go run ./cmd/loadgen -scenario storm -clients 1000
//
// It talks to loopback addresses only, prints a progress line to stderr every second (churn,
// storm), a summary at the end (-json: one JSON object), and stops at -timeout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"presencestats/handlers"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

type config struct {
	target   string
	scenario string
	base     string
	secret   string
	clients  int
	rooms    int
	chat     int
	pid      int
	json     bool
	timeout  time.Duration
	joinMax  time.Duration
	linger   time.Duration
	chatWait time.Duration // steps: pause between the last join and the first chat message
}

// protocol is what differs between the targets: how a member joins a room, what its frames say,
// and how it sends a chat message.
type protocol interface {
	// dial opens m's connection to its room (with a token for user) and sends what joining takes.
	dial(ctx context.Context, room *roomState, m *member, user uuid.UUID) error
	// read handles one WebSocket frame of m; it returns an error that ends the member.
	read(room *roomState, m *member, frame []byte) error
	// chat sends text as a chat message of m.
	chat(room *roomState, m *member, text string) error
}

func run() error {
	var c config
	var sc scenarioConfig
	m := &sc.model
	flag.StringVar(&c.scenario, "scenario", "steps", "steps, churn or storm (churn and storm: presenced only)")
	flag.StringVar(&c.target, "target", "presenced", "server under test: presenced or centrifugo (v6, JSON protocol)")
	flag.StringVar(&c.base, "url", "http://127.0.0.1:8080", "the server's base URL (loopback only); churn and storm: several, comma-separated, share the visits")
	flag.StringVar(&c.secret, "secret", os.Getenv("JWT_SECRET"), "HS256 secret of the tokens: presenced's JWT_SECRET, Centrifugo's client.token.hmac_secret_key (default: $JWT_SECRET)")
	flag.IntVar(&c.clients, "clients", 2000, "steps: clients in total; churn: the population of connections; storm: users joining")
	flag.IntVar(&c.rooms, "rooms", 20, "rooms the clients are spread over (storm: 1)")
	flag.IntVar(&c.chat, "chat", 10, "steps: chat messages per room once every room is full, one at a time (0: none)")
	flag.IntVar(&c.pid, "pid", 0, "steps: the server's process id: RSS and CPU are read from /proc/<pid> (same machine)")
	flag.DurationVar(&c.chatWait, "chat-after", 2*time.Second, "steps: pause between the last join and the first chat message, so that the chat is timed in a steady state (not during either server's after-work of the joins: here the history's writes)")
	flag.DurationVar(&c.linger, "linger", 0, "steps: keep the connections open this long after printing the result (to profile the server)")
	flag.BoolVar(&c.json, "json", false, "print the result as one JSON object")
	flag.DurationVar(&c.timeout, "timeout", 3*time.Minute, "stop after this long (churn, storm: by default ramp + hold + presence-ttl + sweep + 2m)")
	flag.DurationVar(&c.joinMax, "join-timeout", 10*time.Second, "a join or message not known to all within this fails the run (steps) or is late / lost (churn, storm)")
	flag.DurationVar(&m.ramp, "ramp", 30*time.Second, "churn, storm: the population's connections arrive over this (storm: 1s)")
	flag.DurationVar(&m.hold, "hold", time.Minute, "churn, storm: then the steady state lasts this (storm: 2s)")
	flag.Float64Var(&m.rate, "rate", 0, "churn: visits per second in the hold (0: what keeps the population steady, clients / mean stay)")
	flag.DurationVar(&m.length.median, "session-median", 2*time.Minute, "churn: median session length (lognormal); 0: sessions last the run")
	flag.Float64Var(&m.length.sigma, "session-sigma", 1.2, "churn: lognormal shape of session lengths (heavier tail when larger)")
	flag.DurationVar(&m.length.max, "session-max", time.Hour, "churn: longest session")
	flag.Float64Var(&m.tabsP, "tabs-p", 0.1, "churn: share of visits that open several tabs (same user, same room)")
	flag.IntVar(&m.tabsMax, "tabs-max", 4, "churn: most tabs of a visit")
	flag.Float64Var(&m.vanishP, "vanish", 0.05, "churn: share of sessions that end by going silent (the server expires them after PRESENCE_TTL)")
	flag.Float64Var(&m.dropP, "drop", 0.05, "churn: share of sessions that end by a TCP reset without a close frame")
	flag.Float64Var(&sc.chatRate, "chat-rate", 5, "churn: chat messages per second in all, each from a random connection")
	flag.IntVar(&sc.sources, "sources", 1, "loopback source addresses 127.0.0.1..N to dial from (more connections than one address has ports; the server's per-address connect limit)")
	flag.IntVar(&sc.dialConc, "dial-concurrency", 256, "churn, storm: dials in flight at most")
	flag.Uint64Var(&sc.seed, "seed", 1, "churn, storm: random seed of the plan")
	flag.DurationVar(&sc.presenceTTL, "presence-ttl", 60*time.Second, "churn: the server's PRESENCE_TTL (settling waits for silent sessions to expire)")
	flag.DurationVar(&sc.sweep, "sweep", 5*time.Second, "churn: the server's SWEEP_INTERVAL")
	flag.DurationVar(&sc.window, "push-interval", time.Millisecond, "the server's STATS_PUSH_INTERVAL (the frames bound: one per interval plus one)")
	flag.StringVar(&sc.databaseURL, "database-url", "", "churn, storm: the server's DATABASE_URL: check the collector's rows against the truth after the run")
	flag.BoolVar(&sc.quiet, "quiet", false, "churn, storm: no progress line")
	roomList := flag.String("room-ids", "", "churn, storm: these rooms (comma-separated UUIDs) instead of -rooms random ones")
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })

	bases := strings.Split(c.base, ",")
	for _, b := range bases {
		u, err := url.Parse(b)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return fmt.Errorf("-url %q: want http://host:port", b)
		}
		if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("-url must be a loopback address, got %q", u.Hostname())
		}
	}
	if c.secret == "" {
		return errors.New("set -secret or JWT_SECRET to the server's secret")
	}
	if sc.sources < 1 || sc.sources > 250 || sc.dialConc < 1 {
		return errors.New("need 1 <= -sources <= 250 and -dial-concurrency >= 1")
	}
	auth := handlers.NewTokenAuthority(c.secret)
	if c.scenario != "steps" && !set["timeout"] {
		// Long enough for the run, the settling (silent clients expire) and the collector check.
		c.timeout = m.ramp + m.hold + sc.presenceTTL + sc.sweep + 2*time.Minute
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	switch c.scenario {
	case "steps":
		if len(bases) != 1 {
			return errors.New("-scenario steps takes one -url")
		}
		if c.clients < 1 || c.clients > 20000 || c.rooms < 1 || c.rooms > c.clients {
			return errors.New("need 1 <= -rooms <= -clients <= 20000")
		}
		if c.chat < 0 {
			return errors.New("-chat must be 0 or more")
		}
		wsBase := "ws" + strings.TrimPrefix(strings.TrimSuffix(c.base, "/"), "http")
		var proto protocol
		switch c.target {
		case "presenced":
			proto = &presenced{wsBase: wsBase, auth: auth, dialers: sourceDialers(sc.sources)}
		case "centrifugo":
			proto = &centrifugo{wsBase: wsBase, auth: auth}
		default:
			return fmt.Errorf("-target %q: want presenced or centrifugo", c.target)
		}
		return runSteps(ctx, c, proto)
	case "churn", "storm":
		if c.target != "presenced" {
			return fmt.Errorf("-scenario %s speaks presenced's protocol only", c.scenario)
		}
		if c.scenario == "storm" {
			stormDefaults(&sc, set)
		}
		m.clients, m.rooms = c.clients, c.rooms
		if c.scenario == "storm" && !set["rooms"] {
			m.rooms = 1
		}
		if *roomList != "" {
			for _, s := range strings.Split(*roomList, ",") {
				id, err := uuid.Parse(strings.TrimSpace(s))
				if err != nil {
					return fmt.Errorf("-room-ids: %w", err)
				}
				sc.roomIDs = append(sc.roomIDs, id)
			}
			m.rooms = len(sc.roomIDs)
		}
		sc.grace = c.joinMax
		for i := range bases {
			bases[i] = strings.TrimSuffix(bases[i], "/")
		}
		res, err := runScenario(ctx, c.scenario, sc, bases, auth)
		if err != nil {
			return err
		}
		return res.print(os.Stdout, c.json)
	default:
		return fmt.Errorf("-scenario %q: want steps, churn or storm", c.scenario)
	}
}

// stormDefaults: everyone joins within a second and stays; no chat, no departures.
func stormDefaults(sc *scenarioConfig, set map[string]bool) {
	defaults := map[string]func(){
		"ramp":           func() { sc.model.ramp = time.Second },
		"hold":           func() { sc.model.hold = 2 * time.Second },
		"session-median": func() { sc.model.length.median = 0 },
		"chat-rate":      func() { sc.chatRate = 0 },
		"tabs-p":         func() { sc.model.tabsP = 0 },
		"vanish":         func() { sc.model.vanishP = 0 },
		"drop":           func() { sc.model.dropP = 0 },
	}
	for name, f := range defaults {
		if !set[name] {
			f()
		}
	}
}
