package detect

import (
	"net/netip"
	"slices"
)

// A guard is what an event must have for a filter to be able to match
// it: per dispatch field, a set of values holding every value for which
// the filter can be true. It is a necessary condition, never a
// sufficient one: the filter still decides. The dispatch index
// (dispatch.go) sends an event only to the rules whose guards admit it.
//
// Guards are derived from the parsed filter by rules that only ever
// widen: and intersects, or unions, not pushes down to the leaves, and
// anything not understood admits everything. So a guard can be wider
// than its filter (a rule then sees events its filter rejects, as
// before) but never narrower.
type guard struct {
	proto, flags bits256
	dport, sport portGuard
	dst, src     prefixGuard
	// exact: the filter matches exactly the events the guard admits, so
	// an event routed by it needs no filter call.
	exact bool
}

// bits256 is a set of byte values (protocols, TCP flag bytes).
type bits256 [4]uint64

var allBits = bits256{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}

func (b *bits256) has(v uint8) bool { return b[v>>6]&(1<<(v&63)) != 0 }
func (b *bits256) set(v uint8)      { b[v>>6] |= 1 << (v & 63) }
func (b bits256) and(o bits256) bits256 {
	return bits256{b[0] & o[0], b[1] & o[1], b[2] & o[2], b[3] & o[3]}
}
func (b bits256) or(o bits256) bits256 {
	return bits256{b[0] | o[0], b[1] | o[1], b[2] | o[2], b[3] | o[3]}
}

// bitsWhere is the set of byte values v for which keep(v) holds.
func bitsWhere(keep func(v uint8) bool) bits256 {
	var b bits256
	for v := range 256 {
		if keep(uint8(v)) {
			b.set(uint8(v))
		}
	}
	return b
}

// maxGuardPorts and maxGuardPrefixes bound the explicit sets a guard
// keeps; a larger set admits every value.
const (
	maxGuardPorts    = 256
	maxGuardPrefixes = 4096
)

// portGuard is a set of ports: any, or the sorted values in vals.
type portGuard struct {
	any  bool
	vals []uint16
	// lossy: a set too large to keep, widened to any.
	lossy bool
}

var anyPort = portGuard{any: true}

func (p portGuard) has(v uint16) bool {
	if p.any {
		return true
	}
	if len(p.vals) <= 8 {
		return slices.Contains(p.vals, v)
	}
	_, ok := slices.BinarySearch(p.vals, v)
	return ok
}

func portsOf(vals []uint16) portGuard {
	if len(vals) > maxGuardPorts {
		return portGuard{any: true, lossy: true}
	}
	vals = slices.Clone(vals)
	slices.Sort(vals)
	return portGuard{vals: slices.Compact(vals)}
}

func (p portGuard) and(o portGuard) portGuard {
	switch {
	case p.any:
		o.lossy = o.lossy || p.lossy
		return o
	case o.any:
		p.lossy = p.lossy || o.lossy
		return p
	}
	var out []uint16
	for _, v := range p.vals {
		if o.has(v) {
			out = append(out, v)
		}
	}
	return portGuard{vals: out}
}

func (p portGuard) or(o portGuard) portGuard {
	if p.any || o.any {
		return portGuard{any: true, lossy: p.lossy || o.lossy}
	}
	return portsOf(append(slices.Clone(p.vals), o.vals...))
}

// prefixGuard is a set of addresses: any, or the union of pfx (masked,
// IPv4 unmapped, none inside another).
type prefixGuard struct {
	any   bool
	pfx   []netip.Prefix
	lossy bool // a set too large to keep, widened to any
}

var anyPrefix = prefixGuard{any: true}

func prefixesOf(ps []netip.Prefix) prefixGuard {
	if len(ps) > maxGuardPrefixes {
		return prefixGuard{any: true, lossy: true}
	}
	ps = slices.Clone(ps)
	// Shortest first: a prefix inside one kept before it is dropped.
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if a.Bits() != b.Bits() {
			return a.Bits() - b.Bits()
		}
		return a.Addr().Compare(b.Addr())
	})
	var out []netip.Prefix
	for _, p := range ps {
		if !slices.ContainsFunc(out, func(q netip.Prefix) bool { return q.Overlaps(p) }) {
			out = append(out, p)
		}
	}
	return prefixGuard{pfx: out}
}

func (p prefixGuard) and(o prefixGuard) prefixGuard {
	switch {
	case p.any:
		o.lossy = o.lossy || p.lossy
		return o
	case o.any:
		p.lossy = p.lossy || o.lossy
		return p
	}
	// Each address in both is in a prefix of p inside or around one of
	// o: keep, of each overlapping pair, the longer prefix.
	var out []netip.Prefix
	for _, a := range p.pfx {
		for _, b := range o.pfx {
			switch {
			case !a.Overlaps(b):
			case a.Bits() >= b.Bits():
				out = append(out, a)
			default:
				out = append(out, b)
			}
		}
	}
	return prefixesOf(out)
}

func (p prefixGuard) or(o prefixGuard) prefixGuard {
	if p.any || o.any {
		return prefixGuard{any: true, lossy: p.lossy || o.lossy}
	}
	return prefixesOf(append(slices.Clone(p.pfx), o.pfx...))
}

// contains reports whether a, or the IPv4 address it maps, is in the set.
func (p prefixGuard) contains(a netip.Addr) bool {
	if p.any {
		return true
	}
	if a.Is4In6() && p.contains(a.Unmap()) {
		return true
	}
	for _, q := range p.pfx {
		if q.Contains(a) {
			return true
		}
	}
	return false
}

// admitAll is the guard of a filter that can match anything: a guess,
// unless it is made exact (the filter true).
var admitAll = guard{proto: allBits, flags: allBits, dport: anyPort, sport: anyPort, dst: anyPrefix, src: anyPrefix}

// admitNone is the guard of a filter that never matches.
var admitNone = guard{exact: true}

// exactly is g, known to be exactly its filter.
func exactly(g guard) guard {
	g.exact = true
	return g
}

func (g guard) lossy() bool {
	return g.dport.lossy || g.sport.lossy || g.dst.lossy || g.src.lossy
}

// and is the guard of a conjunction: exact when both are, as the
// intersection of two products of sets is the product of their
// intersections.
func (g guard) and(o guard) guard {
	out := guard{
		proto: g.proto.and(o.proto), flags: g.flags.and(o.flags),
		dport: g.dport.and(o.dport), sport: g.sport.and(o.sport),
		dst: g.dst.and(o.dst), src: g.src.and(o.src),
	}
	out.exact = g.exact && o.exact && !out.lossy()
	return out
}

// or is the guard of a disjunction: exact when both are and they
// differ in one field at most (otherwise the union of two products is
// not a product).
func (g guard) or(o guard) guard {
	if g.empty() { // a guard admitting nothing is exact: so is its filter
		return o
	}
	if o.empty() {
		return g
	}
	out := guard{
		proto: g.proto.or(o.proto), flags: g.flags.or(o.flags),
		dport: g.dport.or(o.dport), sport: g.sport.or(o.sport),
		dst: g.dst.or(o.dst), src: g.src.or(o.src),
	}
	out.exact = g.exact && o.exact && g.differs(o) <= 1 && !out.lossy()
	return out
}

// differs counts the fields in which g and o admit different values.
func (g guard) differs(o guard) int {
	n := 0
	for _, same := range []bool{
		g.proto == o.proto, g.flags == o.flags,
		g.dport.any == o.dport.any && slices.Equal(g.dport.vals, o.dport.vals),
		g.sport.any == o.sport.any && slices.Equal(g.sport.vals, o.sport.vals),
		g.dst.any == o.dst.any && slices.Equal(g.dst.pfx, o.dst.pfx),
		g.src.any == o.src.any && slices.Equal(g.src.pfx, o.src.pfx),
	} {
		if !same {
			n++
		}
	}
	return n
}

// empty reports whether no event can pass the guard.
func (g guard) empty() bool {
	return g.proto == bits256{} || g.flags == bits256{} ||
		!g.dport.any && len(g.dport.vals) == 0 || !g.sport.any && len(g.sport.vals) == 0 ||
		!g.dst.any && len(g.dst.pfx) == 0 || !g.src.any && len(g.src.pfx) == 0
}

// admits reports whether ev passes every field of the guard.
func (g *guard) admits(ev *Event) bool {
	return g.proto.has(ev.Proto) && g.flags.has(ev.TCPFlags) &&
		g.dport.has(ev.DstPort) && g.sport.has(ev.SrcPort) &&
		g.dst.contains(ev.DstAddr) && g.src.contains(ev.SrcAddr)
}
