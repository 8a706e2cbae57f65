package main

// The workload model of the churn and storm scenarios, pure: who arrives when, in which room, with
// how many tabs, for how long, and how each session ends. A plan is made up front from a seeded
// random source, so a run can be repeated and the model tested without a server.

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/google/uuid"
)

// endMode is how a session ends.
type endMode int

const (
	endClose  endMode = iota // a close frame, then the TCP connection is closed
	endDrop                  // the TCP connection is reset without a close frame
	endVanish                // the client goes silent with its socket open: the server must expire it (PRESENCE_TTL)
	endStay                  // it stays until the run ends (then closed normally)
)

func (e endMode) String() string {
	return [...]string{"close", "drop", "vanish", "stay"}[e]
}

// sessionLength is a heavy-tailed distribution of session lengths: lognormal with the given
// median and shape sigma, capped at max (a browser tab closed at the end of a working day). A
// zero median means sessions last the whole run.
type sessionLength struct {
	median time.Duration
	sigma  float64
	max    time.Duration
}

func (d sessionLength) forever() bool { return d.median <= 0 }

// draw returns one session length.
func (d sessionLength) draw(rng *rand.Rand) time.Duration {
	v := time.Duration(float64(d.median) * math.Exp(d.sigma*rng.NormFloat64()))
	return min(max(v, time.Millisecond), d.max)
}

// mean is the expected length of the capped distribution, by numerical integration of
// P(L > x) over [0, max] (E[min(L, max)] = ∫ P(L > x) dx).
func (d sessionLength) mean() time.Duration {
	const steps = 20000
	h := float64(d.max) / steps
	sum := 0.0
	for i := range steps {
		x := (float64(i) + 0.5) * h
		z := math.Log(x/float64(d.median)) / d.sigma
		sum += 0.5 * math.Erfc(z/math.Sqrt2) * h // P(L > x)
	}
	return time.Duration(sum)
}

// residual returns the time left of a session that is in progress at a random instant of a
// steady state (the forward recurrence time): a length drawn with probability proportional to
// itself (rejection against the cap), times a uniform fraction. Sessions opened during the ramp
// get these, so the population does not fall off when the hold begins, as it would if they all
// started fresh together.
func (d sessionLength) residual(rng *rand.Rand) time.Duration {
	for {
		l := d.draw(rng)
		if rng.Float64()*float64(d.max) <= float64(l) {
			return time.Duration(rng.Float64() * float64(l))
		}
	}
}

// model is a churn workload: a population of about clients connections in rooms, opened as a
// Poisson process over the ramp, then kept in a steady state for the hold by Poisson arrivals of
// visits at rate (visits per second), each with one tab or, with probability tabsP, 2..tabsMax
// tabs of the same user in the same room, each tab a session of its own length.
type model struct {
	clients int
	rooms   int
	ramp    time.Duration
	hold    time.Duration
	rate    float64 // visits per second in the hold; 0: clients / (mean length × mean tabs) (Little's law)
	length  sessionLength
	tabsP   float64
	tabsMax int
	vanishP float64 // share of sessions that end by going silent
	dropP   float64 // share that end by a reset without a close frame
	targets int     // instances: each visit goes to one, chosen at random
}

func (m model) validate() error {
	var errs []error
	if m.clients < 1 || m.rooms < 1 {
		errs = append(errs, errors.New("need -clients >= 1 and -rooms >= 1"))
	}
	if m.ramp < 0 || m.hold < 0 {
		errs = append(errs, errors.New("-ramp and -hold must not be negative"))
	}
	if !m.length.forever() && (m.length.sigma <= 0 || m.length.max < m.length.median) {
		errs = append(errs, errors.New("need -session-sigma > 0 and -session-max >= -session-median"))
	}
	if m.tabsP < 0 || m.tabsP > 1 || m.tabsMax < 1 || (m.tabsP > 0 && m.tabsMax < 2) {
		errs = append(errs, errors.New("need 0 <= -tabs-p <= 1 and -tabs-max >= 2 when -tabs-p > 0"))
	}
	if m.vanishP < 0 || m.dropP < 0 || m.vanishP+m.dropP > 1 {
		errs = append(errs, errors.New("need -vanish, -drop >= 0 and -vanish + -drop <= 1"))
	}
	if m.rate < 0 {
		errs = append(errs, errors.New("-rate must not be negative"))
	}
	return errors.Join(errs...)
}

// meanTabs is the expected number of tabs of a visit.
func (m model) meanTabs() float64 {
	if m.tabsP == 0 {
		return 1
	}
	return 1 + m.tabsP*(float64(m.tabsMax)/2) // 2..tabsMax uniform: mean (tabsMax+2)/2, one more than one
}

// holdRate is the visits per second of the hold: the given rate, or the one that keeps the
// population at clients (arrivals × mean stay = population).
func (m model) holdRate() float64 {
	if m.rate > 0 || m.length.forever() {
		return m.rate
	}
	return float64(m.clients) / (m.length.mean().Seconds() * m.meanTabs())
}

// session is one planned connection.
type session struct {
	at     time.Duration // from the start of the run
	room   int
	user   uuid.UUID
	tab    int // 0 for a visit's first tab
	target int
	length time.Duration // 0 with end == endStay
	end    endMode
}

// plan returns every session of the run, by start time. Ramp sessions: clients visits' worth of
// connections over the ramp, Poisson (uniform order statistics), each lasting to the ramp's end
// and then a residual length, so the hold starts in the steady state with clients connections; hold
// sessions: Poisson visits at holdRate with fresh lengths. A session whose end falls after the
// run's end (ramp + hold) stays to the end.
func (m model) plan(rng *rand.Rand) ([]session, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	total := m.ramp + m.hold
	var out []session
	visit := func(at time.Duration, ramp bool) int {
		user := newUUID(rng)
		room := rng.IntN(m.rooms)
		target := 0
		if m.targets > 1 {
			target = rng.IntN(m.targets)
		}
		tabs := 1
		if m.tabsP > 0 && rng.Float64() < m.tabsP {
			tabs = 2 + rng.IntN(m.tabsMax-1)
		}
		for tab := range tabs {
			s := session{at: at + time.Duration(tab)*50*time.Millisecond, room: room, user: user, tab: tab, target: target, end: endStay}
			if !m.length.forever() {
				if ramp { // in progress at the ramp's end, with the steady state's time left
					s.length = max(m.ramp-s.at, 0) + m.length.residual(rng)
				} else {
					s.length = m.length.draw(rng)
				}
				if s.at+s.length < total {
					switch u := rng.Float64(); {
					case u < m.vanishP:
						s.end = endVanish
					case u < m.vanishP+m.dropP:
						s.end = endDrop
					default:
						s.end = endClose
					}
				}
			}
			if s.end == endStay {
				s.length = 0
			}
			out = append(out, s)
		}
		return tabs
	}
	// The ramp: the population's connections arrive at uniformly random instants of the ramp (a
	// Poisson process conditioned on its count); a visit with tabs counts for all of them.
	for n := 0; n < m.clients; {
		n += visit(time.Duration(rng.Float64()*float64(m.ramp)), true)
	}
	if rate := m.holdRate(); rate > 0 {
		for t := m.ramp + exp(rng, rate); t < total; t += exp(rng, rate) {
			visit(t, false)
		}
	}
	slices.SortStableFunc(out, func(a, b session) int { return int(a.at - b.at) })
	if len(out) > maxConnections {
		return nil, fmt.Errorf("the plan opens %d connections, more than %d", len(out), maxConnections)
	}
	return out, nil
}

// maxConnections bounds the sessions of one run (open at once or one after another).
const maxConnections = 200000

// exp is an exponential gap of a Poisson process of rate per second.
func exp(rng *rand.Rand, rate float64) time.Duration {
	return time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
}

// poissonTimes returns the instants of a Poisson process of rate per second over [from, to).
func poissonTimes(rng *rand.Rand, rate float64, from, to time.Duration) []time.Duration {
	var out []time.Duration
	if rate <= 0 {
		return out
	}
	for t := from + exp(rng, rate); t < to; t += exp(rng, rate) {
		out = append(out, t)
	}
	return out
}

func newUUID(rng *rand.Rand) uuid.UUID {
	var u uuid.UUID
	for i := range u {
		u[i] = byte(rng.UintN(256))
	}
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return u
}
