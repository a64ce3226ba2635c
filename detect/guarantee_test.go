package detect

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/vigil-sensor/vigil/flow"
)

func TestPoissonRateFor(t *testing.T) {
	for _, k := range []float64{1, 5, 20, 500} {
		lam := poissonRateFor(k, 0.95)
		if p := poissonAtLeast(k, lam); math.Abs(p-0.95) > 1e-6 {
			t.Errorf("k=%v: P(X>=k) at λ=%v is %v, want 0.95", k, lam, p)
		}
	}
	// P(X >= 1) = 1 - e^-λ: λ = -ln 0.05 = 2.9957.
	if lam := poissonRateFor(1, 0.95); math.Abs(lam-2.99573) > 1e-4 {
		t.Errorf("k=1: λ=%v, want 2.9957", lam)
	}
}

// TestGuaranteeHolds replays, many times over, a flood at the rate a
// rule states at 1 in N through the engine with random sampling, and
// checks that it is detected within the window at least 95% of the
// time (less the sampling error of the trials), and that a flood at
// 70% of it is detected less often: the guarantee is the floor, not a
// loose bound.
func TestGuaranteeHolds(t *testing.T) {
	if testing.Short() {
		t.Skip("many trials")
	}
	src := `
rules:
  - name: flood
    filter: tcp && syn && !ack
    group_by: [dst_addr]
    window: 1s
    slots: 20
    measures:
      pps: {rate: packets}
    thresholds:
      pps: 5000
    min_samples: 20
`
	set := engLoad(t, src, Options{})
	for _, n := range []uint64{100, 1000} {
		g := set.Guarantees(float64(n))["flood"]
		if len(g) != 1 {
			t.Fatalf("1:%d: guarantees %v, want one", n, g)
		}
		rate := g[0].MinRate
		detected := func(pps float64, seed uint64) float64 {
			rng := rand.New(rand.NewPCG(seed, n))
			const trials = 400
			hits := 0
			for trial := range trials {
				rec := &engRecorder{}
				e := NewEngine(set, EngineConfig{}, rec.emit)
				// Poisson arrivals of samples at pps/n for one window.
				at := engMS(int64(trial) * 10_000)
				end := at + int64(1e9)
				var evs []Event
				for tm := at + int64(rng.ExpFloat64()/(pps/float64(n))*1e9); tm < end; tm += int64(rng.ExpFloat64() / (pps / float64(n)) * 1e9) {
					evs = append(evs, engSyn(tm, "192.0.2.1", "10.0.0.1", n))
				}
				e.Events(SourceSamples, evs)
				if len(rec.of("flood", flow.AlertStart)) > 0 {
					hits++
				}
			}
			return float64(hits) / trials
		}
		// 400 trials: the standard error of a 95% share is 1.1%.
		if p := detected(rate, 1); p < 0.95-3*0.011 {
			t.Errorf("1:%d: at the stated %.0f pps detected %.1f%% of the time, want >= 95%%", n, rate, 100*p)
		}
		if p := detected(0.7*rate, 2); p >= 0.95 {
			t.Errorf("1:%d: at 70%% of the stated %.0f pps detected %.1f%%: the guarantee is loose", n, rate, 100*p)
		}
	}
}

// TestPackGuarantees prints the pack's guarantees at 1, 100 and 1000
// (docs/DETECTION.md keeps the table) and checks their shape: rates
// grow with N and are never under the threshold.
func TestPackGuarantees(t *testing.T) {
	set, err := Load(Options{Builtin: true})
	if err != nil {
		t.Fatal(err)
	}
	prev := map[string]float64{}
	for _, n := range []float64{1, 100, 1000} {
		gs := set.Guarantees(n)
		for _, name := range set.Names() {
			for _, g := range gs[name] {
				id := name + "." + g.Measure
				t.Logf("%s 1:%v: %s >= %v over %vs: %.0f %s; burst %vs: %.0f", name, n, g.Measure, g.Threshold, g.Window, g.MinRate, g.Unit, g.BurstWindow, g.BurstMinRate)
				thr := g.Threshold
				if g.Unit == "packets/s" && g.Threshold > 0 && g.Window > 0 && g.MinRate < thr*0.999 && !isSum(set, name, g.Measure) {
					t.Errorf("%s at 1:%v: min rate %.0f under the threshold %v", id, n, g.MinRate, thr)
				}
				if g.MinRate < prev[id] {
					t.Errorf("%s: min rate %.0f at 1:%v under %.0f at a lower N", id, g.MinRate, n, prev[id])
				}
				prev[id] = g.MinRate
			}
		}
	}
	for _, want := range []string{"syn_flood.pps", "udp_reflection.pps", "brute_force_attempts.attempts"} {
		if _, ok := prev[want]; !ok {
			t.Errorf("no guarantee for %s", want)
		}
	}
}

func isSum(set *RuleSet, rule, measure string) bool {
	r := set.rule(rule)
	for i, n := range r.names {
		if n == measure {
			return r.measures[i].kind == mSum
		}
	}
	return false
}
