package flow

import (
	"math"
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
// start (FIFO, for the active timeout). Entries hold no pointers.
type entry struct {
	rec      Record
	lruPrev  uint32
	lruNext  uint32 // also the free list's link
	fifoPrev uint32
	fifoNext uint32
	tag      uint32 // upper half of the key's hash
}

// list is the head and tail of an intrusive doubly linked list.
type list struct{ head, tail uint32 }

// shard is a part of the table with its own lock. Its index is an open
// addressing hash table with linear probing: each slot holds the upper 32
// bits of the key's hash and the entry's slot number plus one (0: empty).
type shard struct {
	mu      sync.Mutex
	total   *atomic.Int64 // the table's flow count
	tailEnd atomic.Int64  // End of the least recently seen flow; MaxInt64 when empty
	index   []uint64
	mask    uint64
	chunks  [][]entry
	free    uint32 // free list of entries
	used    uint32 // entries handed out so far (high-water mark)
	count   int
	lru     list // head: most recently seen
	fifo    list // head: oldest start
	pending []Record

	created uint64
	samples uint64
	expired [numEndReasons]uint64
	_       [64]byte // keep shards' locks on separate cache lines
}

func (s *shard) init(total *atomic.Int64) {
	s.total = total
	s.index = make([]uint64, 64)
	s.mask = 63
	s.free = nilSlot
	s.lru = list{nilSlot, nilSlot}
	s.fifo = list{nilSlot, nilSlot}
	s.tailEnd.Store(math.MaxInt64)
}

// syncTail publishes when the shard's least recently seen flow was last
// seen, for evictExcess. The caller holds s.mu.
func (s *shard) syncTail() {
	if s.lru.tail == nilSlot {
		s.tailEnd.Store(math.MaxInt64)
		return
	}
	s.tailEnd.Store(s.entry(s.lru.tail).rec.End)
}

func (s *shard) entry(slot uint32) *entry {
	return &s.chunks[slot>>chunkBits][slot&(chunkSize-1)]
}

// add accounts sample x with key k (hash h). The caller holds s.mu.
func (s *shard) add(k *Key, h uint64, x *Sample, idle, active int64) {
	s.samples++
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
	s.pushLRU(slot, e)
	s.pushFIFO(slot, e)
	s.created++
	if x.TCPFlags&(TCPFin|TCPRst) != 0 && x.Proto == 6 {
		s.end(slot, EndTCP)
	}
}

// end removes the flow in slot and queues its record with reason r.
func (s *shard) end(slot uint32, r EndReason) {
	e := s.entry(slot)
	e.rec.EndReason = r
	s.pending = append(s.pending, e.rec)
	s.remove(slot, e)
}

// expire moves the flows due at now into out.
func (s *shard) expire(now, idle, active int64, out []Record) []Record {
	for s.lru.tail != nilSlot {
		slot := s.lru.tail
		e := s.entry(slot)
		if now-e.rec.End < idle {
			break
		}
		s.end(slot, EndIdle)
	}
	for s.fifo.head != nilSlot {
		slot := s.fifo.head
		e := s.entry(slot)
		if now-e.rec.Start < active {
			break
		}
		s.end(slot, EndActive)
	}
	s.syncTail()
	return s.drain(out)
}

// flush ends every flow with EndShutdown.
func (s *shard) flush(out []Record) []Record {
	for s.fifo.head != nilSlot {
		s.end(s.fifo.head, EndShutdown)
	}
	s.syncTail()
	return s.drain(out)
}

func (s *shard) drain(out []Record) []Record {
	for i := range s.pending {
		s.expired[s.pending[i].EndReason]++
	}
	out = append(out, s.pending...)
	clear(s.pending)
	s.pending = s.pending[:0]
	return out
}

// alloc returns a free entry slot, growing the shard by a chunk if needed.
func (s *shard) alloc() uint32 {
	if s.free != nilSlot {
		slot := s.free
		s.free = s.entry(slot).lruNext
		return slot
	}
	if s.used == uint32(len(s.chunks))*chunkSize {
		s.chunks = append(s.chunks, make([]entry, chunkSize))
	}
	slot := s.used
	s.used++
	return slot
}

// remove takes the flow in slot out of the index and both lists and
// frees its entry.
func (s *shard) remove(slot uint32, e *entry) {
	s.unlinkLRU(e)
	s.unlinkFIFO(e)
	s.deleteIndex(uint64(e.tag), slot)
	s.count--
	s.total.Add(-1)
	e.lruNext = s.free
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
	if s.lru.head == slot {
		return
	}
	s.unlinkLRU(e)
	s.pushLRU(slot, e)
}

func (s *shard) pushLRU(slot uint32, e *entry) {
	e.lruPrev = nilSlot
	e.lruNext = s.lru.head
	if s.lru.head != nilSlot {
		s.entry(s.lru.head).lruPrev = slot
	} else {
		s.lru.tail = slot
	}
	s.lru.head = slot
}

func (s *shard) unlinkLRU(e *entry) {
	if e.lruPrev != nilSlot {
		s.entry(e.lruPrev).lruNext = e.lruNext
	} else {
		s.lru.head = e.lruNext
	}
	if e.lruNext != nilSlot {
		s.entry(e.lruNext).lruPrev = e.lruPrev
	} else {
		s.lru.tail = e.lruPrev
	}
}

func (s *shard) pushFIFO(slot uint32, e *entry) {
	e.fifoNext = nilSlot
	e.fifoPrev = s.fifo.tail
	if s.fifo.tail != nilSlot {
		s.entry(s.fifo.tail).fifoNext = slot
	} else {
		s.fifo.head = slot
	}
	s.fifo.tail = slot
}

func (s *shard) unlinkFIFO(e *entry) {
	if e.fifoPrev != nilSlot {
		s.entry(e.fifoPrev).fifoNext = e.fifoNext
	} else {
		s.fifo.head = e.fifoNext
	}
	if e.fifoNext != nilSlot {
		s.entry(e.fifoNext).fifoPrev = e.fifoPrev
	} else {
		s.fifo.tail = e.fifoPrev
	}
}
