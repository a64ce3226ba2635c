package detect

import (
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/axiomhq/hyperloglog"

	"github.com/vigil-sensor/vigil/flow"
)

// EngineConfig limits what the engine reports.
type EngineConfig struct {
	AlertsPerSecond     float64 // all rules together; 0: the default
	RuleAlertsPerSecond float64 // each rule; 0: the default
	// MaxMemory bounds the detection state, in bytes (0: no bound); past
	// it rules shed keys (budget.go).
	MaxMemory int64
	// MaxCPU is the share of one core the engine may take (0: no guard);
	// past it rules shed events by severity (budget.go).
	MaxCPU float64
	// Workers is how many cores the engine runs on (workers.go); 0 or 1:
	// one, in the caller's goroutine.
	Workers int
}

// Alert rate defaults: a burst of twice the rate is allowed.
const (
	DefaultAlertsPerSecond     = 100
	DefaultRuleAlertsPerSecond = 20
)

// sweepEvery is how often (event time) idle keys are dropped and
// absence is checked.
const sweepEvery = int64(time.Second)

// maxChainDepth bounds how many times alerts feed rules that raise
// alerts.
const maxChainDepth = 4

// Engine runs a rule set over events. It is safe for concurrent use:
// samples, flow records and the clock may come from different
// goroutines. Time is event time: the newest event time seen (or given
// to Advance) is the engine's now, so replayed captures alert as they
// would have live.
type Engine struct {
	mu     sync.Mutex
	set    *RuleSet
	rules  []*ruleState
	cfg    EngineConfig
	emit   func([]flow.Alert)
	global bucket

	now       int64
	rate      uint32 // the sampling rate of the newest sample read
	lastSweep int64
	events    []Event
	// disp routes events to the rules that can match them, per source
	// (samples, flows); rt is its scratch. naive turns it off: every
	// rule reads every event (the differential test's reference).
	disp  [len(sourceNames)]*dispatch
	rt    routing
	naive bool
	// fullSweep: sweeps scan every key of every rule, without wheels (the
	// wheel test's reference).
	fullSweep bool
	seen      [len(sourceNames)]uint64 // events run, per source
	live      []int32                  // rules with running alerts (noteLive)
	mem       budget
	cpu       cpuGuard
	clock     func() time.Time // wall clock, for engine time and the CPU guard
	// With detect.workers > 1 the engine is a pool of workers, each an
	// engine owning the keys that hash to it (workers.go): pool is set
	// on the engine the daemon holds, shard/gate on each worker.
	pool    *pool
	shard   shard
	gate    *gate
	parts   []part       // the partitions of the rules' keys (workers.go)
	owned   []uint64     // per event of the batch, the partitions owned
	pending []flow.Alert // to emit at the end of the call
	chain   []chained    // alerts to feed back to rules reading alerts
	stats   engineStats
}

type chained struct {
	a     flow.Alert
	depth int
	pos   int32 // of the rule that raised it
}

type engineStats struct {
	chainDropped uint64 // alerts not fed back past maxChainDepth
	suppressed   uint64 // by the global limit
	reloads      uint64
	cpuLoad      float64 // the engine's share of a core over the last period
}

// NewEngine returns an engine running set, reporting alerts to emit.
// emit is called with the engine's lock held: it must not call back
// into the engine, and should be quick (an output's spool append).
func NewEngine(set *RuleSet, cfg EngineConfig, emit func([]flow.Alert)) *Engine {
	if cfg.AlertsPerSecond <= 0 {
		cfg.AlertsPerSecond = DefaultAlertsPerSecond
	}
	if cfg.RuleAlertsPerSecond <= 0 {
		cfg.RuleAlertsPerSecond = DefaultRuleAlertsPerSecond
	}
	if cfg.Workers > 1 {
		return &Engine{cfg: cfg, emit: emit, pool: newPool(set, cfg, emit)}
	}
	e := &Engine{cfg: cfg, emit: emit, global: newBucket(cfg.AlertsPerSecond), clock: time.Now}
	e.install(set, nil)
	return e
}

// install makes set the running rules, keeping the state of every rule
// whose definition did not change.
func (e *Engine) install(set *RuleSet, old []*ruleState) {
	keep := map[string]*ruleState{}
	for _, rs := range old {
		keep[rs.r.name] = rs
	}
	e.set = set
	e.rules = e.rules[:0:0]
	for _, r := range set.rules {
		if rs, ok := keep[r.name]; ok && rs.r.canon == r.canon && sameLimits(rs, set, r) &&
			reflect.DeepEqual(rs.groupSpec, set.opts.HostGroups) {
			rs.r = r
			rs.groups = set.groups
			e.rules = append(e.rules, rs)
			continue
		}
		rs := newRuleState(r, set, e.cfg.RuleAlertsPerSecond)
		rs.stats.seen = e.seen
		if !e.fullSweep {
			rs.wheel = newWheel(r, rs.lateness)
		}
		e.rules = append(e.rules, rs)
	}
	e.installParts()
	for _, src := range []Source{SourceSamples, SourceFlows} {
		e.disp[src] = newDispatch(e.rules, src)
	}
	e.live = e.live[:0]
	for i, rs := range e.rules {
		rs.pos, rs.live = int32(i), false
		if len(rs.active) > 0 {
			e.noteLive(rs)
		}
	}
	e.mem.install(e.rules, e.cfg.MaxMemory)
}

// Replace installs a new rule set (a reload). Rules whose definition and
// thresholds are unchanged keep their state and their running alerts;
// the alerts of rules that changed or went away are ended.
func (e *Engine) Replace(set *RuleSet) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.pool; p != nil {
		p.each(func(w *Engine) { w.Replace(set) })
		return
	}
	old := e.rules
	e.install(set, old)
	kept := map[*ruleState]bool{}
	for _, rs := range e.rules {
		kept[rs] = true
	}
	for _, rs := range old {
		if !kept[rs] {
			rs.endAll(e, e.now)
		}
	}
	e.stats.reloads++
	e.flush()
}

// SetConfig changes the alert rate limits (a reload).
func (e *Engine) SetConfig(cfg EngineConfig) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if cfg.AlertsPerSecond <= 0 {
		cfg.AlertsPerSecond = DefaultAlertsPerSecond
	}
	if cfg.RuleAlertsPerSecond <= 0 {
		cfg.RuleAlertsPerSecond = DefaultRuleAlertsPerSecond
	}
	if p := e.pool; p != nil { // the number of workers is fixed at start
		cfg.Workers = e.cfg.Workers
		e.cfg = cfg
		p.gate.setRates(cfg)
		for _, w := range p.workers {
			w.SetConfig(workerConfig(cfg, len(p.workers)))
		}
		return
	}
	e.cfg = cfg
	e.mem.install(e.rules, cfg.MaxMemory)
	e.global.setRate(cfg.AlertsPerSecond)
	for _, rs := range e.rules {
		rs.bucket.setRate(cfg.RuleAlertsPerSecond)
	}
}

// RuleSet returns the running rule set.
func (e *Engine) RuleSet() *RuleSet {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pool != nil {
		return e.pool.workers[0].RuleSet()
	}
	return e.set
}

// Samples runs the rules reading samples over a batch.
func (e *Engine) Samples(batch []flow.Sample) {
	e.mu.Lock()
	defer e.mu.Unlock()
	evs := e.buffer(len(batch))
	for i := range batch {
		evs[i].FromSample(&batch[i])
	}
	if len(evs) > 0 {
		e.rate = evs[len(evs)-1].Rate
	}
	if e.pool != nil {
		e.pool.batch(SourceSamples, evs)
		return
	}
	e.run(SourceSamples, evs)
	e.flush()
}

// Records runs the rules reading flow records over a batch.
func (e *Engine) Records(recs []flow.Record) {
	e.mu.Lock()
	defer e.mu.Unlock()
	evs := e.buffer(len(recs))
	for i := range recs {
		evs[i].FromRecord(&recs[i])
	}
	if e.pool != nil {
		e.pool.batch(SourceFlows, evs)
		return
	}
	e.run(SourceFlows, evs)
	e.flush()
}

// Events runs the rules reading source over events (tests, plugins).
func (e *Engine) Events(source Source, evs []Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pool != nil {
		e.pool.batch(source, evs)
		return
	}
	e.run(source, evs)
	e.flush()
}

// Advance moves the engine's clock to now (event time) if it is ahead:
// alerts are updated or ended, absence is checked and idle keys are
// dropped. Live, the daemon calls it with the wall clock; a replay with
// the capture's time.
func (e *Engine) Advance(now int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pool != nil {
		e.pool.each(func(w *Engine) { w.tick(now) })
		return
	}
	e.tick(now)
	e.flush()
}

// Close ends every running alert at now (shutdown, end of a replay).
func (e *Engine) Close(now int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pool != nil {
		e.pool.each(func(w *Engine) {
			w.tick(now)
			for _, rs := range w.rules {
				rs.endAll(w, max(now, w.now))
			}
		})
		return
	}
	e.tick(now)
	for _, rs := range e.rules {
		rs.endAll(e, max(now, e.now))
	}
	e.flush()
}

func (e *Engine) buffer(n int) []Event {
	if cap(e.events) < n {
		e.events = make([]Event, n)
	}
	return e.events[:n]
}

// run feeds events of one source to every rule reading it, rule by rule.
func (e *Engine) run(source Source, evs []Event) {
	if len(evs) == 0 {
		return
	}
	e.runMarked(source, evs, e.mark(evs))
}

// mark notes on each event what every rule needs to know of it (on the
// allow list, an IPv4-mapped address), and returns the newest time.
func (e *Engine) mark(evs []Event) (newest int64) {
	allow := e.set.lists.Get(AllowList)
	if allow != nil && allow.Len() == 0 {
		allow = nil
	}
	for i := range evs {
		ev := &evs[i]
		newest = max(newest, ev.Time)
		if allow != nil && (allow.Contains(ev.SrcAddr) || allow.Contains(ev.DstAddr)) {
			ev.allowed = true
		}
		ev.mapped = ev.SrcAddr.Is4In6() || ev.DstAddr.Is4In6()
	}
	return newest
}

// runMarked runs marked events (newest: their newest time): every
// rule, then the clock.
func (e *Engine) runMarked(source Source, evs []Event, newest int64) {
	latest := max(e.now, newest)
	e.seen[source] += uint64(len(evs))
	e.markOwned(evs)
	if e.naive || e.disp[source] == nil {
		t := e.clock()
		for _, rs := range e.rules {
			if rs.r.sources&(1<<source) == 0 {
				continue
			}
			if e.shedCPU(rs) {
				rs.stats.shedCPU += uint64(len(evs))
				continue
			}
			rs.process(e, source, evs, nil, false)
			next := e.clock()
			rs.stats.evalNanos += uint64(next.Sub(t))
			e.account(next.Sub(t), next)
			t = next
		}
	} else {
		e.dispatch(source, evs)
	}
	e.tick(latest)
}

// dispatch runs each rule over the events of a batch it can match, in
// rule order (so rate limits and chaining see alerts in the order a
// naive run would raise them). Time is charged to the rules that ran:
// each its own evaluation, and the routing shared by events routed.
func (e *Engine) dispatch(source Source, evs []Event) {
	d := e.disp[source]
	t0 := e.clock()
	var owned []uint64
	if e.shard.n > 1 && len(e.parts) > 0 {
		owned = e.owned
	}
	d.route(evs, owned, &e.rt)
	t := e.clock()
	route, routed := uint64(t.Sub(t0)), e.rt.routed
	d.each(&e.rt, func(rid int, idx []int32, exact bool) {
		rs := e.rules[rid]
		n := len(idx)
		if idx == nil {
			n = len(evs)
		}
		if e.shedCPU(rs) {
			rs.stats.shedCPU += uint64(n)
			return
		}
		rs.process(e, source, evs, idx, exact)
		next := e.clock()
		rs.stats.evalNanos += uint64(next.Sub(t)) + route*uint64(n)/uint64(max(routed, 1))
		t = next
	})
	e.account(t.Sub(t0), t)
}

// tick advances the clock and runs the time-driven parts of the rules.
func (e *Engine) tick(now int64) {
	if now <= e.now {
		return
	}
	e.now = now
	sweep := now-e.lastSweep >= sweepEvery
	if sweep {
		e.lastSweep = now
	}
	if sweep {
		for _, rs := range e.rules {
			rs.tick(e, now, true)
		}
	} else {
		for i := 0; i < len(e.live); i++ {
			e.rules[e.live[i]].tick(e, now, false)
		}
	}
	e.relist()
}

// live keeps, in rule order, the rules with running alerts: between
// sweeps only they have anything to do when the clock moves, so a tick
// costs the rules alerting, not the rules loaded.
func (e *Engine) noteLive(rs *ruleState) {
	if rs.live {
		return
	}
	rs.live = true
	i, _ := slices.BinarySearch(e.live, rs.pos)
	e.live = slices.Insert(e.live, i, rs.pos)
}

// relist drops the rules whose alerts have all ended from live.
func (e *Engine) relist() {
	e.live = slices.DeleteFunc(e.live, func(pos int32) bool {
		rs := e.rules[pos]
		rs.live = len(rs.active) > 0
		return !rs.live
	})
}

// newScratch is a sketch to merge a window's slots into.
func newScratch() *hyperloglog.Sketch {
	sk, _ := hyperloglog.NewSketch(hllPrecision, false)
	return sk
}
