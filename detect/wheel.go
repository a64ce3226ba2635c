package detect

import "time"

// A threshold rule's sweep used to visit every key it held each second
// of event time, to drop the keys not seen for a window: in a replay of
// 300 s over 100,000 keys a rule, a quarter of the engine's time. The
// wheel keeps its keys in buckets by the second they were last seen, so
// a sweep visits only the keys that may have expired, and drops exactly
// the keys the full scan would: no running alert, last seen before the
// window. A key moves bucket at most once a second of its events.
//
// Keys placed in a second already swept (a late flow record) and keys
// whose bucket was swept while they had a running alert are held in a
// list the sweep checks every time. Keys taken out of the eviction order
// for their running alert are linked back once it has ended at the next
// sweep, as the scan did (evictLevels.unlinked).

// maxWheel bounds the buckets: a rule whose window and lateness pass it
// is swept by a full scan.
const maxWheel = 3600

type wheel struct {
	ring  []*keyState // bucket heads by second modulo len
	next  int64       // the first second not swept
	held  []*keyState
	stamp uint32 // sweeps so far: each held key is checked once a sweep
}

// keyState's links in its rule's wheel.
type wheelLink struct {
	prev, next *keyState
	sec        int64
	at         uint8 // wheelNone, wheelRing, wheelHeld
	stamp      uint32
}

const (
	wheelNone uint8 = iota
	wheelRing
	wheelHeld
)

// newWheel returns a wheel for r read with lateness, or nil when a full
// scan is due.
func newWheel(r *rule, lateness int64) *wheel {
	if r.kind != kindThreshold {
		return nil
	}
	n := (r.window+lateness)/int64(time.Second) + 4
	if n > maxWheel {
		return nil
	}
	return &wheel{ring: make([]*keyState, n)}
}

func (w *wheel) bucket(sec int64) **keyState { return &w.ring[sec%int64(len(w.ring))] }

// place puts ks in the bucket of the second it was last seen.
func (w *wheel) place(ks *keyState) {
	l := &ks.wl
	sec := ks.last / int64(time.Second)
	switch {
	case l.at == wheelHeld, l.at == wheelRing && l.sec == sec:
		return
	case l.at == wheelRing:
		w.unlink(ks)
	}
	if sec < w.next {
		l.at = wheelHeld
		w.held = append(w.held, ks)
		return
	}
	head := w.bucket(sec)
	l.prev, l.next, l.sec, l.at = nil, *head, sec, wheelRing
	if *head != nil {
		(*head).wl.prev = ks
	}
	*head = ks
}

func (w *wheel) unlink(ks *keyState) {
	l := &ks.wl
	if l.prev != nil {
		l.prev.wl.next = l.next
	} else {
		*w.bucket(l.sec) = l.next
	}
	if l.next != nil {
		l.next.wl.prev = l.prev
	}
	l.prev, l.next, l.at = nil, nil, wheelNone
}

// forget takes a dropped key out of the wheel (a held entry left behind
// is skipped: its key is no longer held).
func (w *wheel) forget(ks *keyState) {
	if ks.wl.at == wheelRing {
		w.unlink(ks)
	}
	ks.wl.at = wheelNone
}

// sweepWheel is sweep for a threshold rule with a wheel: the keys last
// seen before cutoff with no running alert are dropped.
func (rs *ruleState) sweepWheel(cutoff int64) {
	w := rs.wheel
	lv := &rs.evict
	kept := lv.unlinked[:0]
	for _, ks := range lv.unlinked {
		switch {
		case rs.keys[ks.key] != ks || ks.ev.linked:
		case ks.alert != nil:
			kept = append(kept, ks)
		default:
			lv.link(ks, lv.count(ks)) // its alert has ended: evictable again
		}
	}
	clear(lv.unlinked[len(kept):])
	lv.unlinked = kept
	if cutoff <= 0 {
		return
	}
	w.stamp++
	expire := func(ks *keyState) {
		if ks.alert != nil {
			ks.wl.at = wheelHeld
			w.held = append(w.held, ks)
			return
		}
		rs.drop(ks.key, ks)
	}
	cut := cutoff / int64(time.Second)
	from := w.next
	if n := int64(len(w.ring)); cut-from > n {
		from = cut - n // every bucket once: each key before cut expires
	}
	for s := from; s <= cut; s++ {
		for ks := *w.bucket(s); ks != nil; {
			next := ks.wl.next
			if ks.wl.sec < cut || ks.wl.sec == cut && ks.last < cutoff {
				w.unlink(ks)
				expire(ks)
			}
			ks = next
		}
	}
	w.next = max(w.next, cut)
	held := w.held
	w.held = nil
	for _, ks := range held {
		if ks.wl.at != wheelHeld || ks.wl.stamp == w.stamp {
			continue // dropped since, or already checked
		}
		ks.wl.stamp = w.stamp
		switch {
		case ks.alert != nil:
			w.held = append(w.held, ks)
		case ks.last < cutoff:
			ks.wl.at = wheelNone
			rs.drop(ks.key, ks)
		default:
			ks.wl.at = wheelNone
			w.place(ks)
		}
	}
	clear(held)
}
