package flow

// The drain of a shard: its ended flows handed out in record order, in
// stages, and the memory a mass expiry leaves given back (compaction).

import (
	"cmp"
	"slices"
)

// prepareDrain takes the pending records from the feeders, counts what
// the drain will write and sorts it: draining and ended are then each
// in record order. The caller holds Table.mu and s.mu.
func (s *shard) prepareDrain() {
	s.draining, s.pending = s.pending, s.draining[:0]
	for i := range s.draining {
		s.expired[s.draining[i].EndReason]++
	}
	for _, ref := range s.ended {
		s.expired[s.entry(ref.slot).rec.EndReason]++
	}
	if len(s.draining) > 1 {
		slices.SortFunc(s.draining, compareRecords)
	}
	if len(s.ended) > 1 {
		slices.SortFunc(s.ended, func(a, b endedRef) int {
			if c := cmp.Compare(a.key, b.key); c != 0 {
				return c
			}
			return compareRecordPtrs(&s.entry(a.slot).rec, &s.entry(b.slot).rec)
		})
	}
	s.next = [2]int{}
}

// drainLeft reports whether the drain has records left in this shard.
func (s *shard) drainLeft() bool {
	return s.next[0] < len(s.draining) || s.next[1] < len(s.ended)
}

// drainInto appends up to n of the drain's next records, in order, to
// out, and frees the entries they came from. The caller holds Table.mu
// and s.mu.
func (s *shard) drainInto(out []Record, n int) []Record {
	pi, ei := s.next[0], s.next[1]
	for ; n > 0 && (pi < len(s.draining) || ei < len(s.ended)); n-- {
		if ei == len(s.ended) || pi < len(s.draining) && compareRecordPtrs(&s.draining[pi], &s.entry(s.ended[ei].slot).rec) <= 0 {
			out = append(out, s.draining[pi])
			pi++
			continue
		}
		slot := s.ended[ei].slot
		e := s.entry(slot)
		out = append(out, e.rec)
		s.release(slot, e)
		ei++
	}
	s.next = [2]int{pi, ei}
	return out
}

// endDrain forgets the drained records and gives back the memory a
// mass expiry took: buffers past keepCap and, once the shard has been
// mostly empty for an idle timeout by the clock (now), its entries and
// index (see compact). A wave of new flows soon after a mass expiry
// reuses the entries instead, without allocating a second table. Flush
// passes now 0: the table is done. The caller holds Table.mu and s.mu.
func (s *shard) endDrain(now, idle int64) {
	clear(s.draining)
	s.draining = trim(s.draining[:0])
	s.ended = trim(s.ended[:0])
	s.next = [2]int{}
	switch {
	case now == 0:
	case !s.sparseNow():
		s.sparse = 0
	case s.sparse == 0:
		s.sparse = now
	case now-s.sparse >= idle:
		s.compact()
		s.sparse = 0
	}
}

// keepCap is the most records (or references) a buffer keeps between
// drains; a bigger one, left by a burst, is released.
const keepCap = 4096

func trim[T any](b []T) []T {
	if cap(b) > keepCap {
		return nil
	}
	return b
}

// compact gives back the memory of a shard left mostly empty: when
// fewer than a quarter of the entries handed out are in use (and more
// than two chunks were), the live flows move to
// new, dense chunks, in LRU order, and the old ones are left to the GC;
// an index four times larger than its flows need is rebuilt smaller.
// Both cost a pass over the shard's live flows, under its lock. The
// caller holds s.mu and no entry is detached.
func (s *shard) compact() {
	moved := s.fewInUse()
	if moved {
		s.relocate()
	}
	size := indexSize(s.count)
	if len(s.index) < 4*size {
		size = len(s.index)
	}
	if moved || size != len(s.index) {
		s.rebuildIndex(size)
	}
}

// indexSize is the smallest index for n flows at a load under 0.35.
func indexSize(n int) int {
	size := 64
	for size*7 <= n*10*2 {
		size *= 2
	}
	return size
}

// fewInUse: fewer than a quarter of the entries handed out are in use,
// and more than two chunks were.
func (s *shard) fewInUse() bool { return len(s.chunks) > 2 && s.count < int(s.used)/4 }

// sparseNow reports whether compact would give memory back.
func (s *shard) sparseNow() bool { return s.fewInUse() || len(s.index) >= 4*indexSize(s.count) }

// relocate moves the live flows to dense chunks; the index must then be
// rebuilt.
func (s *shard) relocate() {
	old := s.chunks
	oldEntry := func(slot uint32) *entry { return &old[slot>>chunkBits][slot&(chunkSize-1)] }
	n := uint32(s.count)
	s.chunks = make([][]entry, (n+chunkSize-1)/chunkSize)
	for i := range s.chunks {
		s.chunks[i] = make([]entry, chunkSize)
	}
	// Copy in LRU order; each old entry's lru.older then holds its new
	// slot, which its lru.newer (still read) no longer needs.
	i := uint32(0)
	for o := s.lists[lru].oldest; o != nilSlot; i++ {
		e := oldEntry(o)
		*s.entry(i) = *e
		o, e.links[lru].older = e.links[lru].newer, i
	}
	moved := func(o uint32) uint32 {
		if o == nilSlot {
			return nilSlot
		}
		return oldEntry(o).links[lru].older
	}
	for i := range n {
		e := s.entry(i)
		e.links[lru] = link{older: i - 1, newer: i + 1}
		if i == 0 {
			e.links[lru].older = nilSlot
		}
		if i == n-1 {
			e.links[lru].newer = nilSlot
		}
		e.links[byStart] = link{older: moved(e.links[byStart].older), newer: moved(e.links[byStart].newer)}
	}
	s.lists[byStart] = list{moved(s.lists[byStart].oldest), moved(s.lists[byStart].newest)}
	s.lists[lru] = list{nilSlot, nilSlot}
	if n > 0 {
		s.lists[lru] = list{0, n - 1}
	}
	s.free, s.used = nilSlot, n
}

// rebuildIndex makes a new index of size slots (a power of two) for
// the live flows.
func (s *shard) rebuildIndex(size int) {
	s.index = make([]uint64, size)
	s.mask = uint64(size - 1)
	for slot := s.lists[lru].oldest; slot != nilSlot; {
		e := s.entry(slot)
		tag := uint64(e.tag)
		i := tag & s.mask
		for s.index[i] != 0 {
			i = (i + 1) & s.mask
		}
		s.index[i] = tag<<32 | uint64(slot+1)
		slot = e.links[lru].newer
	}
}
