package detect

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"
)

// dispatch sends each event of a batch only to the rules whose guards
// (dispatch_guard.go) admit it. Every rule is indexed under the one
// guard field that narrows it most, in this order: destination prefix,
// source prefix, destination port, source port, protocol. An event
// looks up each index once (one map lookup per prefix length in use,
// one per port, one array slot for its protocol), so the cost of a
// batch follows the rules that can match, not the rules that exist.
// A rule found in an index is then checked against the rest of its
// guard (protocol and flag bitmaps, small port and prefix sets) before
// the event is queued for it; its own filter still decides.
//
// Rules whose guard admits everything read every event, as before.
type dispatch struct {
	n     int     // rules, in engine order
	every []int32 // rules reading every event: no useful guard
	all   []bool  // per rule: in every
	// exact, per rule: its filter is exactly its index key and check, so
	// an event routed to it matches (unless its addresses are IPv4-mapped,
	// which filters and guards read differently).
	exact []bool
	dst   prefixIndex
	src   prefixIndex
	dport map[uint16][]int32
	sport map[uint16][]int32
	proto [256][]int32
	// check is, per rule, the rest of its guard to test on an index hit;
	// nil when the index key decides alone.
	check []*guard
	// part is, per rule, the owned bits (workers.go) an event needs for
	// this worker to route it to the rule; 0: no check.
	part []uint64
}

// prefixIndex finds the rules indexed under prefixes holding an address:
// per prefix length in use, a map from the masked address (as integers:
// hashing netip values costs twice as much).
type prefixIndex struct {
	lens4, lens6 []int
	v4           map[uint64][]int32 // address << 8 | length
	v6           map[v6Key][]int32
}

type v6Key struct {
	hi, lo uint64
	bits   int
}

func v4Key(a netip.Addr, bits int) uint64 {
	b := a.As4()
	x := uint64(binary.BigEndian.Uint32(b[:]))
	if bits < 32 {
		x &^= 1<<(32-bits) - 1
	}
	return x<<8 | uint64(bits)
}

func v6KeyOf(a netip.Addr, bits int) v6Key {
	b := a.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	switch {
	case bits <= 64:
		lo = 0
		if bits < 64 {
			hi &^= 1<<(64-bits) - 1
		}
	case bits < 128:
		lo &^= 1<<(128-bits) - 1
	}
	return v6Key{hi, lo, bits}
}

func (p *prefixIndex) add(q netip.Prefix, rid int32) {
	if q.Addr().Is4() {
		if p.v4 == nil {
			p.v4 = map[uint64][]int32{}
		}
		p.lens4 = addLen(p.lens4, q.Bits())
		k := v4Key(q.Addr(), q.Bits())
		p.v4[k] = append(p.v4[k], rid)
		return
	}
	if p.v6 == nil {
		p.v6 = map[v6Key][]int32{}
	}
	p.lens6 = addLen(p.lens6, q.Bits())
	k := v6KeyOf(q.Addr(), q.Bits())
	p.v6[k] = append(p.v6[k], rid)
}

// addLen adds a prefix length to the sorted lengths in use.
func addLen(lens []int, bits int) []int {
	if i, found := slices.BinarySearch(lens, bits); !found {
		lens = slices.Insert(lens, i, bits)
	}
	return lens
}

// narrow reports whether a prefix set is worth indexing on: every
// prefix at least a /8 of IPv4 or a /16 of IPv6.
func (p prefixGuard) narrow() bool {
	if p.any {
		return false
	}
	for _, q := range p.pfx {
		if q.Addr().Is4() && q.Bits() < 8 || !q.Addr().Is4() && q.Bits() < 16 {
			return false
		}
	}
	return true
}

// maxIndexPorts is the most ports a rule is indexed under.
const maxIndexPorts = 64

// maxCheckPrefixes is the most prefixes of a guard checked on an index
// hit; a longer set is left to the filter.
const maxCheckPrefixes = 8

// newDispatch indexes the rules of rules reading source.
func newDispatch(rules []*ruleState, source Source) *dispatch {
	d := &dispatch{n: len(rules), check: make([]*guard, len(rules)), all: make([]bool, len(rules)), exact: make([]bool, len(rules)), part: make([]uint64, len(rules)),
		dport: map[uint16][]int32{}, sport: map[uint16][]int32{}}
	for i, rs := range rules {
		if rs.r.sources&(1<<source) == 0 {
			continue
		}
		rid := int32(i)
		d.part[i] = rs.partMask()
		g := rs.r.guard
		if g.empty() {
			continue // no event can match
		}
		rest := g
		switch {
		case g.dst.narrow():
			for _, q := range g.dst.pfx {
				d.dst.add(q, rid)
			}
			rest.dst = anyPrefix
		case g.src.narrow():
			for _, q := range g.src.pfx {
				d.src.add(q, rid)
			}
			rest.src = anyPrefix
		case !g.dport.any && len(g.dport.vals) <= maxIndexPorts:
			for _, p := range g.dport.vals {
				d.dport[p] = append(d.dport[p], rid)
			}
			rest.dport = anyPort
		case !g.sport.any && len(g.sport.vals) <= maxIndexPorts:
			for _, p := range g.sport.vals {
				d.sport[p] = append(d.sport[p], rid)
			}
			rest.sport = anyPort
		case g.proto != allBits:
			for p := range 256 {
				if g.proto.has(uint8(p)) {
					d.proto[p] = append(d.proto[p], rid)
				}
			}
			rest.proto = allBits
		default:
			if g.flags == allBits && g.dport.any && g.sport.any && g.dst.any && g.src.any && d.part[i] == 0 {
				d.every = append(d.every, rid)
				d.all[i] = true
				continue
			}
			for p := range 256 { // checked on every event: its guard, a worker's share
				d.proto[p] = append(d.proto[p], rid)
			}
		}
		d.exact[i] = g.exact && rs.r.kind != kindSequence && !rs.r.hasReverse
		if len(rest.dst.pfx) > maxCheckPrefixes {
			rest.dst, d.exact[i] = anyPrefix, false
		}
		if len(rest.src.pfx) > maxCheckPrefixes {
			rest.src, d.exact[i] = anyPrefix, false
		}
		if rest.proto != allBits || rest.flags != allBits || !rest.dport.any || !rest.sport.any ||
			!rest.dst.any || !rest.src.any {
			d.check[i] = &rest
		}
	}
	return d
}

// routing is a batch's events per rule, reused from batch to batch.
type routing struct {
	lists  [][]int32 // per rule: the indices of its events
	mark   []uint64  // rules with events, a bit each in engine order
	own    uint64    // the event's owned partitions
	routed int       // events queued in all, this batch
}

func (rt *routing) reset(n int) {
	if len(rt.lists) != n {
		rt.lists = make([][]int32, n)
		rt.mark = make([]uint64, (n+63)/64)
	}
}

// route queues each event for the rules that can match it; owned:
// per event the partitions this worker owns (nil: all).
func (d *dispatch) route(evs []Event, owned []uint64, rt *routing) {
	rt.reset(d.n)
	rt.routed = len(d.every) * len(evs)
	for i := range evs {
		ev := &evs[i]
		if ev.allowed {
			continue
		}
		ei := int32(i)
		rt.own = ^uint64(0)
		if owned != nil {
			rt.own = owned[i]
		}
		d.dst.route(d, ev, ev.DstAddr, ei, rt)
		d.src.route(d, ev, ev.SrcAddr, ei, rt)
		if len(d.dport) > 0 {
			d.hit(d.dport[ev.DstPort], ev, ei, rt)
		}
		if len(d.sport) > 0 {
			d.hit(d.sport[ev.SrcPort], ev, ei, rt)
		}
		d.hit(d.proto[ev.Proto], ev, ei, rt)
	}
}

func (p *prefixIndex) route(d *dispatch, ev *Event, a netip.Addr, ei int32, rt *routing) {
	switch {
	case a.Is4():
		for _, l := range p.lens4 {
			d.hit(p.v4[v4Key(a, l)], ev, ei, rt)
		}
	case a.Is4In6(): // the filter may read it either way
		p.route(d, ev, a.Unmap(), ei, rt)
		fallthrough
	case a.Is6():
		for _, l := range p.lens6 {
			d.hit(p.v6[v6KeyOf(a, l)], ev, ei, rt)
		}
	}
}

func (d *dispatch) hit(rids []int32, ev *Event, ei int32, rt *routing) {
	for _, rid := range rids {
		if m := d.part[rid]; m != 0 && rt.own&m == 0 {
			continue // another worker's
		}
		if c := d.check[rid]; c != nil && !c.admits(ev) {
			continue
		}
		l := rt.lists[rid]
		if len(l) > 0 && l[len(l)-1] == ei {
			continue // a rule indexed under two keys an event has
		}
		if len(l) == 0 {
			rt.mark[rid>>6] |= 1 << (rid & 63)
		}
		rt.lists[rid] = append(l, ei)
		rt.routed++
	}
}

// each calls f, in engine order, for every rule with events (their
// indices) and every rule reading all events (nil), with whether the
// rule's filter is known to match them, and clears the routing for the
// next batch.
func (d *dispatch) each(rt *routing, f func(rid int, idx []int32, exact bool)) {
	for _, rid := range d.every {
		rt.mark[rid>>6] |= 1 << (rid & 63)
	}
	for w, word := range rt.mark {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			word &^= 1 << b
			rid := w*64 + b
			if d.all[rid] {
				f(rid, nil, false)
				continue
			}
			idx := rt.lists[rid]
			f(rid, idx, d.exact[rid])
			rt.lists[rid] = idx[:0]
		}
		rt.mark[w] = 0
	}
}
