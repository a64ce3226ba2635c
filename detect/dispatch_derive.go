package detect

import (
	"net/netip"
	"slices"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
)

// Deriving a filter's guard (dispatch_guard.go) from its parsed
// expression, by rules that only widen.

// filterGuard is the guard of a filter expression that CompileFilter
// accepted. An empty filter admits everything.
func filterGuard(src string) guard {
	if src == "" {
		return admitAll
	}
	tree, err := parser.Parse(src)
	if err != nil {
		return admitAll
	}
	return guardOf(tree.Node, false)
}

// guardOf derives the guard of a boolean node, or of its negation when
// neg is set.
func guardOf(n ast.Node, neg bool) guard {
	switch n := n.(type) {
	case *ast.UnaryNode:
		if n.Operator == "not" || n.Operator == "!" {
			return guardOf(n.Node, !neg)
		}
	case *ast.BinaryNode:
		switch n.Operator {
		case "and", "&&":
			l, r := guardOf(n.Left, neg), guardOf(n.Right, neg)
			if neg { // not (a and b) = not a or not b
				return l.or(r)
			}
			return l.and(r)
		case "or", "||":
			l, r := guardOf(n.Left, neg), guardOf(n.Right, neg)
			if neg {
				return l.and(r)
			}
			return l.or(r)
		}
		return guardCompare(n, neg)
	case *ast.IdentifierNode:
		return guardFlag(n.Value, neg)
	case *ast.BoolNode:
		if n.Value != neg {
			return exactly(admitAll)
		}
		return admitNone
	case *ast.CallNode:
		if id, ok := n.Callee.(*ast.IdentifierNode); ok && id.Value == "in_cidr" && !neg {
			return guardCIDR(n)
		}
	}
	return admitAll
}

// guardFlag is the guard of a boolean field.
func guardFlag(name string, neg bool) guard {
	g := admitAll
	onProto := func(keep func(p uint8) bool) guard {
		g.proto = bitsWhere(func(p uint8) bool { return keep(p) != neg })
		return exactly(g)
	}
	switch name {
	case "tcp":
		return onProto(func(p uint8) bool { return p == 6 })
	case "udp":
		return onProto(func(p uint8) bool { return p == 17 })
	case "icmp":
		return onProto(func(p uint8) bool { return p == 1 || p == 58 })
	case "syn", "ack", "fin", "rst", "psh":
		bit := fltFlagBits[name]
		g.flags = bitsWhere(func(f uint8) bool { return (f&bit != 0) != neg })
		return exactly(g)
	case "amplifier_port":
		if !neg {
			g.proto = bitsWhere(func(p uint8) bool { return p == 17 })
			g.sport = portsOf(catalogPorts(amplifierPorts))
			g.exact = !g.sport.lossy
		}
	case "login_port":
		if !neg {
			g.proto = bitsWhere(func(p uint8) bool { return p == 6 })
			g.dport = portsOf(catalogPorts(loginPorts))
			g.exact = !g.dport.lossy
		}
	}
	return g
}

// fltFlagBits are the TCP flag fields.
var fltFlagBits = func() map[string]uint8 {
	m := map[string]uint8{}
	for _, f := range fltFields {
		if f.v.mask != 0 {
			m[f.name] = f.v.mask
		}
	}
	return m
}()

func catalogPorts(set *[65536]bool) []uint16 {
	var out []uint16
	for p, ok := range set {
		if ok {
			out = append(out, uint16(p))
		}
	}
	return out
}

// guardCompare is the guard of a comparison of a dispatch field with
// integer constants: ==, != and in, either way round.
func guardCompare(n *ast.BinaryNode, neg bool) guard {
	field, vals, op, ok := guardOperands(n)
	if !ok {
		return admitAll
	}
	switch op {
	case "==", "in":
	case "!=":
		neg = !neg
	default:
		return admitAll
	}
	g := admitAll
	switch field {
	case "proto", "tcp_flags":
		b := bitsWhere(func(v uint8) bool { return slices.Contains(vals, int64(v)) != neg })
		if field == "proto" {
			g.proto = b
		} else {
			g.flags = b
		}
		g.exact = true
	case "dst_port", "src_port":
		if neg {
			return admitAll // a port set less a few ports is too wide to keep
		}
		var ps []uint16
		for _, v := range vals {
			if v >= 0 && v <= 65535 {
				ps = append(ps, uint16(v))
			}
		}
		if field == "dst_port" {
			g.dport = portsOf(ps)
		} else {
			g.sport = portsOf(ps)
		}
		g.exact = !g.lossy()
	}
	return g
}

// guardOperands reads field == constant, constant == field, field in
// [constants] and field in a..b (a range of at most maxGuardPorts).
func guardOperands(n *ast.BinaryNode) (field string, vals []int64, op string, ok bool) {
	op = n.Operator
	l, r := n.Left, n.Right
	if _, isID := r.(*ast.IdentifierNode); isID && op != "in" {
		l, r = r, l
	}
	id, isID := l.(*ast.IdentifierNode)
	if !isID {
		return "", nil, "", false
	}
	switch id.Value {
	case "proto", "tcp_flags", "dst_port", "src_port":
	default:
		return "", nil, "", false
	}
	switch r := r.(type) {
	case *ast.IntegerNode:
		if op == "in" {
			return "", nil, "", false
		}
		return id.Value, []int64{int64(r.Value)}, op, true
	case *ast.ArrayNode:
		if op != "in" {
			return "", nil, "", false
		}
		for _, e := range r.Nodes {
			in, isInt := e.(*ast.IntegerNode)
			if !isInt {
				return "", nil, "", false
			}
			vals = append(vals, int64(in.Value))
		}
		return id.Value, vals, op, true
	case *ast.BinaryNode:
		lo, isLo := r.Left.(*ast.IntegerNode)
		hi, isHi := r.Right.(*ast.IntegerNode)
		if op != "in" || r.Operator != ".." || !isLo || !isHi || hi.Value-lo.Value >= maxGuardPorts {
			return "", nil, "", false
		}
		for v := lo.Value; v <= hi.Value; v++ {
			vals = append(vals, int64(v))
		}
		return id.Value, vals, op, true
	}
	return "", nil, "", false
}

// guardCIDR is the guard of in_cidr(src_addr or dst_addr, constants...).
func guardCIDR(n *ast.CallNode) guard {
	if len(n.Arguments) < 2 {
		return admitAll
	}
	id, ok := n.Arguments[0].(*ast.IdentifierNode)
	if !ok || id.Value != "dst_addr" && id.Value != "src_addr" {
		return admitAll
	}
	var ps []netip.Prefix
	for _, a := range n.Arguments[1:] {
		s, ok := a.(*ast.StringNode)
		if !ok {
			return admitAll
		}
		p, err := fltParsePrefix(s.Value)
		if err != nil {
			return admitAll
		}
		ps = append(ps, p)
	}
	g := admitAll
	if id.Value == "dst_addr" {
		g.dst = prefixesOf(ps)
	} else {
		g.src = prefixesOf(ps)
	}
	g.exact = !g.lossy()
	return g
}
