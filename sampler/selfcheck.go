package sampler

import (
	"sync"
	"time"

	"github.com/vigil-sensor/vigil/flow"
)

// SelfCheck compares what the samples delivered downstream estimate with
// what the programs counted exactly, per interface, over a sliding
// window. Estimates fall short of the counters when samples are lost
// (ring buffer or channel full) or when the sampler is biased; a healthy
// sensor shows a relative error within the error bound the samples
// themselves give.
//
// Observe is called with every batch handed downstream; Check with the
// exact counters at regular times. Both may run concurrently.
type SelfCheck struct {
	window time.Duration

	mu   sync.Mutex
	ests map[uint32]*flow.Estimate // cumulative, per ifindex
	hist map[uint32][]checkPoint   // snapshots within the window
}

type checkPoint struct {
	at    time.Time
	est   flow.Estimate
	exact uint64
}

// CheckResult is the comparison for one interface over the window.
type CheckResult struct {
	Ifindex   uint32
	Estimated float64 // packets the samples stand for
	Exact     uint64  // packets counted
	// RelError is (Estimated − Exact) / Exact; Bound is the relative
	// half-width of the estimate's 95% interval.
	RelError, Bound float64
	Total           flow.Estimate // every sample since the start
}

// NewSelfCheck returns a self-check over a sliding window.
func NewSelfCheck(window time.Duration) *SelfCheck {
	return &SelfCheck{window: window, ests: map[uint32]*flow.Estimate{}, hist: map[uint32][]checkPoint{}}
}

// Observe accounts a batch of samples delivered downstream.
func (c *SelfCheck) Observe(batch []flow.Sample) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var last uint32
	var e *flow.Estimate
	for i := range batch {
		s := &batch[i]
		if e == nil || s.Ifindex != last {
			last = s.Ifindex
			if e = c.ests[last]; e == nil {
				e = &flow.Estimate{}
				c.ests[last] = e
			}
		}
		e.Observe(s.SamplingRate, float64(max(s.Segments, 1)))
	}
}

// Check compares the estimates with exact packet counters (cumulative,
// per ifindex, both directions) read at now. An interface missing from
// exact is forgotten.
func (c *SelfCheck) Check(now time.Time, exact map[uint32]uint64) []CheckResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []CheckResult
	for ifindex, n := range exact {
		var est flow.Estimate
		if e := c.ests[ifindex]; e != nil {
			est = *e
		}
		h := append(c.hist[ifindex], checkPoint{at: now, est: est, exact: n})
		cut := 0
		for cut < len(h)-1 && now.Sub(h[cut+1].at) >= c.window {
			cut++
		}
		h = h[cut:]
		c.hist[ifindex] = h
		from := h[0]
		if n < from.exact { // counters were reset
			c.hist[ifindex] = h[len(h)-1:]
			continue
		}
		win := est.Minus(from.est)
		r := CheckResult{Ifindex: ifindex, Estimated: win.Value, Exact: n - from.exact, Total: est}
		if r.Exact > 0 {
			r.RelError = (win.Value - float64(r.Exact)) / float64(r.Exact)
		}
		r.Bound = win.RelativeError()
		out = append(out, r)
	}
	for ifindex := range c.hist {
		if _, ok := exact[ifindex]; !ok {
			delete(c.hist, ifindex)
			delete(c.ests, ifindex)
		}
	}
	return out
}
