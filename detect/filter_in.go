package detect

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"
)

// in compiles `x in [constants]` and `x in lo..hi`; `not in` is a not
// around it. Lists become sets once: a bitmap for integers, a bit mask
// for enum names, a map or a short slice for strings and addresses.
func (c *filterCompiler) in(n *ast.BinaryNode) (fltValue, error) {
	x, err := c.node(n.Left)
	if err != nil {
		return x, err
	}
	switch r := n.Right.(type) {
	case *ast.BinaryNode:
		if r.Operator == ".." {
			return c.inRange(r, x)
		}
	case *ast.ArrayNode:
		elems := make([]fltValue, len(r.Nodes))
		for i, en := range r.Nodes {
			if elems[i], err = c.node(en); err != nil {
				return x, err
			}
			if !elems[i].konst {
				return x, c.errorf(en, "in needs a list of constants")
			}
		}
		return c.inList(r, x, elems)
	}
	return x, c.unsupported(n.Right, "in %s: want a list of constants or a range lo..hi", n.Right)
}

func (c *filterCompiler) inRange(r *ast.BinaryNode, x fltValue) (fltValue, error) {
	lo, hi, err := c.operands(r)
	if err != nil {
		return lo, err
	}
	if !lo.konst || !hi.konst || lo.kind != fltInt || hi.kind != fltInt {
		return x, c.errorf(r, "a range needs constant integers")
	}
	if !x.kind.numeric() {
		return x, c.errorf(r, "in a range needs a number, not a %s", x.kind)
	}
	l, h := lo.i(nil), hi.i(nil)
	if l > h {
		return fltConstBool(false), nil
	}
	if x.kind == fltInt {
		get := x.i
		return fltValue{kind: fltBool, b: func(e *Event) bool { v := get(e); return v >= l && v <= h }}.fold(x), nil
	}
	// As in expr, lo..hi is the list of integers lo, lo+1, ..., hi.
	get, fl, fh := x.f, float64(l), float64(h)
	return fltValue{kind: fltBool, b: func(e *Event) bool {
		v := get(e)
		return v >= fl && v <= fh && v == math.Trunc(v)
	}}.fold(x), nil
}

func (c *filterCompiler) inList(r *ast.ArrayNode, x fltValue, elems []fltValue) (fltValue, error) {
	if len(elems) == 0 {
		return fltConstBool(false), nil
	}
	want := x.kind
	if x.kind.numeric() {
		want = fltInt
		for _, e := range elems {
			if e.kind == fltFloat {
				want = fltFloat
			}
		}
	} else if x.kind == fltAddr {
		want = fltString
	}
	for i, e := range elems {
		if e.kind != want && !(want == fltFloat && e.kind == fltInt) {
			return x, c.errorf(r.Nodes[i], "in: a %s in a list for a %s", e.kind, x.kind)
		}
	}
	var b func(*Event) bool
	switch {
	case x.kind == fltInt && want == fltInt:
		vals := make([]int64, len(elems))
		for i, e := range elems {
			vals[i] = e.i(nil)
		}
		b = fltIntIn(x, vals)
	case x.kind.numeric():
		vals := make([]float64, len(elems))
		for i, e := range elems {
			vals[i] = e.float()(nil)
		}
		get := x.float()
		b = func(e *Event) bool { return fltFloatIn(get(e), vals) }
	case x.kind == fltString && x.field != nil && x.field.enum != nil:
		var bits uint64
		for i, e := range elems {
			num, err := x.field.enumValue(e.str)
			if err != nil {
				return x, c.errorf(r.Nodes[i], "%v", err)
			}
			bits |= 1 << num
		}
		get := x.field.enumNum
		b = func(e *Event) bool { return bits>>get(e)&1 != 0 }
	case x.kind == fltString:
		set := make(map[string]struct{}, len(elems))
		for _, e := range elems {
			set[e.str] = struct{}{}
		}
		get := x.s
		b = func(e *Event) bool { _, ok := set[get(e)]; return ok }
	case x.kind == fltAddr:
		addrs := make([]netip.Addr, len(elems))
		for i, e := range elems {
			a, err := fltParseAddr(e.str)
			if err != nil {
				return x, c.errorf(r.Nodes[i], "%v", err)
			}
			addrs[i] = a
		}
		b = fltAddrIn(x.a, addrs)
	default:
		return x, c.unsupported(r, "in on a %s", x.kind)
	}
	return fltValue{kind: fltBool, b: b}.fold(x), nil
}

// fltIntIn tests membership in a set of integers: a bitmap when they
// span less than 64Ki values (ports, protocols), else a binary search.
func fltIntIn(x fltValue, vals []int64) func(*Event) bool {
	slices.Sort(vals)
	vals = slices.Compact(vals)
	get := x.i
	lo, hi := vals[0], vals[len(vals)-1]
	if len(vals) == 1 {
		return func(e *Event) bool { return get(e) == lo }
	}
	if uint64(hi-lo) >= 1<<16 {
		return func(e *Event) bool { _, ok := slices.BinarySearch(vals, get(e)); return ok }
	}
	bm := &fltBitmap{lo: lo, hi: hi, bits: make([]uint64, (hi-lo)/64+1)}
	for _, v := range vals {
		d := uint64(v - lo)
		bm.bits[d>>6] |= 1 << (d & 63)
	}
	if x.field != nil {
		switch x.field.name {
		case "src_port":
			return func(e *Event) bool { return bm.has(int64(e.SrcPort)) }
		case "dst_port":
			return func(e *Event) bool { return bm.has(int64(e.DstPort)) }
		case "proto":
			return func(e *Event) bool { return bm.has(int64(e.Proto)) }
		}
	}
	return func(e *Event) bool { return bm.has(get(e)) }
}

type fltBitmap struct {
	lo, hi int64
	bits   []uint64
}

func (m *fltBitmap) has(v int64) bool {
	if v < m.lo || v > m.hi {
		return false
	}
	d := uint64(v - m.lo)
	return m.bits[d>>6]&(1<<(d&63)) != 0
}

func fltAddrIn(get func(*Event) netip.Addr, addrs []netip.Addr) func(*Event) bool {
	if len(addrs) <= 8 {
		return func(e *Event) bool { return slices.Contains(addrs, get(e)) }
	}
	set := make(map[netip.Addr]struct{}, len(addrs))
	for _, a := range addrs {
		set[a] = struct{}{}
	}
	return func(e *Event) bool { _, ok := set[get(e)]; return ok }
}

// addrCompare compiles == and != between addresses, or an address and
// a constant string parsed once.
func (c *filterCompiler) addrCompare(n *ast.BinaryNode, l, r fltValue) (fltValue, error) {
	op := n.Operator
	if op != "==" && op != "!=" {
		return l, c.unsupported(n, "%s on addresses (use == != in or in_cidr)", op)
	}
	if l.kind != fltAddr {
		l, r = r, l
	}
	la := l.a
	var b func(*Event) bool
	switch {
	case r.kind == fltAddr:
		ra := r.a
		b = func(e *Event) bool { return la(e) == ra(e) }
	case r.kind == fltString && r.konst:
		k, err := fltParseAddr(r.str)
		if err != nil {
			return l, c.errorf(n, "%v", err)
		}
		b = func(e *Event) bool { return la(e) == k }
	default:
		return l, c.errorf(n, "an address compares with an address or a constant string, not a %s", r.kind)
	}
	if op == "!=" {
		eq := b
		b = func(e *Event) bool { return !eq(e) }
	}
	return fltValue{kind: fltBool, b: b}, nil
}

// call compiles in_cidr(addr, prefix...) and in_list(addr, name).
func (c *filterCompiler) call(n *ast.CallNode) (fltValue, error) {
	name := n.Callee.String()
	if !c.function(name) {
		return fltValue{}, c.unsupported(n, "function %s", name)
	}
	if len(n.Arguments) < 2 || (name == "in_list" && len(n.Arguments) != 2) {
		return fltValue{}, c.errorf(n, "%s: want %s", name, map[string]string{
			"in_cidr": "in_cidr(address, prefix, ...)", "in_list": `in_list(address, "list name")`}[name])
	}
	x, err := c.node(n.Arguments[0])
	if err != nil {
		return x, err
	}
	if x.kind != fltAddr {
		return x, c.errorf(n.Arguments[0], "%s: a %s is not an address", name, x.kind)
	}
	strs := make([]string, len(n.Arguments)-1)
	for i, an := range n.Arguments[1:] {
		v, err := c.node(an)
		if err != nil {
			return v, err
		}
		if !v.konst || v.kind != fltString {
			return v, c.errorf(an, "%s: want a constant string", name)
		}
		strs[i] = v.str
	}
	if name == "in_list" {
		return c.inNamedList(n, x, strs[0])
	}
	var set fltPrefixSet
	for i, s := range strs {
		p, err := fltParsePrefix(s)
		if err != nil {
			return x, c.errorf(n.Arguments[i+1], "in_cidr: %v", err)
		}
		set.add(p)
	}
	set.build()
	get := x.a
	b := func(e *Event) bool { return set.contains(get(e)) }
	if x.field != nil {
		switch x.field.name {
		case "src_addr":
			b = func(e *Event) bool { return set.contains(e.SrcAddr) }
		case "dst_addr":
			b = func(e *Event) bool { return set.contains(e.DstAddr) }
		}
	}
	return fltValue{kind: fltBool, b: b}, nil
}

func (c *filterCompiler) inNamedList(n *ast.CallNode, x fltValue, name string) (fltValue, error) {
	var set AddrSet
	ok := false
	if c.lists != nil {
		set, ok = c.lists.List(name)
	}
	if !ok || set == nil {
		return x, c.errorf(n.Arguments[1], "in_list: unknown list %q", name)
	}
	get := x.a
	return fltValue{kind: fltBool, b: func(e *Event) bool { return set.Contains(get(e)) }}, nil
}

// fltParseAddr parses an address constant. Events carry plain IPv4
// addresses, so an IPv4-mapped IPv6 constant is unmapped.
func fltParseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		if _, perr := netip.ParsePrefix(s); perr == nil {
			return a, fmt.Errorf("%q is a prefix, not an address (use in_cidr)", s)
		}
		return a, fmt.Errorf("bad address %q", s)
	}
	if a.Zone() != "" {
		return a, fmt.Errorf("bad address %q: zones are not supported", s)
	}
	return a.Unmap(), nil
}

// fltParsePrefix parses a prefix constant; a bare address is a
// one-address prefix, an IPv4-mapped prefix is unmapped.
func fltParsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := fltParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("bad prefix %q", s)
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}
