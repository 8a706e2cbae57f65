// Tests of package main are in package main: a command cannot be imported by an _test package.
package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func testRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed+1)) }

func TestSessionLengthDraw(t *testing.T) {
	d := sessionLength{median: time.Minute, sigma: 1.2, max: time.Hour}
	rng := testRNG(1)
	xs := make([]time.Duration, 100000)
	capped := 0
	for i := range xs {
		xs[i] = d.draw(rng)
		if xs[i] > d.max || xs[i] <= 0 {
			t.Fatalf("draw %s outside (0, %s]", xs[i], d.max)
		}
		if xs[i] == d.max {
			capped++
		}
	}
	slices.Sort(xs)
	if got := xs[len(xs)/2]; math.Abs(got.Seconds()-60)/60 > 0.03 {
		t.Errorf("median %s, want about 1m", got)
	}
	// P(L > 1 h) for lognormal(ln 60 s, 1.2): 1 - Φ(ln 60 / 1.2) ≈ 0.0003.
	if want := 0.5 * math.Erfc(math.Log(60)/1.2/math.Sqrt2) * float64(len(xs)); math.Abs(float64(capped)-want) > 5*math.Sqrt(want)+3 {
		t.Errorf("%d draws at the cap, want about %.0f", capped, want)
	}
}

func TestSessionLengthMeanAndResidual(t *testing.T) {
	d := sessionLength{median: 30 * time.Second, sigma: 1.0, max: 10 * time.Minute}
	rng := testRNG(2)
	const n = 200000
	var sum, sum2 float64
	for range n {
		x := d.draw(rng).Seconds()
		sum += x
		sum2 += x * x
	}
	mc := sum / n
	if got := d.mean().Seconds(); math.Abs(got-mc)/mc > 0.02 {
		t.Errorf("mean() = %.2f s, Monte Carlo %.2f s", got, mc)
	}
	// The forward recurrence time of a renewal process has mean E[L²] / (2 E[L]).
	want := sum2 / n / (2 * mc)
	var rs float64
	for range n {
		rs += d.residual(rng).Seconds()
	}
	if got := rs / n; math.Abs(got-want)/want > 0.03 {
		t.Errorf("residual mean %.2f s, want %.2f s", got, want)
	}
}

func TestPoissonTimes(t *testing.T) {
	ts := poissonTimes(testRNG(3), 50, time.Second, 101*time.Second)
	if n := float64(len(ts)); math.Abs(n-5000) > 5*math.Sqrt(5000) {
		t.Errorf("%d arrivals in 100 s at 50/s", len(ts))
	}
	if !slices.IsSorted(ts) || ts[0] < time.Second || ts[len(ts)-1] >= 101*time.Second {
		t.Error("arrivals not sorted within [from, to)")
	}
	if got := poissonTimes(testRNG(3), 0, 0, time.Hour); len(got) != 0 {
		t.Errorf("rate 0: %d arrivals", len(got))
	}
}

func testModel() model {
	return model{clients: 3000, rooms: 30, ramp: 20 * time.Second, hold: 2 * time.Minute,
		length: sessionLength{median: time.Minute, sigma: 1.2, max: time.Hour},
		tabsP:  0.2, tabsMax: 4, vanishP: 0.1, dropP: 0.05, targets: 3}
}

// live counts the sessions open at instant t of the plan.
func live(plan []session, t, end time.Duration) int {
	n := 0
	for _, s := range plan {
		stop := s.at + s.length
		if s.end == endStay {
			stop = end + 1
		}
		if s.at <= t && t < stop {
			n++
		}
	}
	return n
}

func TestPlanSteadyPopulation(t *testing.T) {
	m := testModel()
	plan, err := m.plan(testRNG(4))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(plan, func(a, b session) int { return int(a.at - b.at) }) {
		t.Fatal("plan not sorted by start")
	}
	end := m.ramp + m.hold
	// Every ramp session lasts past the ramp's end; the later tabs of the ramp's last visits open
	// up to 150 ms after it, and a few sessions with a very short residual are gone by then.
	atRampEnd := live(plan, m.ramp+200*time.Millisecond, end)
	if math.Abs(float64(atRampEnd-m.clients)) > 0.01*float64(m.clients) {
		t.Errorf("%d live at the ramp's end, want %d", atRampEnd, m.clients)
	}
	// The hold keeps it steady: Little's law, within a few percent (a random walk around it).
	for _, at := range []time.Duration{m.ramp + m.hold/2, end - time.Second} {
		if n := live(plan, at, end); math.Abs(float64(n-m.clients))/float64(m.clients) > 0.1 {
			t.Errorf("%d live at %s, want about %d", n, at, m.clients)
		}
	}
}

func TestPlanVisits(t *testing.T) {
	m := testModel()
	plan, err := m.plan(testRNG(5))
	if err != nil {
		t.Fatal(err)
	}
	type visit struct {
		room, target, tabs int
	}
	visits := map[[16]byte]*visit{}
	ends := map[endMode]int{}
	for _, s := range plan {
		v := visits[s.user]
		if v == nil {
			v = &visit{room: s.room, target: s.target}
			visits[s.user] = v
		}
		if v.room != s.room || v.target != s.target {
			t.Fatalf("tabs of user %s in rooms %d, %d or targets %d, %d", s.user, v.room, s.room, v.target, s.target)
		}
		v.tabs++
		ends[s.end]++
		if s.end == endStay && s.length != 0 || s.end != endStay && (s.length <= 0 || s.at+s.length >= m.ramp+m.hold) {
			t.Fatalf("session %+v: its end does not fit the run", s)
		}
		if s.room < 0 || s.room >= m.rooms || s.target < 0 || s.target >= m.targets {
			t.Fatalf("session %+v out of range", s)
		}
	}
	multi := 0
	for _, v := range visits {
		if v.tabs > m.tabsMax {
			t.Fatalf("a visit with %d tabs", v.tabs)
		}
		if v.tabs > 1 {
			multi++
		}
	}
	if share := float64(multi) / float64(len(visits)); math.Abs(share-m.tabsP) > 0.03 {
		t.Errorf("%.3f of visits with several tabs, want about %.2f", share, m.tabsP)
	}
	ending := ends[endClose] + ends[endDrop] + ends[endVanish]
	if share := float64(ends[endVanish]) / float64(ending); math.Abs(share-m.vanishP) > 0.02 {
		t.Errorf("%.3f of the ending sessions vanish, want about %.2f", share, m.vanishP)
	}
	if share := float64(ends[endDrop]) / float64(ending); math.Abs(share-m.dropP) > 0.02 {
		t.Errorf("%.3f of the ending sessions drop, want about %.2f", share, m.dropP)
	}
	again, _ := m.plan(testRNG(5))
	if !slices.Equal(plan, again) {
		t.Error("the same seed made another plan")
	}
}

func TestPlanStorm(t *testing.T) {
	m := model{clients: 1000, rooms: 1, ramp: time.Second, hold: 2 * time.Second, tabsMax: 1}
	plan, err := m.plan(testRNG(6))
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != 1000 {
		t.Fatalf("%d sessions, want 1000", len(plan))
	}
	for _, s := range plan {
		if s.end != endStay || s.at >= time.Second || s.room != 0 {
			t.Fatalf("session %+v: want every one joining room 0 within the second and staying", s)
		}
	}
}

func TestModelValidate(t *testing.T) {
	for name, m := range map[string]model{
		"no clients":    {rooms: 1, tabsMax: 1},
		"shares > 1":    {clients: 1, rooms: 1, tabsMax: 1, vanishP: 0.6, dropP: 0.6},
		"tabs without":  {clients: 1, rooms: 1, tabsP: 0.5, tabsMax: 1},
		"cap < median":  {clients: 1, rooms: 1, tabsMax: 1, length: sessionLength{median: time.Hour, sigma: 1, max: time.Minute}},
		"negative rate": {clients: 1, rooms: 1, tabsMax: 1, rate: -1},
	} {
		if err := m.validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := testModel().validate(); err != nil {
		t.Errorf("a good model: %v", err)
	}
}
