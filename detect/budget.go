package detect

import (
	"cmp"
	"slices"
	"time"
	"unsafe"
)

// Self-protection. Detection state has a memory budget
// (EngineConfig.MaxMemory) and the engine a CPU budget
// (EngineConfig.MaxCPU). Past either, rules shed in a fixed order:
// lower severity first, and among rules of one severity the one loaded
// last first. Within a rule, memory sheds its least valuable keys (the
// eviction order of evict.go: least matched, decayed, never a key with a
// running alert). Every shed key and event is counted per rule. Shedding
// never blocks: capture and flow export go on whatever detection does.

// budget is an engine's estimate of the memory its rules' state holds,
// against its limit (0: none).
type budget struct {
	limit, used int64
	byPriority  []*ruleState // the order rules shed in
}

// sketchBytes is what a distinct-count sketch holds once dense (2^10
// registers and its header): counted as such from its first value.
const sketchBytes = 1<<hllPrecision + 96 // 156 while sparse

// mapGrowth: a map churned by new and dropped keys holds more slots than
// it ever held keys (deleted slots are reused only on growth).
const mapGrowth = 3

// keyBytes estimates what one key of r holds: its state, its window,
// evidence and map entry, rounded up as the allocator does (1/8).
func keyBytes(r *rule) int64 {
	w := int64(r.ncols + extraCols)
	n := int64(unsafe.Sizeof(keyState{})) // its map slot is in mapSlotBytes
	if r.kind == kindThreshold || r.kind == kindBaseline {
		n += 8*int64(r.nslots)*w + 8*int64(r.nslots) + 8*w
	}
	if r.hasDistinct {
		nd := int64(countDistinct(r.measures))
		n += 8*int64(r.nslots)*nd + 8*nd
	}
	n += int64(len(r.evidence)) * int64(unsafe.Sizeof(topK{}))
	if r.kind == kindBaseline {
		n += int64(unsafe.Sizeof(baseline{}))
	}
	return n + n/8
}

// mapSlotBytes is what a key's slot in a rule's map holds: key, value
// and control byte over the load factor, twice (a map's capacity
// doubles: measured at 205 bytes per key at its most). Maps do not
// shrink: a rule is charged for the most keys it has held (rs.peak)
// until shedding rebuilds its map.
const mapSlotBytes = mapGrowth * (int64(unsafe.Sizeof(keyBuf{})) + 8 + 1) * 8 / 7

// ruleBytes estimates what a rule's state holds with no keys.
func ruleBytes(r *rule) int64 {
	n := int64(unsafe.Sizeof(ruleState{})) + 8*6*int64(len(r.measures)+1)
	if r.hasDistinct {
		n += sketchBytes
	}
	return n + 512 // maps, bucket, limits
}

// sketches counts the distinct-count sketches a key state holds.
func (ks *keyState) sketches() int64 {
	n := int64(0)
	for _, sk := range ks.hll {
		if sk != nil {
			n++
		}
	}
	return n
}

// discard forgets a key state for good (not kept for reuse).
func (rs *ruleState) discard(ks *keyState) {
	if rs.mem != nil {
		rs.mem.used -= rs.keyBytes + ks.sketches()*sketchBytes
	}
}

// held is what rs holds now, by the estimate.
func (rs *ruleState) held() int64 {
	n := ruleBytes(rs.r) + int64(len(rs.keys)+len(rs.free))*rs.keyBytes + int64(rs.peak)*mapSlotBytes
	for _, ks := range rs.keys {
		n += ks.sketches() * sketchBytes
	}
	for _, ks := range rs.free {
		n += ks.sketches() * sketchBytes
	}
	return n
}

// shedTarget: memory sheds down to this share of the limit, so a flood
// of new keys sheds in steps, not at every key.
const shedTarget = 0.95

// reserve makes room for a new key of rs, shedding if the budget is
// reached; false: there is none to be had, the event is shed.
func (b *budget) reserve(rs *ruleState) bool {
	if b.limit == 0 || b.used+rs.keyBytes <= b.limit {
		b.used += rs.keyBytes
		return true
	}
	if b.shed(rs, rs.keyBytes) {
		b.used += rs.keyBytes
		return true
	}
	rs.stats.shedEvents++
	return false
}

// settle sheds back under the limit after an event grew the state of a
// key rs already had (a distinct-count sketch for a new slot).
func (b *budget) settle(rs *ruleState) {
	if b.limit > 0 && b.used > b.limit {
		b.shed(rs, 0)
	}
}

// shed frees state for need more bytes, down to shedTarget of the
// limit: first key states kept for reuse (no state is lost), then keys,
// by rule priority, never of a rule above rs. It reports whether need
// fits under the limit.
func (b *budget) shed(rs *ruleState, need int64) bool {
	target := int64(float64(b.limit) * shedTarget)
	for _, o := range b.byPriority {
		for b.used+need > target && len(o.free) > 0 {
			n := len(o.free) - 1
			o.discard(o.free[n])
			o.free[n] = nil
			o.free = o.free[:n]
		}
	}
	for _, o := range b.byPriority {
		if b.used+need <= target || o.severity() > rs.severity() {
			break
		}
		for b.used+need > target {
			vs := o.evict.victim()
			if vs == nil {
				break
			}
			o.drop(vs.key, vs)
			o.stats.shedKeys++
			if n := len(o.free); n > 0 && o.free[n-1] == vs {
				o.free = o.free[:n-1] // shed: not kept for reuse
				o.discard(vs)
			}
		}
		o.shrink()
	}
	return b.used+need <= b.limit
}

// grew charges a rule's map for a key past its most yet.
func (rs *ruleState) grew() {
	if len(rs.keys) > rs.peak {
		rs.peak = len(rs.keys)
		if rs.mem != nil {
			rs.mem.used += mapSlotBytes
		}
	}
}

// shrink rebuilds a rule's map once it holds under a quarter of its
// most keys, so shed keys give their memory back.
func (rs *ruleState) shrink() {
	if len(rs.keys) >= rs.peak/4 || rs.peak < 4 {
		return
	}
	keys := make(map[keyBuf]*keyState, len(rs.keys))
	for k, ks := range rs.keys {
		keys[k] = ks
	}
	rs.keys = keys
	if rs.mem != nil {
		rs.mem.used -= int64(rs.peak-len(keys)) * mapSlotBytes
	}
	rs.peak = len(keys)
}

func (rs *ruleState) severity() int { return int(rs.r.severity) }

// install sets the budget over rules: their shedding order (lower
// severity first, then the one loaded last) and what they hold.
func (b *budget) install(rules []*ruleState, limit int64) {
	b.limit = limit
	b.byPriority = append(b.byPriority[:0], rules...)
	slices.SortStableFunc(b.byPriority, func(x, y *ruleState) int {
		return cmp.Or(cmp.Compare(x.severity(), y.severity()), cmp.Compare(y.pos, x.pos))
	})
	b.used = 0
	for _, rs := range rules {
		rs.mem = b
		b.used += rs.held()
	}
}

// CPU guard. The engine's busy time is measured per period of wall
// time; while it passes MaxCPU (a share of one core), one more severity
// class is shed per period (info, then low, medium, high: critical
// rules always run), and one class comes back per period below 70% of
// it. A shed rule's events are counted, not evaluated; its windows and
// alerts go on with what it has.
const (
	cpuPeriod  = time.Second
	cpuRecover = 0.7
	maxShed    = 4 // classes: info, low, medium, high
)

type cpuGuard struct {
	start time.Time // of the period
	busy  time.Duration
	level int // rules of severity <= level are shed (0: none)
}

// account adds busy time, and at the end of a period moves the level.
func (e *Engine) account(busy time.Duration, now time.Time) {
	g := &e.cpu
	if e.cfg.MaxCPU <= 0 {
		g.level = 0
		return
	}
	if g.start.IsZero() {
		g.start = now
	}
	g.busy += busy
	elapsed := now.Sub(g.start)
	if elapsed < cpuPeriod {
		return
	}
	load := g.busy.Seconds() / elapsed.Seconds()
	switch {
	case load > e.cfg.MaxCPU && g.level < maxShed:
		g.level++
	case load < cpuRecover*e.cfg.MaxCPU && g.level > 0:
		g.level--
	}
	g.start, g.busy = now, 0
	e.stats.cpuLoad = load
}

// shedCPU reports whether the CPU guard sheds rs's events now.
func (e *Engine) shedCPU(rs *ruleState) bool {
	return e.cpu.level > 0 && rs.severity() <= e.cpu.level
}
