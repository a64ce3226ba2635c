package detect

import (
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sensor/vigil/flow"
)

const (
	stateStart  = flow.AlertStart
	stateUpdate = flow.AlertUpdate
	stateEnd    = flow.AlertEnd
)

// alertState is a key's running alert: one per rule and key, from start
// through updates to its end after a quiet period.
type alertState struct {
	id         string
	start      int64 // first event of the window that crossed the threshold
	last       int64 // the last time the condition held
	lastReport int64
	suppressed bool // the start was rate-limited: report nothing of it

	// Estimated packets and bytes since the start, with what their
	// confidence intervals need.
	packets, bytes   flow.Estimate
	samples, rateSum float64
	peakPPS, peakBPS float64
	// The window's extra columns (packets, bytes, samples, rates,
	// variances) as of the last trigger or tick: the current rates, with
	// what their intervals need.
	cur  [extraCols]float64
	vals []float64 // the measures when the condition last held
	// burst: the condition last held over the rule's burst sub-window,
	// not its window.
	burst bool
}

// account adds an event the rule kept to a running alert's totals.
func (a *alertState) account(ev *Event) {
	k := float64(ev.Samples)
	if ev.Source == SourceAlerts {
		// An alert's figures stand on about Packets/Rate samples, not on
		// the one its event counts.
		k = float64(ev.Packets) / float64(max(ev.Rate, 1))
	}
	if ev.PacketsVar > 0 || ev.MaxPacketsW > 0 {
		// A flow record's own estimates.
		n := float64(max(ev.Rate, 1))
		a.packets.Add(flow.Estimate{Value: float64(ev.Packets), Seen: float64(ev.Packets) / n, Var: ev.PacketsVar, MaxW: float64(ev.MaxPacketsW)})
		a.bytes.Add(flow.Estimate{Value: float64(ev.Bytes), Seen: float64(ev.Bytes) / n, Var: ev.BytesVar, MaxW: float64(ev.MaxBytesW)})
	} else {
		observeEven(&a.packets, float64(ev.Packets), k, float64(ev.Rate))
		observeEven(&a.bytes, float64(ev.Bytes), k, float64(ev.Rate))
	}
	a.samples += float64(ev.Samples)
	a.rateSum += float64(ev.Rate) * float64(ev.Samples)
}

// observeEven accounts k samples taken at 1-in-rate that together stand
// for total, as if each carried the same: Estimate.Observe(rate,
// total/rate) for one sample, which is what a sample event is.
//
// An alert read by a chained rule keeps only its totals and mean rate,
// so the variance of what it stands for is that of evenly filled samples
// at one rate: exact for samples of one packet each at one rate, low by
// the spread of sizes and rates otherwise. Flow records and the window
// carry their own.
func observeEven(e *flow.Estimate, total, k, rate float64) {
	if total <= 0 {
		return
	}
	n := max(rate, 1)
	x := total / (n * max(k, 1)) // what one sample carried
	e.Value += total
	e.Seen += total / n
	e.Var += (n - 1) * total * x // k·n(n−1)·x²
	e.MaxW = max(e.MaxW, (n-1)*x)
}

// current takes the key's window as the alert's current figures. Their
// estimates and intervals are made only when a report is built.
func (a *alertState) current(ks *keyState, r *rule) {
	copy(a.cur[:], ks.win[r.ncols:])
	a.peakPPS = max(a.peakPPS, ks.pps(r))
	a.peakBPS = max(a.peakBPS, ks.bps(r))
}

// trigger records that the rule's condition holds for a key at t: it
// starts an alert, or keeps the running one alive. ev, when not nil, is
// the event that completed a sequence: a new alert counts it.
func (rs *ruleState) trigger(e *Engine, ks *keyState, t int64, vals []float64, ev *Event) {
	r := rs.r
	a := ks.alert
	if a == nil {
		a = &alertState{start: t}
		if ks.rows != nil {
			a.start = max(ks.windowStart(r), ks.first)
			// The window's events count from the start: its sums are all
			// that is left of them.
			nm := r.ncols
			a.samples, a.rateSum = ks.win[nm+colSamples], ks.win[nm+colRateSum]
			rate := ks.effRate(r)
			a.packets = windowEstimate(ks.win[nm+colPackets], ks.win[nm+colPacketsVar], a.samples, rate)
			a.bytes = windowEstimate(ks.win[nm+colBytes], ks.win[nm+colBytesVar], a.samples, rate)
		}
		switch r.kind {
		case kindAbsence:
			a.start = ks.last
		case kindSequence:
			a.start = ks.seq.t0
		}
		a.id = alertID(r.name, &ks.key, a.start)
		if ev != nil {
			a.account(ev)
		}
		if r.hasDistinct && vals != nil && ks.rows != nil {
			// Distinct counts no threshold needed: for the report.
			ks.values(r, vals, rs.scratch, true)
		}
		ks.alert = a
		rs.active[ks] = struct{}{}
		e.noteLive(rs)
		a.last, a.lastReport = t, t
		if ks.rows != nil {
			a.current(ks, r)
		}
		a.vals = append(a.vals[:0], vals...)
		rs.noteBurst(a)
		a.suppressed = !e.report(rs, rs.build(ks, stateStart, t))
		return
	}
	a.last = max(a.last, t)
	if ks.rows != nil {
		a.current(ks, r)
	}
	a.vals = append(a.vals[:0], vals...)
	rs.noteBurst(a)
}

// noteBurst records whether the condition held on the burst, and takes
// the burst's rates as peaks.
func (rs *ruleState) noteBurst(a *alertState) {
	a.burst = rs.burstHit
	if rs.burstHit {
		a.peakPPS = max(a.peakPPS, rs.bpps)
		a.peakBPS = max(a.peakBPS, rs.bbps)
	}
}

// end reports the end of a key's alert and forgets it.
func (rs *ruleState) end(e *Engine, ks *keyState, now int64) {
	a := ks.alert
	if a == nil {
		return
	}
	if !a.suppressed {
		e.report(rs, rs.build(ks, stateEnd, now))
	}
	ks.alert = nil
	delete(rs.active, ks)
	for i := range ks.evidence {
		ks.evidence[i].reset()
	}
	ks.evStart = ks.head
}

// windowStart is the start of the oldest slot of the window holding events.
func (ks *keyState) windowStart(r *rule) int64 {
	lo := ks.head - int64(r.nslots)
	w := len(ks.win)
	oldest := ks.head
	for pos, s := range ks.slotIdx {
		if s > lo && s < oldest && ks.rows[pos*w+r.ncols+colSamples] > 0 {
			oldest = s
		}
	}
	return oldest * r.slot
}

// build makes the alert report of a key.
func (rs *ruleState) build(ks *keyState, st flow.AlertState, now int64) flow.Alert {
	r, a := rs.r, ks.alert
	al := flow.Alert{
		ID:         a.id,
		Rule:       r.name,
		State:      st,
		Severity:   r.severity,
		Key:        keyValues(&ks.key, r.group),
		Time:       now,
		Start:      a.start,
		End:        a.last,
		Packets:    uint64(a.packets.Value + 0.5),
		Bytes:      uint64(a.bytes.Value + 0.5),
		PacketsCI:  a.packets.Interval(),
		BytesCI:    a.bytes.Interval(),
		PeakPPS:    a.peakPPS,
		PeakBPS:    a.peakBPS,
		Techniques: r.techniques,
	}
	if st == stateEnd {
		al.End = max(a.last, ks.last)
	} else if c := &a.cur; c[colPackets] > 0 {
		secs := float64(r.window) / 1e9
		rate := c[colRateSum] / max(c[colSamples], 1)
		packets := windowEstimate(c[colPackets], c[colPacketsVar], c[colSamples], rate)
		bytes := windowEstimate(c[colBytes], c[colBytesVar], c[colSamples], rate)
		al.CurrentPPS, al.CurrentBPS = packets.Value/secs, 8*bytes.Value/secs
		al.CurrentPPSCI = packets.Interval().Per(secs)
		al.CurrentBPSCI = bytes.Interval().Per(secs / 8) // bytes to bits a second
	}
	if a.samples > 0 {
		al.SamplingRate = uint32(a.rateSum/a.samples + 0.5)
	}
	for i, f := range r.evidence {
		top := ks.evidence[i].top()
		switch f {
		case evSrcAddr:
			al.TopSources = top
		case evDstAddr:
			al.TopDestinations = top
		default:
			al.TopPorts = top
		}
	}
	var svc *Service
	if r.service != "" {
		for _, kv := range al.Key {
			if kv.Name == r.service {
				p, _ := strconv.ParseUint(kv.Value, 10, 16)
				al.Service = serviceLabel(ks.proto, uint16(p))
				svc, _ = LookupService(ks.proto, uint16(p))
			}
		}
	}
	al.Summary = rs.summary(&al, a, ks.limits, svc)
	return al
}

// summary is one human-readable line: the rule, its key and the
// measures against their thresholds.
func (rs *ruleState) summary(al *flow.Alert, a *alertState, limits []float64, svc *Service) string {
	r := rs.r
	var b strings.Builder
	b.WriteString(r.name)
	for i, kv := range al.Key {
		if i == 0 {
			b.WriteString(" on ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(kv.Name + "=" + kv.Value)
	}
	switch r.kind {
	case kindAbsence:
		b.WriteString(": silent since the last event")
		return b.String()
	case kindSequence:
		b.WriteString(": the steps of the sequence happened in order")
		return b.String()
	}
	// The thresholds reached: every "all" one, and the "any" ones that
	// were (all of them when none was, as in an end report).
	reached := 0
	for i, th := range r.thresholds {
		if i < len(limits) && th.m < len(a.vals) && !th.all && a.vals[th.m] >= limits[i] {
			reached++
		}
	}
	n := 0
	for i, th := range r.thresholds {
		if th.m >= len(a.vals) || i >= len(limits) {
			break
		}
		if !th.all && reached > 0 && a.vals[th.m] < limits[i] {
			continue
		}
		if n == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		n++
		b.WriteString(r.names[th.m] + " " + formatValue(a.vals[th.m]))
		b.WriteString(" >= " + strconv.FormatFloat(limits[i], 'f', -1, 64))
	}
	if a.burst {
		b.WriteString(" in a " + time.Duration(int64(r.burstSlots)*r.slot).String() + " burst")
	}
	if r.kind == kindBaseline {
		b.WriteString(" (above its baseline)")
	}
	if al.Service != "" {
		b.WriteString(" (" + al.Service)
		if svc != nil && svc.Amplification != "" {
			b.WriteString(", amplification " + svc.Amplification + "x")
		}
		b.WriteString(")")
	}
	return b.String()
}

// formatValue prints a measure: whole above 100, three significant
// digits below (ratios, small rates).
func formatValue(v float64) string {
	if v >= 100 || v <= -100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// alertID is stable for one alert: its rule, key and start.
func alertID(rule string, k *keyBuf, start int64) string {
	h := fnv.New64a()
	h.Write([]byte(rule))
	h.Write(k[:])
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], uint64(start))
	h.Write(t[:])
	return hex.EncodeToString(h.Sum(nil))
}

// bucket is a token bucket over event time: rate tokens a second, a
// burst of twice that.
type bucket struct {
	rate, burst, tokens float64
	last                int64
	started             bool
}

func newBucket(rate float64) bucket {
	return bucket{rate: rate, burst: 2 * rate, tokens: 2 * rate}
}

// setRate changes the rate and burst, keeping the tokens in hand.
func (b *bucket) setRate(rate float64) {
	b.rate, b.burst = rate, 2*rate
	b.tokens = min(b.tokens, b.burst)
}

func (b *bucket) take(now int64) bool {
	if b.started && now > b.last {
		b.tokens = min(b.burst, b.tokens+float64(now-b.last)/1e9*b.rate)
	}
	if !b.started || now > b.last {
		b.last, b.started = now, true
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// windowEstimate is the estimate of a window's sums: their variance is
// summed, the largest weight that of an even sample at the mean rate.
func windowEstimate(total, v, k, rate float64) flow.Estimate {
	if total <= 0 {
		return flow.Estimate{}
	}
	n := max(rate, 1)
	return flow.Estimate{Value: total, Seen: total / n, Var: v, MaxW: (n - 1) * total / (n * max(k, 1))}
}
