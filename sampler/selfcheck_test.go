package sampler

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/flow"
)

// TestSelfCheck samples simulated traffic on two interfaces at changing
// rates, loses part of one interface's samples, and checks what the
// self-check reports against the truth.
func TestSelfCheck(t *testing.T) {
	const seeds = 40
	within := 0
	for seed := range uint64(seeds) {
		if selfCheckRun(t, seed) {
			within++
		}
	}
	// A 95% interval: about 38 of 40; fewer than 34 is very unlikely
	// (binomial, p < 0.01) unless the bound is wrong.
	t.Logf("the true count was within the bound %d times of %d", within, seeds)
	if within < 34 {
		t.Errorf("the true count was within the reported bound only %d times of %d", within, seeds)
	}
}

// selfCheckRun runs one simulation and reports whether ifindex 2's
// relative error was within its bound.
func selfCheckRun(t *testing.T, seed uint64) (inBound bool) {
	c := NewSelfCheck(10 * time.Second)
	rng := rand.New(rand.NewPCG(seed, 4))
	exact := map[uint32]uint64{}
	t0 := time.Unix(100, 0)
	var last []CheckResult
	for sec := range 25 {
		var batch []flow.Sample
		for _, ifindex := range []uint32{2, 3} {
			rate := uint32(10)
			if sec%7 > 3 {
				rate = 100
			}
			for range 20000 {
				exact[ifindex]++
				if rng.Uint32N(rate) != 0 {
					continue
				}
				// From second 15 on, ifindex 3 loses every other sample.
				if ifindex == 3 && sec >= 15 && rng.IntN(2) == 0 {
					continue
				}
				batch = append(batch, flow.Sample{Ifindex: ifindex, SamplingRate: rate, Segments: 1})
			}
		}
		c.Observe(batch)
		last = c.Check(t0.Add(time.Duration(sec+1)*time.Second), exact)
	}
	if len(last) != 2 {
		t.Fatalf("%d results, want 2", len(last))
	}
	for _, r := range last {
		if r.Exact != 10*20000 {
			t.Errorf("ifindex %d: window holds %d exact packets, want the last 10 s: 200000", r.Ifindex, r.Exact)
		}
		if r.Bound <= 0 || r.Bound > 0.05 {
			t.Errorf("ifindex %d: bound %v, want a few percent", r.Ifindex, r.Bound)
		}
		switch r.Ifindex {
		case 2:
			inBound = math.Abs(r.RelError) <= r.Bound
			if math.Abs(r.RelError) > 2*r.Bound {
				t.Errorf("ifindex 2: relative error %.4f, over twice its bound %.4f", r.RelError, r.Bound)
			}
		case 3:
			// Half the samples lost: the estimate is half the truth.
			if r.RelError > -0.4 || r.RelError < -0.6 {
				t.Errorf("ifindex 3: relative error %.3f, want about -0.5 (half the samples lost)", r.RelError)
			}
		}
	}
	// An interface that goes away is forgotten.
	delete(exact, 3)
	if got := c.Check(t0.Add(26*time.Second), exact); len(got) != 1 || got[0].Ifindex != 2 {
		t.Errorf("after ifindex 3 went away: %+v", got)
	}
	return inBound
}
