package sampler

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// simIf is a simulated interface: its frame rate as a function of the
// time since the start.
type simIf struct {
	ifindex uint32
	pps     func(t time.Duration) float64
}

// sim drives a controller with simulated traffic in steps of 100 ms, as
// the daemon does, and records what the sample stream would have been.
type sim struct {
	t        *testing.T
	c        *Controller
	ifs      []simIf
	noise    float64                     // relative jitter of each step's frame count
	capacity func(time.Duration) float64 // samples/s downstream keeps up with; nil: unlimited
	rng      *rand.Rand

	frames map[uint32]float64
	drops  float64
	steps  []simStep
}

type simStep struct {
	at      time.Duration // end of the step
	pps     float64       // frames per second over every interface
	samples float64       // samples per second the rates in force gave
	dropped float64       // samples per second lost downstream
	rates   map[uint32]uint32
}

const simStep100 = 100 * time.Millisecond

func newSim(t *testing.T, cfg ControllerConfig, start uint32, ifs ...simIf) *sim {
	t.Helper()
	c, err := NewController(cfg, start)
	if err != nil {
		t.Fatal(err)
	}
	return &sim{t: t, c: c, ifs: ifs, rng: rand.New(rand.NewPCG(1, 2)), frames: map[uint32]float64{}}
}

func (s *sim) run(d time.Duration) {
	t0 := time.Unix(1000, 0)
	s.c.Step(s.counters(t0))
	for at := simStep100; at <= d; at += simStep100 {
		st := simStep{at: at, rates: map[uint32]uint32{}}
		for _, f := range s.ifs {
			// The frames of this step, sampled at the rate in force.
			n := f.pps(at-simStep100/2) * simStep100.Seconds()
			n *= 1 + s.noise*(2*s.rng.Float64()-1)
			s.frames[f.ifindex] += n
			st.pps += n / simStep100.Seconds()
			st.samples += n / float64(s.c.Rate(f.ifindex)) / simStep100.Seconds()
		}
		if s.capacity != nil {
			if c := s.capacity(at); st.samples > c {
				st.dropped = st.samples - c
				s.drops += st.dropped * simStep100.Seconds()
			}
		}
		for _, ch := range s.c.Step(s.counters(t0.Add(at))) {
			if ch.From == ch.To {
				s.t.Errorf("at %v: a change of ifindex %d from %d to itself", at, ch.Ifindex, ch.From)
			}
		}
		for _, f := range s.ifs {
			st.rates[f.ifindex] = s.c.Rate(f.ifindex)
		}
		s.steps = append(s.steps, st)
	}
}

func (s *sim) counters(at time.Time) Counters {
	c := Counters{Time: at, Drops: uint64(s.drops)}
	for _, f := range s.ifs {
		c.Interfaces = append(c.Interfaces, InterfaceFrames{Ifindex: f.ifindex, Frames: uint64(s.frames[f.ifindex])})
	}
	return c
}

// checkBudget asserts that from settle after each change of traffic
// (and from settle after the start) the sample stream is within ±tol of
// want, and returns the worst relative deviation.
func (s *sim) checkBudget(want, tol float64, settle time.Duration, changes ...time.Duration) float64 {
	s.t.Helper()
	changes = append(changes, 0)
	worst := 0.0
	for _, st := range s.steps {
		since := time.Duration(math.MaxInt64)
		for _, c := range changes {
			if st.at > c {
				since = min(since, st.at-c)
			}
		}
		if since <= settle {
			continue
		}
		dev := (st.samples - want) / want
		worst = max(worst, math.Abs(dev))
		if math.Abs(dev) > tol {
			s.t.Errorf("at %v (%v after a change): %.0f samples/s at %.0f frames/s, budget %.0f (%+.0f%%)",
				st.at, since, st.samples, st.pps, want, 100*dev)
		}
	}
	return worst
}

// reversals counts how often an interface's rate turned from rising to
// falling or back.
func (s *sim) reversals(ifindex uint32) int {
	n, dir := 0, 0
	prev := s.steps[0].rates[ifindex]
	for _, st := range s.steps[1:] {
		r := st.rates[ifindex]
		d := 0
		switch {
		case r > prev:
			d = 1
		case r < prev:
			d = -1
		}
		if d != 0 && dir != 0 && d != dir {
			n++
		}
		if d != 0 {
			dir = d
		}
		prev = r
	}
	return n
}

func (s *sim) trace(ifindex uint32) string {
	var b strings.Builder
	for _, st := range s.steps {
		fmt.Fprintf(&b, "%v:%d ", st.at, st.rates[ifindex])
	}
	return b.String()
}

func constant(pps float64) func(time.Duration) float64 {
	return func(time.Duration) float64 { return pps }
}

func step(before, after float64, at time.Duration) func(time.Duration) float64 {
	return func(t time.Duration) float64 {
		if t < at {
			return before
		}
		return after
	}
}

const budget = 10000

func TestControllerSteady(t *testing.T) {
	s := newSim(t, ControllerConfig{Limits: Limits{Budget: budget}}, 100, simIf{1, constant(2e6)})
	s.noise = 0.05
	s.run(20 * time.Second)
	worst := s.checkBudget(budget, 0.20, time.Second)
	// ±5% jitter in the traffic; the dead band keeps the rate still.
	if r := s.reversals(1); r > 2 {
		t.Errorf("the rate turned %d times under steady traffic: %s", r, s.trace(1))
	}
	changes := s.c.Stats().Up + s.c.Stats().Down
	t.Logf("worst deviation %.1f%%, %d rate changes, rate %d", 100*worst, changes, s.c.Rate(1))
	if changes > 6 {
		t.Errorf("%d rate changes under steady traffic: %s", changes, s.trace(1))
	}
}

func TestControllerStepUp100x(t *testing.T) {
	at := 5 * time.Second
	s := newSim(t, ControllerConfig{Limits: Limits{Budget: budget}}, 1, simIf{1, step(50e3, 5e6, at)})
	s.noise = 0.05
	s.run(10 * time.Second)
	s.checkBudget(budget, 0.20, time.Second, at)
	// Within a second of the jump (one step, in fact) the rate is up.
	for _, st := range s.steps {
		if st.at == at+simStep100 && st.rates[1] < 400 {
			t.Errorf("100 ms after a 100× jump the rate is 1-in-%d, want about 500", st.rates[1])
		}
		// The step of the jump itself is sampled at the old rate: the
		// ring buffer takes that burst (docs/SAMPLING.md).
		if st.at > at+simStep100 && st.samples > 2*budget {
			t.Errorf("at %v: %.0f samples/s, over twice the budget after the jump", st.at, st.samples)
		}
	}
	if r := s.reversals(1); r > 3 {
		t.Errorf("the rate turned %d times: %s", r, s.trace(1))
	}
}

func TestControllerStepDown(t *testing.T) {
	at := 5 * time.Second
	s := newSim(t, ControllerConfig{Limits: Limits{Budget: budget}}, 1, simIf{1, step(5e6, 50e3, at)})
	s.noise = 0.05
	s.run(10 * time.Second)
	s.checkBudget(budget, 0.20, time.Second, at)
	// Smooth: the rate falls step by step, never below its target, and
	// never rises again.
	prev := uint32(0)
	falls := 0
	for _, st := range s.steps {
		if st.at <= at {
			prev = st.rates[1]
			continue
		}
		r := st.rates[1]
		if r > prev {
			t.Errorf("at %v the rate rose from %d to %d after the traffic fell", st.at, prev, r)
		}
		if r < prev {
			falls++
			if float64(prev)/float64(r) > 3.01 {
				t.Errorf("at %v the rate fell from %d to %d at once", st.at, prev, r)
			}
		}
		if r < 4 {
			t.Errorf("at %v the rate %d undershot its target 5", st.at, r)
		}
		prev = r
	}
	if falls < 3 {
		t.Errorf("the rate fell in %d steps, want a gradual descent: %s", falls, s.trace(1))
	}
}

func TestControllerSawtooth(t *testing.T) {
	// Three teeth: 2 s rising linearly from 20k to 2M frames/s, then
	// back to 20k at once, for 2 s.
	tooth := 4 * time.Second
	saw := func(t time.Duration) float64 {
		p := t % tooth
		if p >= tooth/2 {
			return 20e3
		}
		return 20e3 + (2e6-20e3)*p.Seconds()/(tooth/2).Seconds()
	}
	s := newSim(t, ControllerConfig{Limits: Limits{Budget: budget}}, 1, simIf{1, saw})
	s.run(3 * tooth)
	// Each tooth changes course twice: where the ramp starts and where
	// it falls.
	var kinks []time.Duration
	for i := range 3 {
		kinks = append(kinks, time.Duration(i)*tooth, time.Duration(i)*tooth+tooth/2)
	}
	s.checkBudget(budget, 0.20, time.Second, kinks...)
	// The rate rises with each ramp and falls after each drop: two turns
	// per tooth at most.
	if r := s.reversals(1); r > 2*3 {
		t.Errorf("the rate turned %d times in 3 teeth: %s", r, s.trace(1))
	}
}

func TestControllerBacksOffOnDrops(t *testing.T) {
	// Downstream keeps up with 4,000 samples/s for 10 s, then with
	// everything again.
	limited := 10 * time.Second
	s := newSim(t, ControllerConfig{Limits: Limits{Budget: budget}}, 100, simIf{1, constant(1e6)})
	s.capacity = func(at time.Duration) float64 {
		if at < limited {
			return 4000
		}
		return math.Inf(1)
	}
	s.run(25 * time.Second)
	var lateDrops, lateSamples float64
	for _, st := range s.steps {
		if st.at > 5*time.Second && st.at < limited {
			lateDrops += st.dropped
			lateSamples += st.samples
		}
	}
	// AIMD: the budget is halved on drops and grows back slowly, so after
	// the first seconds few samples are lost.
	if lateDrops > 0.05*lateSamples {
		t.Errorf("from 5 s on, %.0f of %.0f samples were dropped: the controller did not back off",
			lateDrops, lateSamples)
	}
	if st := s.c.Stats(); st.Backoffs == 0 {
		t.Error("no backoff counted")
	}
	// Once downstream keeps up again the budget comes back, in seconds.
	for _, st := range s.steps {
		if st.at > limited+8*time.Second && math.Abs(st.samples-budget) > 0.2*budget {
			t.Errorf("at %v, %v after the drops ended: %.0f samples/s, budget %d", st.at, st.at-limited, st.samples, budget)
		}
	}
	t.Logf("%.0f samples dropped in all; %d backoffs", s.drops, s.c.Stats().Backoffs)
}

func TestControllerGlobalAndPerInterfaceBudgets(t *testing.T) {
	// Three interfaces share 10,000 samples/s; ifindex 3 may take at
	// most 1,000 of them. The others share the rest at one rate.
	cfg := ControllerConfig{
		Limits:     Limits{Budget: budget},
		Interfaces: map[uint32]Limits{3: {Budget: 1000}},
	}
	s := newSim(t, cfg, 1, simIf{1, constant(600e3)}, simIf{2, constant(300e3)}, simIf{3, constant(900e3)})
	s.run(5 * time.Second)
	s.checkBudget(budget, 0.20, time.Second)
	r1, r2, r3 := s.c.Rate(1), s.c.Rate(2), s.c.Rate(3)
	if own := 900e3 / float64(r3); own > 1000*1.1 {
		t.Errorf("ifindex 3 takes %.0f samples/s at 1-in-%d, over its own budget of 1000", own, r3)
	}
	if math.Abs(float64(r1)-float64(r2))/float64(r1) > 0.11 {
		t.Errorf("ifindex 1 and 2 at 1-in-%d and 1-in-%d, want one common rate", r1, r2)
	}
	// 900k/r + 1000 = 10000 → r = 100.
	if r1 < 90 || r1 > 110 {
		t.Errorf("common rate 1-in-%d, want about 100", r1)
	}
}

func TestControllerBounds(t *testing.T) {
	cfg := ControllerConfig{Limits: Limits{Budget: budget, MinRate: 10, MaxRate: 1000}}
	s := newSim(t, cfg, 1, simIf{1, step(1e3, 1e8, 2*time.Second)})
	s.run(4 * time.Second)
	for _, st := range s.steps {
		if r := st.rates[1]; r < 10 || r > 1000 {
			t.Fatalf("at %v the rate is %d, outside 10..1000", st.at, r)
		}
	}
	if r := s.c.Rate(1); r != 1000 {
		t.Errorf("at 100M frames/s the rate is %d, want the bound 1000", r)
	}
}

func TestControllerConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  ControllerConfig
		want string
	}{
		{ControllerConfig{}, "global: budget must be positive"},
		{ControllerConfig{Limits: Limits{Budget: -1}}, "global: budget -1"},
		{ControllerConfig{Limits: Limits{Budget: 1, MinRate: 10, MaxRate: 5}}, "min rate 10 above max rate 5"},
		{ControllerConfig{Limits: Limits{Budget: 1}, Interfaces: map[uint32]Limits{7: {Budget: math.NaN()}}}, "ifindex 7: budget NaN"},
	} {
		_, err := NewController(c.cfg, 1)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.cfg, err, c.want)
		}
	}
}

func BenchmarkControllerStep(b *testing.B) {
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("interfaces=%d", n), func(b *testing.B) {
			c, _ := NewController(ControllerConfig{Limits: Limits{Budget: budget}}, 1)
			cs := Counters{Time: time.Unix(0, 0)}
			for i := range n {
				cs.Interfaces = append(cs.Interfaces, InterfaceFrames{Ifindex: uint32(i + 1)})
			}
			b.ReportAllocs()
			for b.Loop() {
				cs.Time = cs.Time.Add(simStep100)
				for i := range cs.Interfaces {
					cs.Interfaces[i].Frames += 100000 + uint64(i)
				}
				c.Step(cs)
			}
		})
	}
}
