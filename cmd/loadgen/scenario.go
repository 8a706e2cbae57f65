package main

// The churn and storm scenarios from start to end: plan, ramp and hold, settle, check the counts
// against the truth (every member's last online_stats, and REST on every target), close, and
// check the collector's rows against the truth.

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"presencestats"
	"presencestats/handlers"
)

//go:embed events.sql
var eventsSQL string

// scenarioConfig is what the churn and storm scenarios take besides the model.
type scenarioConfig struct {
	model       model
	chatRate    float64 // messages per second in all, from random live members
	sources     int     // loopback source addresses 127.0.0.1..n
	dialConc    int     // dials in flight at most
	seed        uint64
	presenceTTL time.Duration // the server's PRESENCE_TTL and SWEEP_INTERVAL: silent sessions are
	sweep       time.Duration // expired by then, and settling waits for it
	window      time.Duration // the server's STATS_PUSH_INTERVAL
	grace       time.Duration // a join or message not known to all within this is late / lost
	databaseURL string        // when set, the collector's rows are checked against the truth
	quiet       bool          // no progress line
	roomIDs     []uuid.UUID   // the rooms; none: model.rooms random ones
}

func runScenario(ctx context.Context, name string, sc scenarioConfig, bases []string, auth *handlers.TokenAuthority) (*scenarioResult, error) {
	rng := rand.New(rand.NewPCG(sc.seed, sc.seed^0x9e3779b97f4a7c15))
	roomIDs := make([]uuid.UUID, sc.model.rooms)
	roomStr := make([]string, len(roomIDs))
	for i := range roomIDs {
		roomIDs[i] = uuid.New() // not from the seed: rooms of one run are never another's
		if i < len(sc.roomIDs) {
			roomIDs[i] = sc.roomIDs[i]
		}
		roomStr[i] = roomIDs[i].String()
	}
	sc.model.targets = len(bases)
	plan, err := sc.model.plan(rng)
	if err != nil {
		return nil, err
	}
	total := sc.model.ramp + sc.model.hold
	chatTimes := poissonTimes(rng, sc.chatRate, 0, total)
	led := newLedger(roomIDs, sc.grace, time.Now)
	cl := &client{auth: auth, dialers: sourceDialers(sc.sources), dialSem: make(chan struct{}, sc.dialConc),
		ledger: led, rooms: roomStr, open: map[*conn]*wsClient{}}
	for _, b := range bases {
		cl.wsBases = append(cl.wsBases, "ws"+b[len("http"):])
	}
	res := &scenarioResult{Scenario: name, Targets: len(bases), Population: sc.model.clients, Rooms: sc.model.rooms,
		Sessions: len(plan), HoldRate: sc.model.holdRate(), ChatRate: sc.chatRate, Sources: sc.sources,
		RampS: sc.model.ramp.Seconds(), HoldS: sc.model.hold.Seconds(), WindowMS: ms(sc.window)}
	for _, s := range plan {
		res.Planned[s.end]++
	}

	runCtx, stopSessions := context.WithCancel(ctx)
	defer stopSessions()
	cpu0, _ := readProc(os.Getpid())
	servers := newServerSampler(bases)
	start := time.Now()
	stopSampler := servers.run(ctx, start.Add(sc.model.ramp), start.Add(total))
	stopProgress := progress(led, start, sc, sc.quiet)
	go func() { // one goroutine per session from its start on, not for the whole plan
		for i, s := range plan {
			if !sleepUntil(runCtx, start.Add(s.at)) {
				return
			}
			go cl.runSession(runCtx, start, s, i)
		}
	}()
	go cl.chat(runCtx, start, chatTimes, rand.New(rand.NewPCG(sc.seed+1, 7)))
	sleepUntil(ctx, start.Add(total))
	stopSessions() // sessions not yet ended stay until closeAll; no more chat
	if ctx.Err() != nil {
		stopProgress()
		cl.closeAll()
		return nil, ctx.Err()
	}

	// Settle: every join known to all (or late), every silent session expired by the server, and
	// the last coalesced pushes out.
	deadline := time.Now().Add(sc.grace)
	for led.pendingJoins() > 0 && time.Now().Before(deadline) {
		sleepUntil(ctx, time.Now().Add(20*time.Millisecond))
	}
	cl.mu.Lock()
	lastDial, vanished := cl.lastDial, cl.vanished
	cl.mu.Unlock()
	settle := time.Now().Add(2*sc.window + 500*time.Millisecond)
	if !vanished.IsZero() {
		settle = maxTime(settle, vanished.Add(sc.presenceTTL+sc.sweep+2*sc.window+time.Second))
	}
	sleepUntil(ctx, settle)
	stopProgress()
	stopSampler()
	if cpu1, err := readProc(os.Getpid()); err == nil {
		res.LoadgenCPUS = (cpu1.cpu - cpu0.cpu).Seconds()
	}
	servers.fill(res)
	led.settle()
	res.fill(led)
	res.LateJoins = led.pendingJoins()
	led.mu.Lock()
	lastDone := led.lastDone
	led.mu.Unlock()
	if !lastDial.IsZero() && res.LateJoins == 0 && lastDone.After(lastDial) {
		res.LastJoinToAllMS = ms(lastDone.Sub(lastDial))
	}
	res.RunS = time.Since(start).Seconds()
	res.WrongMembers, res.MaxFrames = led.disagreements()
	// A member gets its snapshot, then at most one online_stats per window (and one more at the
	// window's end) while the room changes: from the start to the last join known to all.
	if span := lastDone.Sub(start); span > 0 && sc.window > 0 {
		res.FramesBound = 2 + int(math.Ceil(float64(span)/float64(sc.window)))
	}
	for t, b := range bases {
		wrong, err := restDisagreements(ctx, b, auth, led, roomIDs)
		if err != nil {
			return nil, fmt.Errorf("target %d: %w", t, err)
		}
		res.WrongREST += wrong
	}
	closed := time.Now()
	cl.closeAll()
	if sc.databaseURL != "" {
		if err := res.checkCollector(ctx, sc.databaseURL, roomIDs, led, start, closed); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// restDisagreements asks one target's GET /api/rooms/stats for every room (100 at a time) and
// counts the rooms whose counts differ from the truth.
func restDisagreements(ctx context.Context, base string, auth *handlers.TokenAuthority, led *ledger, rooms []uuid.UUID) (int, error) {
	tok, err := auth.Mint(uuid.New(), handlers.RoleUser, time.Hour)
	if err != nil {
		return 0, err
	}
	wrong := 0
	for from := 0; from < len(rooms); from += handlers.MaxStatsRooms {
		q := url.Values{}
		idx := map[uuid.UUID]int{}
		for i := from; i < min(len(rooms), from+handlers.MaxStatsRooms); i++ {
			q.Add("room_id", rooms[i].String())
			idx[rooms[i]] = i
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/rooms/stats?"+q.Encode(), nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, fmt.Errorf("GET /api/rooms/stats: %w", err)
		}
		var body struct {
			Rooms []presencestats.OnlineStats `json:"rooms"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("GET /api/rooms/stats: status %d: %v", resp.StatusCode, err)
		}
		for _, st := range body.Rooms {
			online, sessions := led.truth(idx[st.RoomID])
			if st.OnlineCount != online || st.SessionCount != sessions {
				wrong++
			}
		}
	}
	return wrong, nil
}

// checkCollector waits until the database holds every connected and disconnected event of the
// run's rooms (all sessions are closed by now) or a minute passed, and records what it found and
// the collector's sustained rate: the events over the time from the run's start to the last one
// written.
func (res *scenarioResult) checkCollector(ctx context.Context, dsn string, rooms []uuid.UUID, led *ledger, start, closed time.Time) error {
	db, err := pgxpool.New(ctx, dsn) // a pool, for the DSN's pool_ settings
	if err != nil {
		return fmt.Errorf("collector check: %w", err)
	}
	defer db.Close()
	c := led.counters()
	res.EventsExpected = 2 * c.connected
	deadline := time.Now().Add(time.Minute)
	for {
		var connected, disconnected, timeouts int
		if err := db.QueryRow(ctx, eventsSQL, rooms).Scan(&connected, &disconnected, &timeouts); err != nil {
			return fmt.Errorf("collector check: %w", err)
		}
		res.EventsConnected, res.EventsDisconnected, res.EventsTimeout = connected, disconnected, timeouts
		if 2*min(connected, disconnected) >= res.EventsExpected || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		sleepUntil(ctx, time.Now().Add(200*time.Millisecond))
	}
	done := time.Now()
	res.CollectorLagS = done.Sub(closed).Seconds()
	res.EventsPerS = float64(res.EventsConnected+res.EventsDisconnected) / done.Sub(start).Seconds()
	return nil
}

// progress prints a line to stderr every second until the returned stop is called.
func progress(led *ledger, start time.Time, sc scenarioConfig, quiet bool) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		if quiet {
			<-done
			return
		}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		seen := 0
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			led.mu.Lock()
			recent := slices.Clone(led.joinLat[seen:])
			seen = len(led.joinLat)
			led.mu.Unlock()
			c := led.counters()
			phase := "ramp"
			switch el := time.Since(start); {
			case el > sc.model.ramp+sc.model.hold:
				phase = "settle"
			case el > sc.model.ramp:
				phase = "hold"
			}
			p50, p99, _ := percentiles(recent)
			fmt.Fprintf(os.Stderr, "%4.0fs %-6s live %6d  joins %6d (+%4d, p50 %5.0f p99 %5.0f ms, pending %4d)  ended %5d  chat %5d lost %d dup %d  errors %d\n",
				time.Since(start).Seconds(), phase, c.live, c.connected, len(recent), ms(p50), ms(p99), c.pendingJoins,
				c.ended[endClose]+c.ended[endDrop]+c.ended[endVanish], c.sent, c.lost, c.dups, c.errors)
		}
	}()
	return func() {
		select {
		case <-done:
		default:
			close(done)
		}
		<-finished
	}
}
