package detect

import "math"

// baseline is a key's moving mean and variance of one measure, one value
// per window (exponentially weighted, Welford-style during warm-up).
type baseline struct {
	interval  int64 // the window being filled (event time / window)
	n         int   // windows learnt
	mean, vr  float64
	rate      float64 // effective sampling rate of the last window
	closeVals []float64
}

func (b *baseline) learn(v, alpha float64) {
	if b.n == 0 {
		b.mean, b.vr = v, 0
	} else {
		a := max(alpha, 1/float64(b.n+1)) // plain mean while warming up
		d := v - b.mean
		inc := a * d
		b.mean += inc
		b.vr = (1 - a) * (b.vr + d*inc)
	}
	b.n++
}

// baselineEvent closes the key's previous windows (if the event starts a
// new one) against the baseline, then accounts the event.
func (rs *ruleState) baselineEvent(e *Engine, ks *keyState, ev *Event) {
	r := rs.r
	interval := ev.Time / r.window
	if ks.bl == nil {
		ks.bl = &baseline{interval: interval, closeVals: make([]float64, len(r.measures))}
	}
	bl := ks.bl
	if interval > bl.interval {
		rs.closeInterval(e, ks, bl.interval, (bl.interval+1)*r.window)
		// Windows without any event were zero.
		for i := bl.interval + 1; i < interval && i <= bl.interval+int64(r.blWarmup); i++ {
			clear(bl.closeVals)
			rs.judge(e, ks, bl.closeVals, (i+1)*r.window)
		}
		bl.interval = interval
	}
	if interval < bl.interval {
		rs.stats.late++ // its window is closed already
		return
	}
	rs.windowEvent(ks, ev)
}

// closeInterval computes the measures of one finished window from its
// slots and judges them against the baseline.
func (rs *ruleState) closeInterval(e *Engine, ks *keyState, interval, t int64) {
	r := rs.r
	n := int64(r.nslots)
	w := len(ks.win)
	row := make([]float64, w)
	for pos, s := range ks.slotIdx {
		if s >= interval*n && s < (interval+1)*n {
			for j := range row {
				row[j] += ks.rows[pos*w+j]
			}
		}
	}
	vals := ks.bl.closeVals
	secs := float64(r.window) / 1e9
	for i := range r.measures {
		vals[i] = r.measures[i].over(row, secs)
	}
	nm := r.ncols
	rate := 1.0
	if row[nm+colSamples] > 0 {
		rate = row[nm+colRateSum] / row[nm+colSamples]
	}
	ks.bl.rate = rate
	rs.judge(e, ks, vals, t)
}

// judge compares a finished window with the baseline: past warm-up, a
// value above the mean by the rule's deviations (and over its
// thresholds) triggers; anything else is learnt.
func (rs *ruleState) judge(e *Engine, ks *keyState, vals []float64, t int64) {
	r, bl := rs.r, ks.bl
	v := vals[r.blMeasure]
	if bl.n >= r.blWarmup {
		// The deviation is at least a tenth of the mean and the noise of
		// sampling: a count C estimated at 1-in-N varies by sqrt(N*C).
		secs := float64(r.window) / 1e9
		noise := math.Sqrt(max(bl.rate, 1)*max(bl.mean*secs, 1)) / secs
		sd := max(math.Sqrt(bl.vr), 0.1*bl.mean, noise)
		if v >= bl.mean+r.blDeviations*sd && rs.pass(ks.limits, vals) {
			rs.trigger(e, ks, t, vals, nil)
			return
		}
	}
	bl.learn(v, r.blAlpha)
}

// seqState is how far a key is through a sequence.
type seqState struct {
	stage int   // steps done
	t0    int64 // time of the first step
}

// sequenceEvent moves a key through the rule's steps.
func (rs *ruleState) sequenceEvent(e *Engine, source Source, ev *Event, own uint64) {
	r := rs.r
	var match uint64
	for i, st := range r.steps {
		if st.source == source && st.filter(ev) {
			match |= 1 << i
		}
	}
	if match == 0 {
		return
	}
	ks := rs.matched(e, ev, own)
	if ks == nil {
		return
	}
	ks.last = max(ks.last, ev.Time)
	sq := &ks.seq
	if sq.stage > 0 && ev.Time-sq.t0 > r.within {
		sq.stage = 0
	}
	switch {
	case sq.stage > 0 && match&(1<<sq.stage) != 0 && ev.Time >= sq.t0:
		sq.stage++
		if sq.stage == len(r.steps) {
			sq.stage = 0
			if ks.alert != nil {
				ks.alert.account(ev)
			}
			rs.trigger(e, ks, ev.Time, nil, ev)
		}
	case match&1 != 0:
		sq.stage, sq.t0 = 1, ev.Time
	}
}

// absenceEvent notes that a key was seen; a silent key seen again ends
// its alert.
func (rs *ruleState) absenceEvent(e *Engine, ks *keyState, ev *Event) {
	if ks.alert != nil {
		rs.end(e, ks, ev.Time)
		ks.first = ev.Time
	}
	ks.first = min(ks.first, ev.Time)
	ks.last = max(ks.last, ev.Time)
}
