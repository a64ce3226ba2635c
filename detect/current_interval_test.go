package detect

import (
	"fmt"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/flow"
)

// TestCurrentRateIntervalCoverage samples attacks of known shape with
// many seeds and checks the 95% intervals of the current rates every
// start and update report carries: the true packets and bytes a second
// in the rule's window when the report was made must fall inside them at
// least 95% of the time (the misses are held to the 99.9th percentile of
// Binomial(reports, 0.05), as in TestAlertIntervalCoverage).
//
// The truth is counted from every packet of the attack, sampled or not,
// sent from the start of the window's oldest slot to the report's time.
func TestCurrentRateIntervalCoverage(t *testing.T) {
	const seeds = 1000
	attacks := []ivAttack{
		{name: "steady 1-in-100", packets: 100_000, duration: 2 * time.Second, minLen: 60, maxLen: 1514,
			rate: func(int) uint32 { return 100 }, pps: 5000, batch: 10 * time.Millisecond},
		// About 30 samples a window.
		{name: "small", packets: 6000, duration: 2 * time.Second, minLen: 60, maxLen: 60,
			rate: func(int) uint32 { return 100 }, pps: 1000, batch: 10 * time.Millisecond},
		// The sampler moves from 1-in-10 to 1-in-100 inside a window.
		{name: "rate change", packets: 100_000, duration: 2 * time.Second, minLen: 60, maxLen: 1514,
			rate: func(i int) uint32 {
				if i < 60_000 {
					return 10
				}
				return 100
			}, pps: 5000, batch: 10 * time.Millisecond},
	}
	const window, slot = int64(time.Second), int64(100 * time.Millisecond) // ivRule's
	for _, at := range attacks {
		t.Run(at.name, func(t *testing.T) {
			set := engLoad(t, fmt.Sprintf(ivRule, at.pps), Options{})
			gap := at.gap()
			type tally struct{ reports, inP, inB int }
			var byState [flow.AlertEnd + 1]tally
			for seed := range uint64(seeds) {
				evs, cum := at.sample(seed + 1)
				for _, a := range at.feed(set, evs).of("flood", 0) {
					if a.State == flow.AlertEnd {
						if a.CurrentPPS != 0 || a.CurrentPPSCI != (flow.RateInterval{}) {
							t.Errorf("seed %d: an end report with current pps %v %v", seed+1, a.CurrentPPS, a.CurrentPPSCI)
						}
						continue
					}
					// The window's slots: the head's (the report's time)
					// and the nine before.
					from := (a.Time/slot - window/slot + 1) * slot
					lo := min(int64(at.packets), max(0, (from-engT0+gap-1)/gap))
					hi := min(int64(at.packets)-1, (a.Time-engT0)/gap)
					hi = max(hi, lo-1) // a window after the attack is empty
					secs := float64(window) / 1e9
					pps := float64(hi-lo+1) / secs
					bps := 8 * float64(cum[hi+1]-cum[lo]) / secs
					if a.CurrentPPSCI.Lo > a.CurrentPPS || a.CurrentPPS > a.CurrentPPSCI.Hi || a.CurrentBPSCI.Lo > a.CurrentBPS || a.CurrentBPS > a.CurrentBPSCI.Hi {
						t.Errorf("seed %d: current rates outside their intervals: pps %v %v, bps %v %v",
							seed+1, a.CurrentPPS, a.CurrentPPSCI, a.CurrentBPS, a.CurrentBPSCI)
					}
					if hi < lo {
						// A window after the attack: nothing in it.
						if a.CurrentPPS != 0 || a.CurrentPPSCI.Lo != 0 || a.CurrentBPSCI.Lo != 0 {
							t.Errorf("seed %d: an empty window with current pps %v %v, bps %v", seed+1, a.CurrentPPS, a.CurrentPPSCI, a.CurrentBPSCI)
						}
						continue
					}
					s := &byState[a.State]
					s.reports++
					if a.CurrentPPSCI.Lo <= pps && pps <= a.CurrentPPSCI.Hi {
						s.inP++
					}
					if a.CurrentBPSCI.Lo <= bps && bps <= a.CurrentBPSCI.Hi {
						s.inB++
					}
				}
			}
			for _, st := range []flow.AlertState{flow.AlertStart, flow.AlertUpdate} {
				s := byState[st]
				if s.reports < seeds*9/10 {
					t.Fatalf("%v: %d reports from %d attacks", st, s.reports, seeds)
				}
				t.Logf("%v: %d reports, current pps held in %.1f%%, current bps in %.1f%%",
					st, s.reports, 100*float64(s.inP)/float64(s.reports), 100*float64(s.inB)/float64(s.reports))
				limit := binomialQuantile(s.reports, 1-flow.Level, 0.999)
				if miss := s.reports - s.inP; miss > limit {
					t.Errorf("%v: current pps missed the truth in %d of %d reports; at 95%% coverage at most %d would", st, miss, s.reports, limit)
				}
				if miss := s.reports - s.inB; miss > limit {
					t.Errorf("%v: current bps missed the truth in %d of %d reports; at 95%% coverage at most %d would", st, miss, s.reports, limit)
				}
			}
		})
	}
}
