package detect

import (
	"math/bits"
	"time"
)

// Eviction. A rule's keys are ranked by how many events they have had
// lately, a count halved every half-life (aging: a key busy an hour ago
// and silent since sinks to 0), and evicted from the bottom: the key
// with the fewest events, the least recently seen of those first. A
// spoofed flood makes keys of one event each; they evict one another,
// not a key seen twice. A key with a running alert is never evicted.
//
// The structure is an LFU of count levels (as in Space-Saving's stream
// summary): a list per count, 0 to evictMax, and a bitmap of the levels
// in use. A new key goes to the tail of level 1; the victim is the head
// of the lowest level. An event only counts, in the key's own state:
// moving it then would touch its neighbours' states, a cache miss each
// in a big state. The key moves up when it reaches the head of its
// level with a higher count: to the tail of its count's level, so the
// victim has the fewest events, and of those the key not seen since the
// longest (up to when keys were moved). Each move is paid for by the
// events that raised the count: O(1) per event and per new key.
//
// Halving merges level c into c/2, list by list (O(evictMax), not
// O(keys)): keys keep the count and level they had at an epoch, and
// theirs now are those shifted right by the halvings since. A key with
// a running alert met at the head is unlinked (pinned), and linked again
// when the alert has ended, at its next event or the next sweep.
type evictLevels struct {
	level    [evictMax + 1]evictList
	used     uint64 // bit c: level c has keys
	epoch    uint32 // halvings so far (each at most 8 at once: a uint8 count is 0 after)
	decayAt  int64  // event time of the last halving, a multiple of halfLife
	halfLife int64
	// unlinked: keys taken out for their running alert, for a sweep to
	// link again once it has ended (wheel.go; a full sweep finds them).
	unlinked []*keyState
}

// evictMax is the highest count: keys with more events are ranked alike,
// by recency.
const evictMax = 63

type evictList struct{ head, tail *keyState }

// evictLink is a key's place in its rule's evictLevels (24 bytes).
type evictLink struct {
	prev, next *keyState
	epoch      uint32 // the levels' epoch when count and level were set
	count      uint8  // events, as of epoch
	level      uint8  // the level it is in, as of epoch: count or less
	linked     bool   // in a level; false: pinned by a running alert, or none yet
}

// evictHalfLife is how often a rule's counts are halved: its window, the
// span its keys' events matter over.
func evictHalfLife(r *rule) int64 {
	h := r.window
	switch r.kind {
	case kindSequence:
		h = r.within
	case kindAbsence:
		h = max(r.after, r.learn)
	}
	return max(h, int64(time.Second))
}

// count is ks's count now.
func (lv *evictLevels) count(ks *keyState) int {
	return int(ks.ev.count >> (lv.epoch - ks.ev.epoch))
}

// levelOf is the level ks is in now, if linked.
func (lv *evictLevels) levelOf(ks *keyState) int {
	return int(ks.ev.level >> (lv.epoch - ks.ev.epoch))
}

// link puts ks at the tail (most recently seen) of level c, its count.
func (lv *evictLevels) link(ks *keyState, c int) {
	l := &lv.level[c]
	ks.ev = evictLink{prev: l.tail, epoch: lv.epoch, count: uint8(c), level: uint8(c), linked: true}
	if l.tail != nil {
		l.tail.ev.next = ks
	} else {
		l.head = ks
		lv.used |= 1 << c
	}
	l.tail = ks
}

// unlink takes ks out of its level, keeping its count.
func (lv *evictLevels) unlink(ks *keyState) {
	c := lv.levelOf(ks)
	l := &lv.level[c]
	if p := ks.ev.prev; p != nil {
		p.ev.next = ks.ev.next
	} else {
		l.head = ks.ev.next
	}
	if n := ks.ev.next; n != nil {
		n.ev.prev = ks.ev.prev
	} else {
		l.tail = ks.ev.prev
	}
	if l.head == nil {
		lv.used &^= 1 << c
	}
	ks.ev = evictLink{epoch: lv.epoch, count: uint8(lv.count(ks))}
}

// seen counts an event of ks.
func (lv *evictLevels) seen(ks *keyState) {
	if !ks.ev.linked && ks.alert == nil {
		lv.link(ks, min(lv.count(ks)+1, evictMax)) // its alert has ended
		return
	}
	if s := lv.epoch - ks.ev.epoch; s != 0 {
		ks.ev.count >>= s
		ks.ev.level >>= s
		ks.ev.epoch = lv.epoch
	}
	if ks.ev.count < evictMax {
		ks.ev.count++
	}
}

// victim returns the key to evict: the head of the lowest level, once
// keys seen since they were linked have moved up and keys with running
// alerts have been pinned; nil if every key has a running alert.
func (lv *evictLevels) victim() *keyState {
	for lv.used != 0 {
		l := bits.TrailingZeros64(lv.used)
		ks := lv.level[l].head
		if ks.alert != nil {
			lv.unlink(ks)
			lv.unlinked = append(lv.unlinked, ks) // linked again once its alert ends (sweep)
			continue
		}
		if c := lv.count(ks); c > l {
			lv.unlink(ks)
			lv.link(ks, c)
			continue
		}
		return ks
	}
	return nil
}

// decay halves the counts once per half-life passed by t. Level c goes
// to c>>n, after the keys already there: lists are joined, keys are not
// touched.
func (lv *evictLevels) decay(t int64) {
	n := (t - lv.decayAt) / lv.halfLife
	lv.decayAt += n * lv.halfLife
	shift := uint32(min(n, 8))
	if lv.used == 0 {
		lv.epoch += shift
		return
	}
	var level [evictMax + 1]evictList
	var used uint64
	for c := range lv.level {
		l := lv.level[c]
		if l.head == nil {
			continue
		}
		to := &level[c>>shift]
		if to.tail != nil {
			to.tail.ev.next = l.head
			l.head.ev.prev = to.tail
			to.tail = l.tail
		} else {
			*to = l
			used |= 1 << (c >> shift)
		}
	}
	lv.level, lv.used = level, used
	lv.epoch += shift
}
