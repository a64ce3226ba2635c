package detect

import (
	"math"
)

// Guarantee is what a rule promises at a sampling rate: the smallest
// attack rate that crosses one of its thresholds within its window with
// at least 95% probability, from the sampling noise of the estimator
// (each packet sampled independently with probability 1/N, so the
// samples of a window are Poisson). A burst guarantee is the same for an
// attack lasting at least the rule's burst window, judged over it.
// Other conditions of the rule (its when, distinct counts, all
// thresholds) must hold too: the guarantee is the floor the sampling
// rate sets, not a promise that any traffic at that rate alerts.
type Guarantee struct {
	Measure      string  `json:"measure"`
	Threshold    float64 `json:"threshold"`
	Unit         string  `json:"unit"` // of MinRate: "packets/s", "events/s"
	SamplingRate float64 `json:"sampling_rate"`
	Window       float64 `json:"window_seconds"`
	// MinRate is the smallest sustained rate detected within Window with
	// 95% probability.
	MinRate float64 `json:"min_rate"`
	// BurstWindow and BurstMinRate: the same for a burst lasting at
	// least BurstWindow (0 for rules without a burst).
	BurstWindow  float64 `json:"burst_window_seconds,omitempty"`
	BurstMinRate float64 `json:"burst_min_rate,omitempty"`
}

// Guarantees states the guarantees of every rule at a sampling rate of
// 1 in n, by rule name (rules that state none are left out).
func (set *RuleSet) Guarantees(n float64) map[string][]Guarantee {
	out := map[string][]Guarantee{}
	for _, r := range set.rules {
		limits, _ := set.limitsOf(r)
		if g := r.guarantees(limits, n); len(g) > 0 {
			out[r.name] = g
		}
	}
	return out
}

// Guarantees states the running rules' guarantees at the sampling rate
// of the newest sample the engine read (1 before any).
func (e *Engine) Guarantees() map[string][]Guarantee {
	e.mu.Lock()
	set, n := e.set, e.rate
	if e.pool != nil {
		set = e.pool.workers[0].set
	}
	e.mu.Unlock()
	return set.Guarantees(float64(max(n, 1)))
}

// guaranteeLevel is the detection probability guarantees are stated at.
const guaranteeLevel = 0.95

// guarantees states a rule's guarantees at a mean sampling rate of 1 in
// n, for each of its "any" thresholds on a sum or rate of packets,
// samples or events read from samples. Other rules (flow records, whose
// sampling depends on the flows' sizes; distinct counts; bytes, which
// depend on packet sizes) state none.
func (r *rule) guarantees(limits []float64, n float64) []Guarantee {
	if r.kind != kindThreshold || r.sources != 1<<SourceSamples {
		return nil
	}
	n = max(n, 1)
	secs := float64(r.window) / 1e9
	var out []Guarantee
	for i, th := range r.thresholds {
		m := &r.measures[th.m]
		if th.all || m.reverse || (m.kind != mSum && m.kind != mRate) || m.value == vBytes || m.value == vBits {
			continue
		}
		limit := limits[i]
		count := limit // what the window must sum to
		if m.kind == mRate {
			count = limit * secs
		}
		unit := "packets/s"
		perSample := n // what one sample adds to the measure
		if m.value == vSamples || m.value == vEvents {
			unit, perSample = "events/s", 1
		}
		need := max(math.Ceil(count/perSample), float64(r.minSamples))
		g := Guarantee{Measure: r.names[th.m], Threshold: limit, Unit: unit, SamplingRate: n, Window: secs,
			MinRate: poissonRateFor(need, guaranteeLevel) * n / secs}
		if m.value == vSamples || m.value == vEvents {
			g.MinRate = poissonRateFor(need, guaranteeLevel) / secs
		}
		if n == 1 {
			g.MinRate = need / secs // every packet is seen: no noise
		}
		if r.burstSlots > 0 && m.kind == mRate {
			bsecs := float64(int64(r.burstSlots)*r.slot) / 1e9
			g.BurstWindow = bsecs
			g.BurstMinRate = burstRateFor(limit, bsecs, n, float64(r.burstMin), perSample)
		}
		out = append(out, g)
	}
	return out
}

// burstRateFor is the smallest rate over a burst window of bsecs that
// passes a rate threshold at the low end of its interval with 95%
// probability: the fewest samples k (at least min) whose estimate
// k·per/bsecs, lowered by burstZ standard errors, reaches limit, then
// the Poisson rate that gives k samples or more with 95% probability.
func burstRateFor(limit, bsecs, n, minK, per float64) float64 {
	low := func(k float64) float64 {
		if n <= 1 {
			return 1
		}
		return max(1-burstZ*math.Sqrt((n-1)/(n*k)), 0)
	}
	k := max(minK, 1)
	for k*per/bsecs*low(k) < limit {
		k++
	}
	if n <= 1 {
		return k / bsecs
	}
	return poissonRateFor(k, guaranteeLevel) * per / bsecs
}

// poissonRateFor is the smallest mean λ with P(Poisson(λ) ≥ k) ≥ p.
func poissonRateFor(k, p float64) float64 {
	if k <= 0 {
		return 0
	}
	lo, hi := 0.0, k+10*math.Sqrt(k)+10
	for poissonAtLeast(k, hi) < p {
		hi *= 2
	}
	for range 100 {
		mid := (lo + hi) / 2
		if poissonAtLeast(k, mid) >= p {
			hi = mid
		} else {
			lo = mid
		}
		if hi-lo < 1e-9*hi {
			break
		}
	}
	return hi
}

// poissonAtLeast is P(Poisson(λ) ≥ k) for a whole k ≥ 1: one minus the
// sum of the first k terms, summed in log space from the largest.
func poissonAtLeast(k, lambda float64) float64 {
	if lambda <= 0 {
		return 0
	}
	kk := int(k)
	// P(X <= k-1) = sum_{i<k} e^-λ λ^i / i!
	sum := 0.0
	for i := kk - 1; i >= 0; i-- {
		lt := -lambda + float64(i)*math.Log(lambda) - lgamma(float64(i)+1)
		term := math.Exp(lt)
		sum += term
		if float64(i) < lambda && term < 1e-18*sum {
			break // the terms below the mode only shrink
		}
	}
	return max(0, 1-sum)
}

func lgamma(x float64) float64 {
	v, _ := math.Lgamma(x)
	return v
}
