package detect

import (
	"cmp"
	"hash/maphash"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vigil-sensor/vigil/flow"
)

// With detect.workers > 1 the engine is a pool of workers, one per
// core. Each worker is an engine with every rule, and owns the keys
// that hash to it: it routes and filters every event, and updates only
// the windows, sequences and alerts of its own keys. A key's events,
// forward and reverse, all go to its owner, so each key's state is what
// one engine would hold. The rate limits are one gate for all workers
// (a rule's limit and the global one hold across workers), and alerts
// are chained by the pool: each alert goes to every worker, and the
// owner of the chained rule's key reads it. A batch returns when every
// worker is done with it, so the caller may reuse it.

// MaxWorkers bounds detect.workers.
const MaxWorkers = 64

// shard is which keys a worker owns: those whose hash is i modulo n.
type shard struct {
	i, n int
	seed maphash.Seed // keys of rules with no address
	salt uint64       // addresses
}

// owns reports whether the worker owns key k; a key that could not be
// made (ok false) is the first worker's to count.
func (s *shard) owns(ok bool, k *keyBuf) bool {
	if s.n <= 1 {
		return true
	}
	if !ok {
		return s.i == 0
	}
	return maphash.Comparable(s.seed, *k)%uint64(s.n) == uint64(s.i)
}

// gate is the rate limits of a pool's workers.
type gate struct {
	mu     sync.Mutex
	global bucket
	rate   float64 // of each rule
	rules  map[string]*bucket
}

type gateVerdict uint8

const (
	gatePass   gateVerdict = iota
	gateRule               // the rule's limit
	gateGlobal             // the global limit
)

func (g *gate) take(rule string, now int64) gateVerdict {
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.rules[rule]
	if b == nil {
		nb := newBucket(g.rate)
		b = &nb
		g.rules[rule] = b
	}
	if !b.take(now) {
		return gateRule
	}
	if !g.global.take(now) {
		return gateGlobal
	}
	return gatePass
}

func (g *gate) setRates(cfg EngineConfig) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.global.setRate(cfg.AlertsPerSecond)
	g.rate = cfg.RuleAlertsPerSecond
	for _, b := range g.rules {
		b.setRate(cfg.RuleAlertsPerSecond)
	}
}

// pool is the workers of an engine with detect.workers > 1. The
// engine's lock serializes calls; within one, workers run in parallel.
type pool struct {
	workers      []*Engine
	gate         *gate
	emit         func([]flow.Alert)
	pending      []flow.Alert
	chain        []chained
	chainDropped uint64
}

// workerConfig is a worker's share of cfg: its memory budget divided.
func workerConfig(cfg EngineConfig, n int) EngineConfig {
	cfg.Workers = 1
	cfg.MaxMemory /= int64(n)
	return cfg
}

func newPool(set *RuleSet, cfg EngineConfig, emit func([]flow.Alert)) *pool {
	n := min(cfg.Workers, MaxWorkers)
	p := &pool{emit: emit, gate: &gate{global: newBucket(cfg.AlertsPerSecond), rate: cfg.RuleAlertsPerSecond, rules: map[string]*bucket{}}}
	seed := maphash.MakeSeed()
	salt := maphash.Comparable(seed, 0)
	for i := range n {
		w := &Engine{cfg: workerConfig(cfg, n), global: newBucket(cfg.AlertsPerSecond), clock: time.Now,
			gate: p.gate, shard: shard{i: i, n: n, seed: seed, salt: salt}}
		w.install(set, nil)
		p.workers = append(p.workers, w)
	}
	return p
}

// each runs f on every worker in parallel and waits, then chains and
// emits what they raised.
func (p *pool) each(f func(w *Engine)) {
	var wg sync.WaitGroup
	for _, w := range p.workers[1:] {
		wg.Go(func() { f(w) })
	}
	f(p.workers[0])
	wg.Wait()
	p.settle()
}

func (p *pool) batch(source Source, evs []Event) {
	if len(evs) == 0 {
		return
	}
	newest := p.workers[0].mark(evs) // once: the workers only read events
	p.each(func(w *Engine) { w.runMarked(source, evs, newest) })
}

// collect takes what the workers raised since the last call, in rule
// order as one engine raises it (each rule's alerts in the order its
// keys' owners raised them).
func (p *pool) collect() {
	n := len(p.chain)
	for _, w := range p.workers {
		p.chain = append(p.chain, w.chain...)
		w.pending, w.chain = w.pending[:0], w.chain[:0]
	}
	slices.SortStableFunc(p.chain[n:], func(a, b chained) int { return cmp.Compare(a.pos, b.pos) })
	for _, c := range p.chain[n:] {
		p.pending = append(p.pending, c.a)
	}
}

// settle chains the alerts raised to the rules reading alerts, on every
// worker (the owner of each key reads it), up to maxChainDepth, and
// emits everything raised.
func (p *pool) settle() {
	p.collect()
	for len(p.chain) > 0 {
		evs, d, dropped := chainEvents(p.chain)
		p.chain = nil
		p.chainDropped += dropped
		for _, w := range p.workers {
			w.runChained(evs, d+1)
		}
		p.collect()
	}
	if len(p.pending) > 0 && p.emit != nil {
		p.emit(p.pending)
	}
	p.pending = p.pending[:0]
}

// stats merges the workers' rule counters: the events every worker saw
// once, the rest summed.
func (p *pool) stats() []RuleStats {
	var out []RuleStats
	for i, w := range p.workers {
		ws := w.Stats()
		if i == 0 {
			out = ws
			continue
		}
		for j := range ws {
			o, s := &out[j], &ws[j]
			o.Matches += s.Matches
			o.Late += s.Late
			o.Evictions += s.Evictions
			o.StateFull += s.StateFull
			o.Suppressed += s.Suppressed
			o.Starts += s.Starts
			o.Updates += s.Updates
			o.Ends += s.Ends
			o.EvalSeconds += s.EvalSeconds
			o.ShedKeys += s.ShedKeys
			o.ShedEvents += s.ShedEvents
			o.ShedCPU += s.ShedCPU
			o.Keys += s.Keys
			o.Active += s.Active
		}
	}
	total := 0.0
	for _, s := range out {
		total += s.EvalSeconds
	}
	for i := range out {
		out[i].EvalShare = 0
		if total > 0 {
			out[i].EvalShare = out[i].EvalSeconds / total
		}
	}
	return out
}

func (p *pool) engineStats() EngineStats {
	var es EngineStats
	for i, w := range p.workers {
		ws := w.EngineStats()
		if i == 0 {
			es = ws
			continue
		}
		es.Suppressed += ws.Suppressed
		es.MemoryBytes += ws.MemoryBytes
		es.MemoryLimit += ws.MemoryLimit
		es.CPULoad = max(es.CPULoad, ws.CPULoad)
		es.CPUShedLevel = max(es.CPUShedLevel, ws.CPUShedLevel)
	}
	es.ChainDropped += p.chainDropped
	es.Workers = len(p.workers)
	return es
}

// Partitions. Most rules key by an address (dst_addr, src_addr/24): a
// worker then owns a key by the hash of that address as the key holds it,
// which it can tell from the event before any rule runs. Per batch each
// worker marks, per distinct partition in its rules (at most maxParts),
// which events' forward and reverse addresses it owns; dispatch skips
// the rules it does not own an event for, so a worker's routing, filters
// and cold rule state follow its share of the events. Rules keyed by no
// address are owned by the hash of their whole key.

// maxParts bounds the distinct partitions (two bits each in a uint64).
const maxParts = 32

// part is an address a key holds: which one, and masked how.
type part struct {
	dst          bool
	bits4, bits6 int
}

// partOf is the partition of a rule: its key's first address field.
func partOf(r *rule) (part, bool) {
	for _, g := range r.group {
		if g.kind == gAddr {
			return part{dst: g.dst, bits4: g.bits4, bits6: g.bits6}, true
		}
	}
	return part{}, false
}

// installParts numbers the partitions of the rules (rs.part: -1 for
// none) and the mask dispatch checks per rule.
func (e *Engine) installParts() {
	e.parts = e.parts[:0]
	for _, rs := range e.rules {
		rs.part = -1
		p, ok := partOf(rs.r)
		if !ok || e.shard.n <= 1 {
			continue
		}
		i := slices.Index(e.parts, p)
		if i < 0 && len(e.parts) < maxParts {
			i = len(e.parts)
			e.parts = append(e.parts, p)
		}
		rs.part = i
	}
}

// owned is, per event of the batch, the bits of the addresses this
// worker owns: 1 << 2p for partition p's forward address, 1 << (2p+1)
// for its reverse one.
func (e *Engine) markOwned(evs []Event) {
	if e.shard.n <= 1 || len(e.parts) == 0 {
		return
	}
	if cap(e.owned) < len(evs) {
		e.owned = make([]uint64, len(evs))
	}
	e.owned = e.owned[:len(evs)]
	for i := range evs {
		ev := &evs[i]
		var m uint64
		for p, pt := range e.parts {
			fwd, rev := ev.SrcAddr, ev.DstAddr
			if pt.dst {
				fwd, rev = rev, fwd
			}
			if e.ownsAddr(fwd, pt) {
				m |= 1 << (2 * p)
			}
			if e.ownsAddr(rev, pt) {
				m |= 1 << (2*p + 1)
			}
		}
		e.owned[i] = m
	}
}

func (e *Engine) ownsAddr(a netip.Addr, pt part) bool {
	a, fam := keyPrefix(a, pt.bits4, pt.bits6)
	if fam == 0 {
		return e.shard.i == 0 // no key: the first worker counts it
	}
	return mix64(hashAddr(a)^e.shard.salt)%uint64(e.shard.n) == uint64(e.shard.i)
}

// ownership is the owned bits of event i of the batch (all set with one
// worker).
func (e *Engine) ownership(i int) uint64 {
	if e.shard.n <= 1 || len(e.parts) == 0 {
		return ^uint64(0)
	}
	return e.owned[i]
}

// owns reports whether the worker owns key k of rs (made, ok, from the
// event whose owned bits are own; reverse: seen from its other end).
func (e *Engine) owns(rs *ruleState, ok bool, k *keyBuf, own uint64, reverse bool) bool {
	switch {
	case e.shard.n <= 1:
		return true
	case !ok:
		return e.shard.i == 0
	case rs.part < 0:
		return e.shard.owns(ok, k)
	case reverse:
		return own&(1<<(2*rs.part+1)) != 0
	}
	return own&(1<<(2*rs.part)) != 0
}

// partMask is what dispatch needs of an event's owned bits to route it
// to rs: its forward address, or for reverse measures either; 0 for a
// rule with no partition (routed, its key decides).
func (rs *ruleState) partMask() uint64 {
	if rs.part < 0 {
		return 0
	}
	m := uint64(1) << (2 * rs.part)
	if rs.r.hasReverse {
		m |= 1 << (2*rs.part + 1)
	}
	return m
}
