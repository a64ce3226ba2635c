package detect

import (
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
	depth      int     // chain depth of the alerts being processed
	pos        int32   // index in the engine's rules
	part       int     // the partition of its keys among workers; -1: none (workers.go)
	mem        *budget // the engine's memory budget; nil: none
	keyBytes   int64   // the estimate of one key's state
	wheel      *wheel  // threshold rules: keys by the second last seen (wheel.go); nil: full sweeps
	peak       int     // the most keys held since the map was made
	live       bool    // in the engine's live list: has running alerts
	evict      evictLevels
	stats      ruleStats
}

// ruleStats are a rule's counters, read by metrics under the engine lock.
type ruleStats struct {
	// seen is the engine's count of events per source when the state
	// was made: the rule's events are the engine's since (every event
	// of its sources is one the rule evaluated, read or skipped by
	// dispatch).
	seen       [len(sourceNames)]uint64
	matches    uint64 // events the rule's filter kept
	late       uint64 // too old for the window: dropped
	evictions  uint64 // keys dropped because the rule's state was full
	full       uint64 // events dropped: the state was full of keys with running alerts
	suppressed uint64 // alerts held back by rate limits
	alerts     [4]uint64
	evalNanos  uint64
	shedKeys   uint64 // keys dropped for the memory budget
	shedEvents uint64 // events dropped: no memory for a new key
	shedCPU    uint64 // events not evaluated: shed by the CPU guard
}

func newRuleState(r *rule, set *RuleSet, rate float64) *ruleState {
	rs := &ruleState{
		r:        r,
		keys:     map[keyBuf]*keyState{},
		active:   map[*keyState]struct{}{},
		bucket:   newBucket(rate),
		vals:     make([]float64, len(r.measures)),
		dvals:    make([]float64, len(r.measures)),
		groups:   set.groups,
		evict:    evictLevels{halfLife: evictHalfLife(r)},
		keyBytes: keyBytes(r),
	}
	if r.hasDistinct {
		rs.scratch = newScratch() // 1 KB: only distinct measures merge sketches
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

// key finds or makes the state of a key, and counts the event for it.
// Past the rule's bound the least valuable key without a running alert
// is evicted (see evictLevels); nil means none could be.
func (rs *ruleState) key(k keyBuf, t int64) *keyState {
	lv := &rs.evict
	if t-lv.decayAt >= lv.halfLife {
		lv.decay(t)
	}
	if ks, ok := rs.keys[k]; ok {
		lv.seen(ks)
		return ks
	}
	if len(rs.keys) >= rs.r.maxKeys {
		vs := lv.victim()
		if vs == nil {
			rs.stats.full++
			return nil
		}
		rs.drop(vs.key, vs)
		rs.stats.evictions++
	}
	limits := rs.limits
	if rs.byGroup != nil {
		if a, ok := keyAddr(&k, rs.r.group); ok {
			if g, ok := rs.groups.lookup(a); ok {
				limits = rs.byGroup[g]
			}
		}
	}
	if len(rs.free) == 0 && rs.mem != nil && !rs.mem.reserve(rs) {
		return nil
	}
	var ks *keyState
	if n := len(rs.free); n > 0 {
		ks, rs.free = rs.free[n-1], rs.free[:n-1]
		ks.reuse(rs.r, k, limits)
	} else {
		ks = newKeyState(rs.r, k, limits)
	}
	ks.first = t
	rs.keys[k] = ks
	rs.touch(ks, t)
	rs.grew()
	lv.link(ks, 1)
	return ks
}

// touch notes that ks was seen at t (its last, and its wheel bucket).
func (rs *ruleState) touch(ks *keyState, t int64) {
	ks.last = max(ks.last, t)
	if rs.wheel != nil {
		rs.wheel.place(ks)
	}
}

// maxFree bounds the key states a rule keeps for reuse.
const maxFree = 1024

// drop forgets a key; its state is kept for reuse, so floods of new
// keys (spoofed sources) do not allocate for every one.
func (rs *ruleState) drop(k keyBuf, ks *keyState) {
	if ks.ev.linked {
		rs.evict.unlink(ks)
	}
	if rs.wheel != nil {
		rs.wheel.forget(ks)
	}
	delete(rs.keys, k)
	if len(rs.free) < maxFree {
		rs.free = append(rs.free, ks)
	} else {
		rs.discard(ks)
	}
}

// process runs the rule over events of one source: those at idx, or
// all of them when idx is nil. exact: dispatch found that the rule's
// filter matches the events at idx.
func (rs *ruleState) process(e *Engine, source Source, evs []Event, idx []int32, exact bool) {
	if idx == nil {
		for i := range evs {
			rs.event(e, source, &evs[i], false, e.ownership(i))
		}
	} else {
		for _, i := range idx {
			rs.event(e, source, &evs[i], exact, e.ownership(int(i)))
		}
	}
	if rs.mem != nil {
		rs.mem.settle(rs) // sketches the events made, past the budget
	}
}

// event runs the rule over one event; known: its filter is known to
// match it; own: the partitions this worker owns of it (workers.go).
func (rs *ruleState) event(e *Engine, source Source, ev *Event, known bool, own uint64) {
	r := rs.r
	if ev.allowed || source == SourceAlerts && ev.Rule == r.name {
		return // a rule does not read its own alerts
	}
	if r.kind == kindSequence {
		rs.sequenceEvent(e, source, ev, own)
		return
	}
	if r.hasReverse && r.revFilter(ev) {
		rs.reverseEvent(e, ev, own)
	}
	if !(known && !ev.mapped) && !r.filter(ev) {
		return
	}
	ks := rs.matched(e, ev, own)
	if ks == nil {
		return
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

// matched counts an event the rule's filter kept, and finds or makes its
// key's state: nil when the key is another worker's, cannot be made, or
// there is no room for it.
func (rs *ruleState) matched(e *Engine, ev *Event, own uint64) *keyState {
	k, ok := makeKey(ev, rs.r.group)
	if !e.owns(rs, ok, &k, own, false) {
		return nil // another worker's key
	}
	rs.stats.matches++
	if !ok {
		return nil
	}
	return rs.key(k, ev.Time)
}

// reverseEvent accounts an event in the reverse measures of the key it
// has seen from its other end. It keeps the key alive but is not a
// sample of it: min_samples, evidence, alerts and rates ignore it.
func (rs *ruleState) reverseEvent(e *Engine, ev *Event, own uint64) {
	r := rs.r
	k, ok := makeKeyDir(ev, r.group, true)
	if !ok || !e.owns(rs, true, &k, own, true) {
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
	rs.touch(ks, ev.Time)
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
	if n := ks.add(r, ev, s); n > 0 && rs.mem != nil {
		rs.mem.used += n * sketchBytes
	}
	ks.proto = ev.Proto
	for i, f := range r.evidence {
		ks.evidence[i].add(f.value(ev), float64(ev.Packets))
	}
	ks.first = min(ks.first, ev.Time)
	rs.touch(ks, ev.Time)
	if a := ks.alert; a != nil {
		a.account(ev)
	}
	return true
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
	if rs.wheel != nil {
		rs.sweepWheel(wnow - r.window)
		return
	}
	clear(rs.evict.unlinked) // the scan finds them
	rs.evict.unlinked = rs.evict.unlinked[:0]
	for k, ks := range rs.keys {
		if ks.alert != nil {
			continue
		}
		if !ks.ev.linked {
			// Its alert has ended: evictable again.
			rs.evict.link(ks, rs.evict.count(ks))
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
