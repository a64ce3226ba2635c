package detect

import (
	"time"

	"github.com/vigil-sensor/vigil/flow"
)

// Alerts leaving the engine: the rate limits, chaining to the rules that
// read alerts, and emission.

// feedChain gives rules reading alerts the alerts raised so far, and
// the alerts those raise, up to maxChainDepth.
func (e *Engine) feedChain() {
	for len(e.chain) > 0 {
		evs, d, dropped := chainEvents(e.chain)
		e.chain = nil
		e.stats.chainDropped += dropped
		e.runChained(evs, d+1)
	}
}

// chainEvents is the events of alerts to chain, and their deepest chain
// depth; those at maxChainDepth are dropped and counted.
func chainEvents(batch []chained) (evs []Event, depth int, dropped uint64) {
	evs = make([]Event, 0, len(batch))
	for _, c := range batch {
		if c.depth >= maxChainDepth {
			dropped++
			continue
		}
		var ev Event
		ev.FromAlert(&c.a)
		evs = append(evs, ev)
		depth = max(depth, c.depth)
	}
	return evs, depth, dropped
}

func (e *Engine) runChained(evs []Event, depth int) {
	if len(evs) == 0 {
		return
	}
	e.seen[SourceAlerts] += uint64(len(evs))
	e.markOwned(evs)
	for _, rs := range e.rules {
		if rs.r.sources&(1<<SourceAlerts) == 0 {
			continue
		}
		start := time.Now()
		rs.depth = depth
		rs.process(e, SourceAlerts, evs, nil, false)
		rs.depth = 0
		rs.stats.evalNanos += uint64(time.Since(start))
	}
}

// report queues an alert for emission and, for rules reading alerts,
// for chaining. It applies the global and per-rule rate limits to starts
// and updates; ends always pass so every reported start is ended.
func (e *Engine) report(rs *ruleState, a flow.Alert) bool {
	if g := e.gate; g != nil && a.State != flow.AlertEnd {
		switch g.take(rs.r.name, max(e.now, a.Time)) {
		case gateRule:
			rs.stats.suppressed++
			return false
		case gateGlobal:
			e.stats.suppressed++
			rs.stats.suppressed++
			return false
		}
	} else if a.State != flow.AlertEnd {
		now := max(e.now, a.Time)
		if !rs.bucket.take(now) {
			rs.stats.suppressed++
			return false
		}
		if !e.global.take(now) {
			e.stats.suppressed++
			rs.stats.suppressed++
			return false
		}
	}
	rs.stats.alerts[a.State]++
	e.pending = append(e.pending, a)
	e.chain = append(e.chain, chained{a: a, depth: rs.depth, pos: rs.pos})
	return true
}

func (e *Engine) flush() {
	if e.gate != nil {
		return // a worker: the pool chains and emits (workers.go)
	}
	e.feedChain()
	if len(e.pending) > 0 && e.emit != nil {
		e.emit(e.pending)
	}
	e.pending = e.pending[:0]
	e.chain = e.chain[:0]
}
