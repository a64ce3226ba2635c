package flow

import (
	"bytes"
	"cmp"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Table aggregates samples into flows and expires them like a NetFlow or
// IPFIX meter: idle timeout, active timeout, TCP FIN/RST, and a bound on
// the number of flows.
//
// The table is split into shards, each with its own lock, so several
// goroutines can feed it at once through their own Feeder. Memory is
// allocated in chunks as the table grows and reused after; a sample for
// a known flow allocates nothing. Expiry is bounded too: the flows it
// ends wait in their entries (8 bytes each on the side) and are handed
// out EmitBatch records at a time; a shard left mostly empty by a mass
// expiry, and still so an idle timeout later, moves its flows to fewer
// chunks and gives the rest back.
//
// The table reads time only from its Clock, when Expire runs: the live
// daemon gives it the wall clock, replay the capture's time, and tests a
// ManualClock.
type Table struct {
	clock     Clock
	seed      maphash.Seed
	shards    []shard
	shardMask uint64
	maxFlows  int64
	count     atomic.Int64 // flows in all shards
	idle      atomic.Int64 // ns
	active    atomic.Int64 // ns

	mu     sync.Mutex // serialises Expire and Flush, and guards what follows
	out    []Record   // the batch for emit
	stages []stage    // per shard, its next records in the drain
	heap   []int32    // shards with records left in the drain, by their next
}

// NewTable returns an empty table that expires flows by clock.
func NewTable(cfg Config, clock Clock) (*Table, error) {
	check := cfg
	check.Workers = max(check.Workers, 1) // the table's feeders are its callers'
	if err := check.Validate().Err(); err != nil {
		return nil, err
	}
	n := 1 << bits.Len(uint(cfg.Shards-1))
	t := &Table{
		clock:     clock,
		seed:      maphash.MakeSeed(),
		shards:    make([]shard, n),
		shardMask: uint64(n - 1),
		maxFlows:  int64(cfg.MaxFlows),
	}
	for i := range t.shards {
		t.shards[i].init(&t.count, &t.idle)
	}
	t.SetTimeouts(cfg.IdleTimeout.D, cfg.ActiveTimeout.D)
	return t, nil
}

// SetTimeouts changes the idle and active timeouts of a running table.
func (t *Table) SetTimeouts(idle, active time.Duration) {
	t.idle.Store(int64(idle))
	t.active.Store(int64(active))
}

// Feeder adds samples to a table. Each goroutine that feeds the table
// uses its own Feeder; a Feeder is not safe for concurrent use.
//
// A flow's samples must be added in order. To feed a table from several
// goroutines and keep that order, give every goroutine every batch, in
// order, and a Feeder for its own part of the table (NewPartFeeder):
// each flow then belongs to exactly one goroutine.
type Feeder struct {
	t        *Table
	part     uint64 // this feeder accounts the shards s with s&partMask == part
	partMask uint64
	keys     []Key
	hashes   []uint64
	order    []int32 // sample indexes grouped by shard
	counts   []int32 // per shard, then offsets
}

// skip marks a sample the feeder does not account.
const skip = ^uint64(0)

// NewFeeder returns a Feeder for the whole table.
func (t *Table) NewFeeder() *Feeder { return t.NewPartFeeder(0, 1) }

// NewPartFeeder returns a Feeder that accounts only the flows of part
// i of n, by shard, and ignores the other samples of a batch. n must
// divide the number of shards (a power of two), and 0 <= i < n.
func (t *Table) NewPartFeeder(i, n int) *Feeder {
	if n < 1 || len(t.shards)%n != 0 || i < 0 || i >= n {
		panic(fmt.Sprintf("flow: part %d of %d does not split %d shards", i, n, len(t.shards)))
	}
	// n divides a power of two: it is one, and shard % n is a mask.
	return &Feeder{t: t, part: uint64(i), partMask: uint64(n - 1), counts: make([]int32, len(t.shards)+1)}
}

// Add accounts a batch of samples. Samples that are not IP (no
// addresses) are ignored; the capture path counts them.
func (f *Feeder) Add(batch []Sample) {
	t := f.t
	n := len(batch)
	if cap(f.keys) < n {
		f.keys = make([]Key, n)
		f.hashes = make([]uint64, n)
		f.order = make([]int32, n)
	}
	keys, hashes, order := f.keys[:n], f.hashes[:n], f.order[:n]
	idle, active := t.idle.Load(), t.active.Load()
	clear(f.counts)
	for i := range batch {
		s := &batch[i]
		if s.IPVersion == 0 {
			hashes[i] = skip
			continue
		}
		keys[i] = KeyOf(s)
		h := maphash.Comparable(t.seed, keys[i])
		if h&t.shardMask&f.partMask != f.part {
			hashes[i] = skip
			continue
		}
		hashes[i] = h
		f.counts[(h&t.shardMask)+1]++
	}
	// Group sample indexes by shard (counting sort), then take each
	// shard's lock once per batch.
	for s := 1; s < len(f.counts); s++ {
		f.counts[s] += f.counts[s-1]
	}
	next := f.counts[:len(t.shards)]
	for i := range batch {
		h := hashes[i]
		if h == skip {
			continue
		}
		s := h & t.shardMask
		order[next[s]] = int32(i)
		next[s]++
	}
	// next[s] is now the end of shard s's run, next[s-1] its start.
	start := int32(0)
	for s := range t.shards {
		end := next[s]
		if end == start {
			continue
		}
		sh := &t.shards[s]
		sh.mu.Lock()
		for _, i := range order[start:end] {
			sh.add(&keys[i], hashes[i], &batch[i], idle, active)
		}
		sh.syncTail()
		sh.mu.Unlock()
		start = end
		if t.count.Load() > t.maxFlows {
			t.evictExcess()
		}
	}
}

// evictExcess ends the least recently seen flows of the whole table
// until it holds at most maxFlows. Each shard publishes when its least
// recently seen flow was last seen, so finding the table's oldest takes
// no lock but the victim shard's.
func (t *Table) evictExcess() {
	for t.count.Load() > t.maxFlows {
		victim, oldest, next := -1, int64(math.MaxInt64), int64(math.MaxInt64)
		for i := range t.shards {
			switch e := t.shards[i].tailEnd.Load(); {
			case e < oldest:
				victim, oldest, next = i, e, oldest
			case e < next:
				next = e
			}
		}
		if victim < 0 {
			return
		}
		// Evict from the victim for as long as its oldest flow is older
		// than every other shard's.
		sh := &t.shards[victim]
		sh.mu.Lock()
		for sh.lists[lru].oldest != nilSlot && t.count.Load() > t.maxFlows {
			sh.end(sh.lists[lru].oldest, EndEvicted)
			if o := sh.lists[lru].oldest; o != nilSlot && sh.entry(o).rec.End > next {
				break
			}
		}
		sh.syncTail()
		sh.mu.Unlock()
	}
}

// Expire ends the flows that are due by the table's clock: idle and
// active timeouts, and the flows already ended by TCP FIN/RST or
// eviction. It calls emit with the ended records, ordered by end time,
// start time and key, in batches of at most EmitBatch records (a mass
// expiry takes several calls, each continuing the order of the last);
// a slice is only valid during its call. Feeders run meanwhile.
func (t *Table) Expire(emit func([]Record)) {
	now := t.clock.Now().UnixNano()
	idle, active := t.idle.Load(), t.active.Load()
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.expire(now, idle, active)
		sh.mu.Unlock()
	}
	t.drain(emit, max(now, 1), idle)
}

// Flush ends every flow with EndShutdown (and writes pending ones with
// their own reasons), in batches as Expire does.
func (t *Table) Flush(emit func([]Record)) {
	now := t.clock.Now().UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.flush(now)
		sh.mu.Unlock()
	}
	t.drain(emit, 0, 0)
}

// EmitBatch is the most records Expire and Flush hand emit at once.
const EmitBatch = 4096

// stageSize is how many records the drain takes from a shard per lock.
const stageSize = 64

// drain merges the shards' sorted drains into batches for emit. The
// flows ended by Expire and Flush wait in their entries; a shard's next
// records are copied to its stage, and their entries freed, stageSize
// at a time, so the drain holds EmitBatch records and a stage a shard
// however many flows end. now and idle are for the shards' compaction
// (shard.endDrain). The caller holds t.mu.
func (t *Table) drain(emit func([]Record), now, idle int64) {
	if t.stages == nil {
		t.stages = make([]stage, len(t.shards))
		t.out = make([]Record, 0, EmitBatch)
	}
	h := t.heap[:0]
	for i := range t.shards {
		if t.shards[i].drainLeft() && t.refill(i) {
			h = append(h, int32(i))
		}
	}
	less := func(a, b int32) bool {
		sa, sb := &t.stages[a], &t.stages[b]
		if c := compareRecordPtrs(&sa.recs[sa.next], &sb.recs[sb.next]); c != 0 {
			return c < 0
		}
		return a < b
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		siftDown(h, i, less)
	}
	out := t.out[:0]
	for len(h) > 0 {
		i := h[0]
		st := &t.stages[i]
		out = append(out, st.recs[st.next])
		st.next++
		if len(out) == EmitBatch {
			emit(out)
			out = out[:0]
		}
		if st.next == len(st.recs) && !t.refill(int(i)) {
			h[0] = h[len(h)-1]
			h = h[:len(h)-1]
		}
		siftDown(h, 0, less)
	}
	if len(out) > 0 {
		emit(out)
	}
	clear(out)
	t.out, t.heap = out[:0], h
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.endDrain(now, idle)
		sh.mu.Unlock()
		clear(t.stages[i].recs)
	}
}

// stage holds a shard's next records in the drain.
type stage struct {
	recs []Record
	next int
}

// refill loads shard i's next records into its stage; false when the
// shard has none left.
func (t *Table) refill(i int) bool {
	st, sh := &t.stages[i], &t.shards[i]
	if !sh.drainLeft() {
		return false
	}
	sh.mu.Lock()
	st.recs = sh.drainInto(st.recs[:0], stageSize)
	sh.mu.Unlock()
	st.next = 0
	return true
}

func siftDown(h []int32, i int, less func(a, b int32) bool) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && less(h[c+1], h[c]) {
			c++
		}
		if !less(h[c], h[i]) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// compareRecords orders records by end time, start time and key.
func compareRecords(a, b Record) int { return compareRecordPtrs(&a, &b) }

func compareRecordPtrs(a, b *Record) int {
	if c := cmp.Compare(a.End, b.End); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Start, b.Start); c != 0 {
		return c
	}
	ka, kb := &a.Key, &b.Key
	if c := bytes.Compare(ka.SrcAddr[:], kb.SrcAddr[:]); c != 0 {
		return c
	}
	if c := bytes.Compare(ka.DstAddr[:], kb.DstAddr[:]); c != 0 {
		return c
	}
	if c := cmp.Compare(ka.SrcPort, kb.SrcPort); c != 0 {
		return c
	}
	if c := cmp.Compare(ka.DstPort, kb.DstPort); c != 0 {
		return c
	}
	if c := cmp.Compare(ka.Proto, kb.Proto); c != 0 {
		return c
	}
	if c := cmp.Compare(ka.Ifindex, kb.Ifindex); c != 0 {
		return c
	}
	if c := cmp.Compare(ka.Direction, kb.Direction); c != 0 {
		return c
	}
	if c := cmp.Compare(ka.VLAN, kb.VLAN); c != 0 {
		return c
	}
	if c := cmp.Compare(ka.InnerVLAN, kb.InnerVLAN); c != 0 {
		return c
	}
	return cmp.Compare(ka.VNI, kb.VNI)
}

// Stats are the table's counters.
type Stats struct {
	Active    int                   // flows in the table now
	Created   uint64                // flows started
	Samples   uint64                // samples accounted
	Expired   [numEndReasons]uint64 // records written, by EndReason
	Evictions uint64                // flows ended early because the table was full
	Capacity  int                   // flow slots allocated (grows, never shrinks)
	_         [0]func()             // not comparable
}

// ExpiredBy returns the number of records written with reason r.
func (s *Stats) ExpiredBy(r EndReason) uint64 {
	if r < numEndReasons {
		return s.Expired[r]
	}
	return 0
}

// Stats returns the table's counters.
func (t *Table) Stats() Stats {
	var st Stats
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		st.Active += sh.count
		st.Created += sh.created
		st.Samples += sh.samples
		for r := range st.Expired {
			st.Expired[r] += sh.expired[r]
		}
		st.Capacity += len(sh.chunks) * chunkSize
		sh.mu.Unlock()
	}
	st.Evictions = st.Expired[EndEvicted]
	return st
}
