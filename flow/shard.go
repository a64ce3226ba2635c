package flow

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
)

const (
	chunkBits = 12
	chunkSize = 1 << chunkBits
	nilSlot   = ^uint32(0)
)

// entry is a flow in a shard: its record and its places in two intrusive
// lists, by last activity (LRU, for idle expiry and eviction) and by
// start (for the active timeout). Entries hold no pointers.
type entry struct {
	rec   Record
	links [numLists]link // links[lru].newer is also the free list's link
	tag   uint32         // upper half of the key's hash
}

// The shard's intrusive lists. Both take new entries at the newest end
// and are expired from the oldest end.
const (
	lru     = iota // by last sample
	byStart        // by first sample
	numLists
)

// link is an entry's place in one list: its older and newer neighbours.
type link struct{ older, newer uint32 }

// list is the two ends of an intrusive doubly linked list.
type list struct{ oldest, newest uint32 }

// shard is a part of the table with its own lock. Its index is an open
// addressing hash table with linear probing: each slot holds the upper 32
// bits of the key's hash and the entry's slot number plus one (0: empty).
type shard struct {
	mu      sync.Mutex
	total   *atomic.Int64 // the table's flow count
	idle    *atomic.Int64 // the table's idle timeout, ns
	tailEnd atomic.Int64  // End of the least recently seen flow; MaxInt64 when empty
	index   []uint64
	mask    uint64
	chunks  [][]entry
	free    uint32 // free list of entries
	used    uint32 // entries handed out so far (high-water mark)
	count   int
	lists   [numLists]list
	pending []Record // flows ended by their samples or by eviction, since the last Expire
	rates   rateHist

	// Owned by Table.Expire and Table.Flush (under Table.mu): the flows
	// they end stay in their entries, out of the index and the lists,
	// until the drain copies them out in batches and frees them, so a
	// mass expiry takes 8 bytes a flow instead of a copy of its record.
	ended    []endedRef
	draining []Record // pending, swapped out for the drain
	next     [2]int   // the drain's positions in draining and ended
	base     int64    // of the ended's keys (refKey)
	sparse   int64    // since when (clock ns) the drains found the shard mostly empty; 0: not

	created uint64
	samples uint64
	expired [numEndReasons]uint64
	_       [64]byte // keep shards' locks on separate cache lines
}

// endedRef is a flow ended by Expire or Flush that is still in its
// entry: its slot, and its End, coarsely, to sort by without reading
// the entry (refKey).
type endedRef struct {
	key  uint32
	slot uint32
}

// refShift is the resolution of an endedRef's key: 1.024 µs.
const refShift = 10

// refKey maps a flow's End to its endedRef key: (End-base)>>refShift,
// clamped to 32 bits. The mapping never decreases, so sorting by key,
// then by the records themselves among equal keys, is sorting by
// record; clamping only leaves more ties. base is set by the drain to
// 36 minutes before its clock, so the key is exact for the flows that
// ended within 36 minutes either side.
func refKey(end, base int64) uint32 {
	d := (end - base) >> refShift
	return uint32(min(max(d, 0), math.MaxUint32))
}

// refBase is the base of the keys of a drain at now.
func refBase(now int64) int64 { return now - 1<<(32+refShift-1) }

func (s *shard) init(total, idle *atomic.Int64) {
	s.total, s.idle = total, idle
	s.index = make([]uint64, 64)
	s.mask = 63
	s.free = nilSlot
	s.lists = [numLists]list{{nilSlot, nilSlot}, {nilSlot, nilSlot}}
	s.tailEnd.Store(math.MaxInt64)
}

// syncTail publishes when the shard's least recently seen flow was last
// seen, for evictExcess. The caller holds s.mu.
func (s *shard) syncTail() {
	oldest := s.lists[lru].oldest
	if oldest == nilSlot {
		s.tailEnd.Store(math.MaxInt64)
		return
	}
	s.tailEnd.Store(s.entry(oldest).rec.End)
}

func (s *shard) entry(slot uint32) *entry {
	return &s.chunks[slot>>chunkBits][slot&(chunkSize-1)]
}

// add accounts sample x with key k (hash h). The caller holds s.mu.
func (s *shard) add(k *Key, h uint64, x *Sample, idle, active int64) {
	s.samples++
	s.rates.note(x.Timestamp, x.SamplingRate)
	tag := h >> 32
	for i := tag & s.mask; ; i = (i + 1) & s.mask {
		v := s.index[i]
		if v == 0 {
			break
		}
		if v>>32 != tag {
			continue
		}
		slot := uint32(v) - 1
		e := s.entry(slot)
		if e.rec.Key != *k {
			continue
		}
		// A sample past a timeout ends the flow and starts a new one,
		// whenever Expire last ran: slices do not depend on its cadence.
		if x.Timestamp-e.rec.Start >= active {
			s.end(slot, EndActive)
			break
		}
		if x.Timestamp-e.rec.End >= idle {
			s.end(slot, EndIdle)
			break
		}
		e.rec.add(x)
		s.touch(slot, e)
		if x.TCPFlags&(TCPFin|TCPRst) != 0 && x.Proto == 6 {
			s.end(slot, EndTCP)
		}
		return
	}
	// Past max_flows, the feeder evicts the table's least recently seen
	// flows once this shard's lock is released (Table.evictExcess).
	s.total.Add(1)
	slot := s.alloc()
	e := s.entry(slot)
	e.rec.start(k, x)
	e.tag = uint32(tag)
	s.insert(tag, slot)
	s.push(lru, slot, e)
	s.push(byStart, slot, e)
	s.created++
	if x.TCPFlags&(TCPFin|TCPRst) != 0 && x.Proto == 6 {
		s.end(slot, EndTCP)
	}
}

// end removes the flow in slot and queues its record with reason r.
func (s *shard) end(slot uint32, r EndReason) {
	e := s.entry(slot)
	s.finish(e, r)
	s.pending = append(s.pending, e.rec)
	s.remove(slot, e)
	s.release(slot, e)
}

// detach ends the flow in slot with reason r and keeps its record in
// its entry, for the drain. The caller holds Table.mu and s.mu.
func (s *shard) detach(slot uint32, r EndReason) {
	e := s.entry(slot)
	s.finish(e, r)
	if len(s.ended) == cap(s.ended) {
		// Double: append's 1.25 for big slices allocates five times
		// what a mass expiry ends up holding.
		s.ended = slices.Grow(s.ended, max(len(s.ended), 64))
	}
	s.ended = append(s.ended, endedRef{refKey(e.rec.End, s.base), slot})
	s.remove(slot, e)
}

// finish sets an ending flow's reason and its intervals.
func (s *shard) finish(e *entry, r EndReason) {
	e.rec.EndReason = r
	// Packets no sample caught lie between the flow's start and, at
	// most, an idle timeout after its last sample.
	e.rec.unseenAt(s.rates.max(e.rec.Start, e.rec.End+s.idle.Load()))
}

// expire ends the flows due at now, for the drain.
func (s *shard) expire(now, idle, active int64) {
	s.base = refBase(now)
	for s.lists[lru].oldest != nilSlot {
		slot := s.lists[lru].oldest
		e := s.entry(slot)
		if now-e.rec.End < idle {
			break
		}
		s.detach(slot, EndIdle)
	}
	for s.lists[byStart].oldest != nilSlot {
		slot := s.lists[byStart].oldest
		e := s.entry(slot)
		if now-e.rec.Start < active {
			break
		}
		s.detach(slot, EndActive)
	}
	s.syncTail()
	s.prepareDrain()
}

// flush ends every flow with EndShutdown, for the drain at now.
func (s *shard) flush(now int64) {
	s.base = refBase(now)
	s.ended = slices.Grow(s.ended, s.count)
	for s.lists[byStart].oldest != nilSlot {
		s.detach(s.lists[byStart].oldest, EndShutdown)
	}
	s.syncTail()
	s.prepareDrain()
}

// alloc returns a free entry slot, growing the shard by a chunk if needed.
func (s *shard) alloc() uint32 {
	if s.free != nilSlot {
		slot := s.free
		s.free = s.entry(slot).links[lru].newer
		return slot
	}
	if s.used == uint32(len(s.chunks))*chunkSize {
		s.chunks = append(s.chunks, make([]entry, chunkSize))
	}
	slot := s.used
	s.used++
	return slot
}

// remove takes the flow in slot out of the index and both lists.
func (s *shard) remove(slot uint32, e *entry) {
	s.unlink(lru, e)
	s.unlink(byStart, e)
	s.deleteIndex(uint64(e.tag), slot)
	s.count--
	s.total.Add(-1)
}

// release puts a removed flow's entry on the free list.
func (s *shard) release(slot uint32, e *entry) {
	e.links[lru].newer = s.free
	s.free = slot
}

func (s *shard) insert(tag uint64, slot uint32) {
	s.count++
	if uint64(s.count)*10 >= uint64(len(s.index))*7 {
		s.grow()
	}
	i := tag & s.mask
	for s.index[i] != 0 {
		i = (i + 1) & s.mask
	}
	s.index[i] = tag<<32 | uint64(slot+1)
}

func (s *shard) grow() {
	old := s.index
	s.index = make([]uint64, 2*len(old))
	s.mask = uint64(len(s.index) - 1)
	for _, v := range old {
		if v == 0 {
			continue
		}
		i := (v >> 32) & s.mask
		for s.index[i] != 0 {
			i = (i + 1) & s.mask
		}
		s.index[i] = v
	}
}

// deleteIndex removes slot from the index with backward-shift deletion,
// so that probe sequences need no tombstones.
func (s *shard) deleteIndex(tag uint64, slot uint32) {
	want := slot + 1
	i := tag & s.mask
	for uint32(s.index[i]) != want {
		i = (i + 1) & s.mask
	}
	for {
		s.index[i] = 0
		j := i
		for {
			j = (j + 1) & s.mask
			v := s.index[j]
			if v == 0 {
				return
			}
			// v can fill the hole at i unless its home slot lies
			// cyclically in (i, j].
			home := (v >> 32) & s.mask
			if (i < j && (home <= i || home > j)) || (i > j && home <= i && home > j) {
				s.index[i] = v
				i = j
				break
			}
		}
	}
}

func (s *shard) touch(slot uint32, e *entry) {
	if s.lists[lru].newest == slot {
		return
	}
	s.unlink(lru, e)
	s.push(lru, slot, e)
}

// push puts the entry in slot at the newest end of list l.
func (s *shard) push(l int, slot uint32, e *entry) {
	ls := &s.lists[l]
	e.links[l] = link{older: ls.newest, newer: nilSlot}
	if ls.newest != nilSlot {
		s.entry(ls.newest).links[l].newer = slot
	} else {
		ls.oldest = slot
	}
	ls.newest = slot
}

// unlink takes e out of list l.
func (s *shard) unlink(l int, e *entry) {
	ls, lk := &s.lists[l], e.links[l]
	if lk.older != nilSlot {
		s.entry(lk.older).links[l].newer = lk.newer
	} else {
		ls.oldest = lk.newer
	}
	if lk.newer != nilSlot {
		s.entry(lk.newer).links[l].older = lk.older
	} else {
		ls.newest = lk.older
	}
}
