package detect

import (
	"math"
	"time"

	"github.com/axiomhq/hyperloglog"
)

// flowLateness is how far behind the engine's clock flow records may
// arrive: they are written at the idle or active timeout, so their time
// (their last packet) lags the samples.
const flowLateness = int64(90 * time.Second)

// ruleState is a rule and its state: the keys it tracks and their
// alerts, its rate limit and its counters.
type ruleState struct {
	r       *rule
	keys    map[keyBuf]*keyState
	free    []*keyState // dropped states, for reuse
	active  map[*keyState]struct{}
	bucket  bucket
	limits  []float64   // the rule's thresholds, overridden by the configuration
	byGroup [][]float64 // per host group
	groups  *hostGroups
	// groupSpec: the host groups the limits came from, to tell on
	// reload whether they changed.
	groupSpec []HostGroup
	vals      []float64
	// For bursts: the sub-window's values (bvals), the same with the
	// thresholded rates at the low end of their interval (bjudge), and
	// the columns summed over the sub-window (bcols). dvals is scratch
	// for distinct estimates.
	bvals, bjudge, bcols, dvals []float64
	// rjudge is what the thresholds and condition judge when the rule
	// has reverse measures: those at the high end of their interval.
	rjudge     []float64
	bsecs      float64 // the length of the last burst sub-window judged
	burstHit   bool    // the last met passed on the burst
	bpps, bbps float64 // the burst's packet and bit rates
	scratch    *hyperloglog.Sketch
	lateness   int64
	depth      int // chain depth of the alerts being processed
	stats      ruleStats
}

// ruleStats are a rule's counters, read by metrics under the engine lock.
type ruleStats struct {
	events     uint64 // events of the rule's sources seen
	matches    uint64 // events the rule's filter kept
	late       uint64 // too old for the window: dropped
	evictions  uint64 // keys dropped because the rule's state was full
	full       uint64 // events dropped: the state was full of keys with running alerts
	suppressed uint64 // alerts held back by rate limits
	alerts     [4]uint64
	evalNanos  uint64
}

func newRuleState(r *rule, set *RuleSet, rate float64) *ruleState {
	rs := &ruleState{
		r:       r,
		keys:    map[keyBuf]*keyState{},
		active:  map[*keyState]struct{}{},
		bucket:  newBucket(rate),
		vals:    make([]float64, len(r.measures)),
		dvals:   make([]float64, len(r.measures)),
		scratch: newScratch(),
		groups:  set.groups,
	}
	if r.burstSlots > 0 {
		rs.bvals = make([]float64, len(r.measures))
		rs.bjudge = make([]float64, len(r.measures))
		rs.bcols = make([]float64, r.ncols+extraCols)
	}
	if r.hasReverse {
		rs.rjudge = make([]float64, len(r.measures))
	}
	rs.groupSpec = set.opts.HostGroups
	rs.limits, rs.byGroup = set.limitsOf(r)
	if r.sources&(1<<SourceFlows) != 0 {
		rs.lateness = flowLateness
	}
	return rs
}

// sameLimits reports whether a reloaded rule keeps the thresholds rs runs with.
func sameLimits(rs *ruleState, set *RuleSet, r *rule) bool {
	limits, byGroup := set.limitsOf(r)
	if !equalFloats(limits, rs.limits) || len(byGroup) != len(rs.byGroup) {
		return false
	}
	for i := range byGroup {
		if !equalFloats(byGroup[i], rs.byGroup[i]) {
			return false
		}
	}
	return true
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// key finds or makes the state of a key. Past the rule's bound a key
// without a running alert is evicted; nil means none could be.
func (rs *ruleState) key(k keyBuf, t int64) *keyState {
	if ks, ok := rs.keys[k]; ok {
		return ks
	}
	if len(rs.keys) >= rs.r.maxKeys {
		// Map iteration starts at a random place: a random victim.
		tries := 0
		for vk, vs := range rs.keys {
			if vs.alert == nil {
				rs.drop(vk, vs)
				rs.stats.evictions++
				break
			}
			if tries++; tries >= 16 {
				break
			}
		}
		if len(rs.keys) >= rs.r.maxKeys {
			rs.stats.full++
			return nil
		}
	}
	limits := rs.limits
	if rs.byGroup != nil {
		if a, ok := keyAddr(&k, rs.r.group); ok {
			if g, ok := rs.groups.lookup(a); ok {
				limits = rs.byGroup[g]
			}
		}
	}
	var ks *keyState
	if n := len(rs.free); n > 0 {
		ks, rs.free = rs.free[n-1], rs.free[:n-1]
		ks.reuse(k, limits)
	} else {
		ks = newKeyState(rs.r, k, limits)
	}
	ks.first, ks.last = t, t
	rs.keys[k] = ks
	return ks
}

// maxFree bounds the key states a rule keeps for reuse.
const maxFree = 1024

// drop forgets a key; its state is kept for reuse, so floods of new
// keys (spoofed sources) do not allocate for every one.
func (rs *ruleState) drop(k keyBuf, ks *keyState) {
	delete(rs.keys, k)
	if len(rs.free) < maxFree {
		rs.free = append(rs.free, ks)
	}
}

// process runs the rule over events of one source.
func (rs *ruleState) process(e *Engine, source Source, evs []Event) {
	r := rs.r
	for i := range evs {
		ev := &evs[i]
		rs.stats.events++
		if ev.allowed || source == SourceAlerts && ev.Rule == r.name {
			continue // a rule does not read its own alerts
		}
		if r.kind == kindSequence {
			rs.sequenceEvent(e, source, ev)
			continue
		}
		if r.hasReverse && r.revFilter(ev) {
			rs.reverseEvent(ev)
		}
		if !r.filter(ev) {
			continue
		}
		rs.stats.matches++
		k, ok := makeKey(ev, r.group)
		if !ok {
			continue
		}
		ks := rs.key(k, ev.Time)
		if ks == nil {
			continue
		}
		switch r.kind {
		case kindThreshold:
			if rs.windowEvent(ks, ev) {
				rs.evaluate(e, ks, ev.Time)
			}
		case kindBaseline:
			rs.baselineEvent(e, ks, ev)
		case kindAbsence:
			rs.absenceEvent(e, ks, ev)
		}
	}
}

// reverseEvent accounts an event in the reverse measures of the key it
// has seen from its other end. It keeps the key alive but is not a
// sample of it: min_samples, evidence, alerts and rates ignore it.
func (rs *ruleState) reverseEvent(ev *Event) {
	r := rs.r
	k, ok := makeKeyDir(ev, r.group, true)
	if !ok {
		return
	}
	// Only keys traffic the rule reads has made: the other way of every
	// conversation would double the keys (and evict victims when they
	// are full) for the few that become victims. A host's requests count
	// from its first answer on.
	ks := rs.keys[k]
	if ks == nil {
		return
	}
	s := ev.Time / r.slot
	if s <= ks.head-int64(r.nslots) {
		return
	}
	ks.advance(r, s)
	ks.addReverse(r, ev, s)
	ks.last = max(ks.last, ev.Time)
}

// windowEvent adds an event to its slot of the key's window. It reports
// false for an event too old for the window.
func (rs *ruleState) windowEvent(ks *keyState, ev *Event) bool {
	r := rs.r
	s := ev.Time / r.slot
	if s <= ks.head-int64(r.nslots) {
		rs.stats.late++
		return false
	}
	if s > ks.head {
		ks.advance(r, s)
		if ks.alert == nil && ks.head-ks.evStart >= 2*int64(r.nslots) {
			for i := range ks.evidence {
				ks.evidence[i].reset()
			}
			ks.evStart = ks.head
		}
	}
	ks.add(r, ev, s)
	ks.proto = ev.Proto
	for i, f := range r.evidence {
		ks.evidence[i].add(f.value(ev), float64(ev.Packets))
	}
	ks.first = min(ks.first, ev.Time)
	ks.last = max(ks.last, ev.Time)
	if a := ks.alert; a != nil {
		a.account(ev)
	}
	return true
}

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

func (rs *ruleState) evaluate(e *Engine, ks *keyState, t int64) {
	if rs.met(ks, t) {
		rs.trigger(e, ks, t, rs.vals, nil)
	}
}

// tick runs the time-driven part of the rule at now: window expiry and
// figures of running alerts, updates and ends, absence, idle keys.
func (rs *ruleState) tick(e *Engine, now int64, sweep bool) {
	r := rs.r
	wnow := now - rs.lateness
	for ks := range rs.active {
		a := ks.alert
		if ks.rows != nil && wnow > 0 {
			ks.advance(r, wnow/r.slot)
			a.current(ks, r)
		}
		switch {
		case r.kind == kindAbsence:
			// An absence alert ends when the key is seen again.
		case now-a.last >= r.quiet:
			rs.end(e, ks, now)
		case r.updateEvery > 0 && now-a.lastReport >= r.updateEvery:
			a.lastReport = now
			if !a.suppressed {
				e.report(rs, rs.build(ks, stateUpdate, now))
			}
		}
	}
	if sweep {
		rs.sweep(e, now)
	}
}

// sweep drops keys that can no longer matter, and checks absence.
func (rs *ruleState) sweep(e *Engine, now int64) {
	r := rs.r
	wnow := now - rs.lateness
	for k, ks := range rs.keys {
		if ks.alert != nil {
			continue
		}
		switch r.kind {
		case kindThreshold:
			if ks.last < wnow-r.window {
				rs.drop(k, ks)
			}
		case kindBaseline:
			if ks.last < wnow-max(10*r.window, int64(5*time.Minute)) {
				rs.drop(k, ks)
			}
		case kindSequence:
			if ks.seq.stage == 0 || wnow-ks.seq.t0 > r.within {
				rs.drop(k, ks)
			}
		case kindAbsence:
			silent := wnow - ks.last
			if silent >= r.after && ks.last-ks.first >= r.learn {
				rs.trigger(e, ks, now, nil, nil)
			} else if silent >= r.after {
				rs.drop(k, ks) // never established: forget it
			}
		}
	}
}

// endAll ends every running alert of the rule (shutdown, reload).
func (rs *ruleState) endAll(e *Engine, now int64) {
	for ks := range rs.active {
		rs.end(e, ks, now)
	}
}
