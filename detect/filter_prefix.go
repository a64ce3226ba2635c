package detect

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
)

// fltPrefixSet matches addresses against prefixes, held as sorted,
// merged ranges per family: a short scan for a few, a binary search for
// many. IPv4 prefixes match IPv4 addresses only.
type fltPrefixSet struct {
	v4, v6 []fltSpan
}

// fltU128 is an address as a number; IPv4 fits in lo.
type fltU128 struct{ hi, lo uint64 }

func (a fltU128) cmp(b fltU128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func (a fltU128) less(b fltU128) bool {
	return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo)
}

// fltSpan is the range of addresses lo..hi, inclusive.
type fltSpan struct{ lo, hi fltU128 }

func fltAddrNum(a netip.Addr) fltU128 {
	if a.Is4() {
		b := a.As4()
		return fltU128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return fltU128{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

// fltLowOnes is n (0..64) low bits set.
func fltLowOnes(n int) uint64 { return ^uint64(0) >> (64 - n) }

func (s *fltPrefixSet) add(p netip.Prefix) {
	lo := fltAddrNum(p.Addr())
	host := p.Addr().BitLen() - p.Bits()
	hi := lo
	if host <= 64 {
		hi.lo |= fltLowOnes(host)
	} else {
		hi.lo = ^uint64(0)
		hi.hi |= fltLowOnes(host - 64)
	}
	if p.Addr().Is4() {
		s.v4 = append(s.v4, fltSpan{lo, hi})
	} else {
		s.v6 = append(s.v6, fltSpan{lo, hi})
	}
}

func (s *fltPrefixSet) build() {
	s.v4 = fltMerge(s.v4)
	s.v6 = fltMerge(s.v6)
}

// fltMerge sorts spans and merges those that overlap or touch.
func fltMerge(spans []fltSpan) []fltSpan {
	slices.SortFunc(spans, func(a, b fltSpan) int { return a.lo.cmp(b.lo) })
	out := spans[:0]
	for _, sp := range spans {
		if n := len(out); n > 0 {
			last := &out[n-1]
			next := last.hi
			next.lo++
			if next.lo == 0 {
				next.hi++
			}
			if next == (fltU128{}) || !next.less(sp.lo) { // last ends at the top, or sp starts by next
				if last.hi.less(sp.hi) {
					last.hi = sp.hi
				}
				continue
			}
		}
		out = append(out, sp)
	}
	return slices.Clip(out)
}

func (s *fltPrefixSet) contains(a netip.Addr) bool {
	switch {
	case a.Is4():
		return fltSpansContain(s.v4, fltAddrNum(a))
	case a.Is6():
		return fltSpansContain(s.v6, fltAddrNum(a))
	}
	return false
}

func fltSpansContain(spans []fltSpan, x fltU128) bool {
	if len(spans) <= 4 {
		for i := range spans {
			if !x.less(spans[i].lo) && !spans[i].hi.less(x) {
				return true
			}
		}
		return false
	}
	// The last span starting at or before x is the only candidate.
	lo, hi := 0, len(spans)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if x.less(spans[m].lo) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo > 0 && !spans[lo-1].hi.less(x)
}
