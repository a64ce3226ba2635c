package detect

import (
	"math"

	"github.com/axiomhq/hyperloglog"
)

// Columns every window row has after the rule's measures: the packets,
// bytes, samples and sum of sampling rates of the events the rule's
// filter kept, for current rates and the effective sampling rate, and
// the variances of the packet and byte estimates, for their intervals.
const (
	colPackets = iota
	colBytes
	colSamples
	colRateSum
	colPacketsVar
	colBytesVar
	extraCols
)

// hllPrecision: 2^10 registers, about 3% standard error, plenty for
// thresholds; sparse while small, so the many keys with few values stay
// cheap.
const hllPrecision = 10

// keyState is what a rule keeps for one key: a sliding window of time
// slots, and the alert, baseline or sequence state of the key.
type keyState struct {
	key  keyBuf
	head int64 // newest slot index (event time / slot length)
	// Per slot (row), the measures' sums then the extra columns; win is
	// the running sum of every row in the window.
	rows    []float64
	slotIdx []int64
	win     []float64
	hll     []*hyperloglog.Sketch // nslots × distinct measures, allocated on use

	first, last int64     // first and last event time seen
	ev          evictLink // its place in the rule's eviction order (state.go); by last: one cache line
	wl          wheelLink // its place in the rule's wheel (wheel.go)
	limits      []float64
	evidence    []topK
	evStart     int64 // slot index since which evidence counts

	nextDistinct int64 // event time before which distinct estimates are reused
	distinct     []float64

	alert *alertState
	proto uint8 // of the newest event kept: names the service of a port

	bl  *baseline
	seq seqState
}

func newKeyState(r *rule, k keyBuf, limits []float64) *keyState {
	w := r.ncols + extraCols
	ks := &keyState{key: k, head: -1, limits: limits}
	if r.kind == kindThreshold || r.kind == kindBaseline {
		ks.rows = make([]float64, r.nslots*w)
		ks.slotIdx = make([]int64, r.nslots)
		for i := range ks.slotIdx {
			ks.slotIdx[i] = -1
		}
		ks.win = make([]float64, w)
	}
	if r.hasDistinct {
		ks.hll = make([]*hyperloglog.Sketch, r.nslots*countDistinct(r.measures))
		ks.distinct = make([]float64, countDistinct(r.measures))
	}
	if len(r.evidence) > 0 {
		ks.evidence = make([]topK, len(r.evidence))
	}
	return ks
}

// reuse resets a dropped key state for another key.
func (ks *keyState) reuse(r *rule, k keyBuf, limits []float64) {
	if nd := len(ks.distinct); nd > 0 {
		// The sketches of the slots that counted something (a slot
		// leaving the window reset its own).
		w := len(ks.win)
		for pos := range r.nslots {
			for i := range r.measures {
				m := &r.measures[i]
				if m.kind == mDistinct && ks.rows[pos*w+m.col] != 0 {
					if sk := ks.hll[pos*nd+m.dslot]; sk != nil {
						sk.Reset()
					}
				}
			}
		}
	}
	clear(ks.rows)
	clear(ks.win)
	for i := range ks.slotIdx {
		ks.slotIdx[i] = -1
	}
	clear(ks.distinct)
	for i := range ks.evidence {
		ks.evidence[i].reset()
	}
	*ks = keyState{key: k, head: -1, limits: limits, rows: ks.rows, slotIdx: ks.slotIdx, win: ks.win,
		hll: ks.hll, distinct: ks.distinct, evidence: ks.evidence}
}

// advance moves the window's head to slot s, clearing the slots that
// leave the window.
func (ks *keyState) advance(r *rule, s int64) {
	if s <= ks.head {
		return
	}
	n := int64(r.nslots)
	from := ks.head + 1
	if s-ks.head > n {
		from = s - n + 1
	}
	w := len(ks.win)
	nd := len(ks.distinct)
	for i := from; i <= s; i++ {
		pos := int(i % n)
		row := ks.rows[pos*w : pos*w+w]
		if ks.slotIdx[pos] >= 0 {
			if nd > 0 {
				// Only a sketch that counted something in the slot (its
				// column) is reset: Reset costs its capacity even empty.
				for k := range r.measures {
					m := &r.measures[k]
					if m.kind == mDistinct && row[m.col] != 0 {
						if sk := ks.hll[pos*nd+m.dslot]; sk != nil {
							sk.Reset()
						}
					}
				}
			}
			for j, v := range row {
				ks.win[j] -= v
				row[j] = 0
			}
		}
		ks.slotIdx[pos] = i
	}
	if s-ks.head > n {
		// Everything left the window: drop rounding residue too.
		clear(ks.win)
	}
	ks.head = s
}

// add accounts an event in slot s, which must be inside the window.
// add adds an event to slot s, and reports how many distinct-count
// sketches it had to make.
func (ks *keyState) add(r *rule, e *Event, s int64) (sketches int64) {
	w := len(ks.win)
	nd := len(ks.distinct)
	pos := int(s % int64(r.nslots))
	row := ks.rows[pos*w : pos*w+w]
	pv, bv := e.PacketsVar, e.BytesVar
	if pv == 0 && bv == 0 && e.Rate > 1 {
		// A sample (or an alert): n(n−1)·x² for x = Packets/n.
		n, k := float64(e.Rate), max(float64(e.Samples), 1)
		p, b := float64(e.Packets), float64(e.Bytes)
		pv, bv = (n-1)*p*p/(n*k), (n-1)*b*b/(n*k)
	}
	for i := range r.measures {
		m := &r.measures[i]
		if m.kind == mRatio || m.reverse || m.filter != nil && !m.filter(e) {
			continue
		}
		c := m.col
		switch m.kind {
		case mDistinct:
			sk := ks.hll[pos*nd+m.dslot]
			if sk == nil {
				sk, _ = hyperloglog.NewSketch(hllPrecision, true)
				ks.hll[pos*nd+m.dslot] = sk
				sketches++
			}
			sk.InsertHash(m.field(e))
			row[c]++
			ks.win[c]++
		case mMean:
			v := m.amount(e)
			row[c] += v
			ks.win[c] += v
			row[c+1]++
			ks.win[c+1]++
		case mSpread:
			v := m.amount(e)
			row[c]++
			ks.win[c]++
			row[c+1] += v
			ks.win[c+1] += v
			row[c+2] += v * v
			ks.win[c+2] += v * v
			// The sampling noise of the value, taken out of its spread.
			var nv float64
			switch m.value {
			case vPackets:
				nv = pv
			case vBytes:
				nv = bv
			case vBits:
				nv = 64 * bv
			}
			row[c+3] += nv
			ks.win[c+3] += nv
		default:
			v := m.amount(e)
			row[c] += v
			ks.win[c] += v
		}
	}
	nm := r.ncols
	extra := [extraCols]float64{float64(e.Packets), float64(e.Bytes), float64(e.Samples), float64(e.Rate) * float64(e.Samples), pv, bv}
	for j, v := range extra {
		row[nm+j] += v
		ks.win[nm+j] += v
	}
	return sketches
}

// addReverse accounts an event of the key's traffic the other way in
// slot s: only the reverse measures whose filter it passes count it.
func (ks *keyState) addReverse(r *rule, e *Event, s int64) {
	w := len(ks.win)
	pos := int(s % int64(r.nslots))
	row := ks.rows[pos*w : pos*w+w]
	for i := range r.measures {
		m := &r.measures[i]
		if !m.reverse || m.filter != nil && !m.filter(e) {
			continue
		}
		v := m.amount(e)
		row[m.col] += v
		ks.win[m.col] += v
	}
}

// effRate is the mean sampling rate of the window's events.
func (ks *keyState) effRate(r *rule) float64 {
	nm := r.ncols
	if s := ks.win[nm+colSamples]; s > 0 {
		return ks.win[nm+colRateSum] / s
	}
	return 1
}

func (ks *keyState) samples(r *rule) float64 { return ks.win[r.ncols+colSamples] }

// values computes the measures over the window into vals. Distinct
// counts are merged from the slots' sketches only when withDistinct;
// otherwise the last estimate is used.
func (ks *keyState) values(r *rule, vals []float64, scratch *hyperloglog.Sketch, withDistinct bool) {
	secs := float64(r.window) / 1e9
	rate := ks.effRate(r)
	for i := range r.measures {
		m := &r.measures[i]
		switch m.kind {
		case mDistinct:
			if withDistinct {
				ks.distinct[m.dslot] = ks.estimate(r, m.dslot, scratch)
			}
			vals[i] = ks.distinct[m.dslot]
			if m.once {
				// Values seen about once (scans, spoofed sources):
				// each sampled one stands for rate of them.
				vals[i] *= rate
			}
		case mRatio:
		default:
			vals[i] = m.over(ks.win, secs)
		}
	}
	ratios(r, vals)
}

// value is a sum, rate, mean or spread measure over the columns of a
// window (or part of one) secs long.
func (m *measure) over(cols []float64, secs float64) float64 {
	c := cols[m.col:]
	switch m.kind {
	case mSum:
		return c[0]
	case mRate:
		return c[0] / secs
	case mMean:
		if c[1] > 0 {
			return c[0] / c[1]
		}
	case mSpread:
		// The spread of the values, less the part that sampling noise
		// explains (each value's own variance, on average).
		if n := c[0]; n > 0 && c[1] > 0 {
			mean := c[1] / n
			return math.Sqrt(max(c[2]/n-mean*mean-c[3]/n, 0)) / mean
		}
	}
	return 0
}

// ratios computes the ratio measures from the others.
func ratios(r *rule, vals []float64) {
	for i := range r.measures {
		m := &r.measures[i]
		if m.kind != mRatio {
			continue
		}
		a, b := vals[m.a], vals[m.b]
		switch {
		case b > 0:
			vals[i] = a / b
		case a > 0:
			vals[i] = a // as if the denominator were one
		default:
			vals[i] = 0
		}
	}
}

// estimate merges the window's sketches of one distinct measure.
func (ks *keyState) estimate(r *rule, d int, scratch *hyperloglog.Sketch) float64 {
	nd := len(ks.distinct)
	scratch.Reset()
	any := false
	lo := ks.head - int64(r.nslots)
	for pos := 0; pos < r.nslots; pos++ {
		if ks.slotIdx[pos] <= lo {
			continue
		}
		if sk := ks.hll[pos*nd+d]; sk != nil {
			_ = scratch.Merge(sk)
			any = true
		}
	}
	if !any {
		return 0
	}
	return float64(scratch.Estimate())
}

// pps and bps are the rates of the events the rule kept, over the window.
func (ks *keyState) pps(r *rule) float64 {
	return ks.win[r.ncols+colPackets] / (float64(r.window) / 1e9)
}

func (ks *keyState) bps(r *rule) float64 {
	return 8 * ks.win[r.ncols+colBytes] / (float64(r.window) / 1e9)
}
