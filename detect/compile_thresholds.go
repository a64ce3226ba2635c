package detect

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// compileThresholds compiles a rule's thresholds (any of them), its
// "all" thresholds and its burst, once its measures are compiled: index
// finds a measure by name, duration reads a duration field, bad reports
// a field's error.
func (r *rule) compileThresholds(rs *RuleSpec, index func(string) int,
	duration func(path string, d Duration, def time.Duration) int64, bad func(path, format string, args ...any)) {
	for _, group := range []struct {
		key string
		th  map[string]float64
		all bool
	}{{"thresholds", rs.Thresholds, false}, {"all", rs.All, true}} {
		for _, n := range sortedKeys(group.th) {
			i := index(n)
			if i < 0 {
				bad(group.key+"."+n, "no measure %q in this rule", n)
				continue
			}
			if _, dup := rs.Thresholds[n]; dup && group.all {
				bad(group.key+"."+n, "%q is in thresholds too: a measure has one threshold", n)
				continue
			}
			v := group.th[n]
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				// Measures are never negative: a negative threshold always
				// passes, NaN never does.
				bad(group.key+"."+n, "must be a finite number, 0 or more, got %v", v)
			}
			r.thresholds = append(r.thresholds, threshold{m: i, limit: v, all: group.all})
			if !group.all {
				r.hasAny = true
			}
		}
	}
	for _, th := range r.thresholds {
		if k := r.measures[th.m].kind; k == mDistinct || k == mRatio {
			r.distinctNeeded = r.hasDistinct
			if !th.all {
				r.anyLate = true
			}
		}
	}
	if b := rs.Burst; b != nil {
		d := duration("burst.window", b.Window, 0)
		switch {
		case d == 0:
			bad("burst.window", "a burst needs a window")
		case d%r.slot != 0 || d/r.slot < 2:
			bad("burst.window", "must be a multiple of the slot (%v), at least two slots", time.Duration(r.slot))
		case d >= r.window:
			bad("burst.window", "must be shorter than the window")
		default:
			r.burstSlots = int(d / r.slot)
		}
		r.burstMin = cmp.Or(b.MinSamples, r.minSamples)
		if !slices.ContainsFunc(r.thresholds, func(th threshold) bool { return r.measures[th.m].kind == mRate }) {
			bad("burst", "a burst judges rates: the rule has no threshold on a rate")
		}
	}
}
