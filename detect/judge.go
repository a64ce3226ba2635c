package detect

import (
	"math"
	"time"
)

// Judging a key: its window's (or its burst's) measures against the
// rule's thresholds and condition, with the sampling noise of each
// estimate taken into account.

// met reports whether the measures pass the key's thresholds and the
// rule's condition, over the window or, for a rule with a burst, over
// its newest sub-window. Distinct counts are merged only when the cheap
// thresholds pass, and at most every quarter slot. rs.vals holds the
// values that passed (the burst's, if it was the burst).
func (rs *ruleState) met(ks *keyState, t int64) bool {
	r := rs.r
	rs.burstHit = false
	vals := rs.vals
	judged := vals
	ok := ks.samples(r) >= float64(r.minSamples)
	if ok {
		ks.values(r, vals, rs.scratch, false)
		ok = rs.cheap(ks.limits, vals)
	}
	if !ok {
		if r.burstSlots == 0 || !rs.burst(ks, t, vals, ks.samples(r) >= float64(r.minSamples)) {
			return false
		}
		judged = rs.bjudge
		if !rs.cheap(ks.limits, judged) {
			return false
		}
		vals = rs.bvals
		rs.burstHit = true
	}
	if r.distinctNeeded && t >= ks.nextDistinct {
		ks.values(r, rs.dvals, rs.scratch, true)
		ks.nextDistinct = t + max(min(r.slot/4, int64(100*time.Millisecond)), 1)
	}
	if r.hasDistinct {
		// The distinct counts (over the window) of the last estimate.
		for i := range r.measures {
			if r.measures[i].kind == mDistinct {
				v := ks.distinct[r.measures[i].dslot]
				if r.measures[i].once {
					v *= ks.effRate(r)
				}
				vals[i], judged[i] = v, v
			}
		}
		ratios(r, vals)
		if rs.burstHit {
			for i := range r.measures {
				if r.measures[i].kind == mRatio || r.measures[i].kind == mDistinct {
					judged[i] = vals[i]
				}
			}
		}
	}
	if r.hasReverse {
		copy(rs.rjudge, judged)
		judged = rs.rjudge
		secs := float64(r.window) / 1e9
		if rs.burstHit {
			secs = rs.bsecs
		}
		reverseHigh(r, judged, ks.effRate(r), secs)
	}
	if !rs.pass(ks.limits, judged) {
		return false
	}
	if rs.burstHit {
		copy(rs.vals, vals)
	}
	return true
}

// burstZ is how many standard errors below its estimate a burst's rate
// is judged at: the low end of a one-sided 99.87% interval, so that at
// high sampling rates a handful of samples landing close together is
// not taken for a burst.
const burstZ = 3.0

// burst computes the measures over the newest burstSlots slots: bvals
// holds the rates over the sub-window (the other measures over the
// window), bjudge the same with the thresholded rates at the low end of
// their interval. wvals are the window's values when have is set (met
// computed them), so they are not computed twice. It reports false when
// the sub-window holds fewer samples than the burst's min_samples.
func (rs *ruleState) burst(ks *keyState, t int64, wvals []float64, have bool) bool {
	r := rs.r
	lo := ks.head - int64(r.burstSlots) + 1
	w := len(ks.win)
	nm := r.ncols
	n := int64(r.nslots)
	k := 0.0
	for s := lo; s <= ks.head; s++ {
		if pos := s % n; s >= 0 && ks.slotIdx[pos] == s {
			k += ks.rows[int(pos)*w+nm+colSamples]
		}
	}
	if k < float64(r.burstMin) {
		return false
	}
	cols := rs.bcols
	clear(cols)
	for s := lo; s <= ks.head; s++ {
		if pos := s % n; s >= 0 && ks.slotIdx[pos] == s {
			for j, v := range ks.rows[int(pos)*w : int(pos)*w+w] {
				cols[j] += v
			}
		}
	}
	// The sub-window runs from its oldest slot's start to now: between
	// burstSlots-1 and burstSlots slots long.
	span := max(t, ks.head*r.slot) - lo*r.slot
	span = max(span, int64(r.burstSlots-1)*r.slot)
	secs := float64(span) / 1e9
	rs.bsecs = secs
	bv := rs.bvals
	if have {
		copy(bv, wvals) // the window's, computed already
	} else {
		ks.values(r, bv, rs.scratch, false)
	}
	for i := range r.measures {
		if m := &r.measures[i]; m.kind == mRate {
			bv[i] = cols[m.col] / secs
		}
	}
	ratios(r, bv)
	copy(rs.bjudge, bv)
	rs.bpps, rs.bbps = cols[nm+colPackets]/secs, 8*cols[nm+colBytes]/secs
	mean := cols[nm+colRateSum] / k // the mean sampling rate
	for _, th := range r.thresholds {
		if m := &r.measures[th.m]; m.kind == mRate && !m.reverse {
			rs.bjudge[th.m] = bv[th.m] * lowFactor(m, cols, nm, mean, k)
		}
	}
	return true
}

// lowFactor is the low end of a rate estimate's interval, as a share
// of it: 1 - z·√((n-1)/(n·k)) for k samples behind it at a mean rate of
// 1 in n (the relative standard error of a count of k sampled events
// standing for k·n).
func lowFactor(m *measure, cols []float64, nm int, n, k float64) float64 {
	if n <= 1 {
		return 1 // every packet is seen: no sampling noise
	}
	var ke float64 // samples behind the measure
	switch m.value {
	case vPackets:
		ke = cols[m.col] / n
	case vBytes:
		if b := cols[nm+colBytes]; b > 0 {
			ke = k * cols[m.col] / b
		}
	case vBits:
		if b := cols[nm+colBytes]; b > 0 {
			ke = k * cols[m.col] / (8 * b)
		}
	default:
		ke = cols[m.col]
	}
	if ke <= 0 {
		return 0
	}
	return max(1-burstZ*math.Sqrt((n-1)/(n*ke)), 0)
}

// reverseHigh puts the reverse measures of vals (over the window) at
// the high end of their interval at a mean sampling rate of 1 in n:
// a condition like "requests < 0.1 * pps" says the victim sent almost
// nothing back, and at 1-in-1000 a few requests a second leave no
// sample in most windows. k samples behind a count are judged as
// k + z·(√k + 1) of them (3 for none at z = 3, about the one-sided 95%
// bound of a Poisson count of 0).
func reverseHigh(r *rule, vals []float64, n, secs float64) {
	if n <= 1 {
		return
	}
	for i := range r.measures {
		m := &r.measures[i]
		if !m.reverse || m.value == vBytes || m.value == vBits {
			continue // sizes: no count of samples to judge by
		}
		count := vals[i]
		if m.kind == mRate {
			count *= secs
		}
		k := count / n // the samples behind it, about
		hi := count + n*burstZ*(math.Sqrt(max(k, 0))+1)
		if m.kind == mRate {
			hi /= secs
		}
		vals[i] = hi
	}
}

// cheap reports whether the sum, rate, mean and spread measures leave
// the thresholds a chance: no "all" one fails, and an "any" one passes
// (or one of them is on a distinct count or ratio, not known yet).
func (rs *ruleState) cheap(limits, vals []float64) bool {
	r := rs.r
	anyOK := !r.hasAny || r.anyLate
	for i, th := range r.thresholds {
		if k := r.measures[th.m].kind; k == mDistinct || k == mRatio {
			continue
		}
		switch {
		case vals[th.m] >= limits[i]:
			anyOK = anyOK || !th.all
		case th.all:
			return false
		}
	}
	return anyOK
}

// pass checks every threshold and the condition: every "all" threshold
// and at least one "any" one is reached, and the condition holds.
func (rs *ruleState) pass(limits, vals []float64) bool {
	anyOK := !rs.r.hasAny
	for i, th := range rs.r.thresholds {
		switch {
		case vals[th.m] >= limits[i]:
			anyOK = anyOK || !th.all
		case th.all:
			return false
		}
	}
	return anyOK && (rs.r.when == nil || rs.r.when(vals))
}
