package detect

import (
	"fmt"

	"github.com/expr-lang/expr/ast"
)

// filterCompiler translates a type-checked filter into closures.
type filterCompiler struct {
	src   string
	lists ListSet
}

func (c *filterCompiler) what() string { return "filters" }

func (c *filterCompiler) ident(name string) error {
	if _, ok := fltLookup(name); !ok {
		return fmt.Errorf("unknown field %q", name)
	}
	return nil
}

func (c *filterCompiler) function(name string) bool { return name == "in_cidr" || name == "in_list" }

func (c *filterCompiler) builtin(string) bool { return false }

func (c *filterCompiler) errorf(n ast.Node, format string, args ...any) error {
	return fltLocError(c.src, n.Location(), format, args...)
}

func (c *filterCompiler) unsupported(n ast.Node, format string, args ...any) error {
	return c.errorf(n, "not supported in filters: %s", fmt.Sprintf(format, args...))
}

func (c *filterCompiler) node(n ast.Node) (fltValue, error) {
	switch n := n.(type) {
	case *ast.IdentifierNode:
		f, ok := fltLookup(n.Value)
		if !ok {
			return fltValue{}, c.errorf(n, "unknown field %q", n.Value)
		}
		v := f.v
		v.field = f
		return v, nil
	case *ast.IntegerNode:
		return fltConstInt(int64(n.Value)), nil
	case *ast.FloatNode:
		return fltConstFloat(n.Value), nil
	case *ast.StringNode:
		return fltConstString(n.Value), nil
	case *ast.BoolNode:
		return fltConstBool(n.Value), nil
	case *ast.UnaryNode:
		return c.unary(n)
	case *ast.BinaryNode:
		return c.binary(n)
	case *ast.CallNode:
		return c.call(n)
	case *ast.ArrayNode:
		return fltValue{}, c.unsupported(n, "a list outside in")
	}
	return fltValue{}, c.unsupported(n, "%s", n)
}

// operands compiles the operands of a binary node.
func (c *filterCompiler) operands(n *ast.BinaryNode) (l, r fltValue, err error) {
	if l, err = c.node(n.Left); err != nil {
		return
	}
	r, err = c.node(n.Right)
	return
}

func (c *filterCompiler) unary(n *ast.UnaryNode) (fltValue, error) {
	x, err := c.node(n.Node)
	if err != nil {
		return x, err
	}
	switch n.Operator {
	case "not", "!":
		if x.kind != fltBool {
			return x, c.errorf(n, "%s of a %s", n.Operator, x.kind)
		}
		return fltNot(x), nil
	case "-":
		switch x.kind {
		case fltInt:
			i := x.i
			return fltValue{kind: fltInt, i: func(e *Event) int64 { return -i(e) }}.fold(x), nil
		case fltFloat:
			f := x.f
			return fltValue{kind: fltFloat, f: func(e *Event) float64 { return -f(e) }}.fold(x), nil
		}
	case "+":
		if x.kind.numeric() {
			return x, nil
		}
	}
	return x, c.unsupported(n, "%s on a %s", n.Operator, x.kind)
}

func (c *filterCompiler) binary(n *ast.BinaryNode) (fltValue, error) {
	switch n.Operator {
	case "and", "&&", "or", "||":
		return c.logic(n)
	case "in":
		return c.in(n)
	case "..":
		return fltValue{}, c.unsupported(n, "a range outside in")
	}
	l, r, err := c.operands(n)
	if err != nil {
		return l, err
	}
	if l.kind == fltAddr || r.kind == fltAddr {
		return c.addrCompare(n, l, r)
	}
	switch n.Operator {
	case "==", "!=", "<", "<=", ">", ">=":
		return c.compare(n, l, r)
	}
	return c.arith(n, l, r)
}

func fltIsAnd(op string) bool { return op == "and" || op == "&&" }

// chain flattens a run of the same logical operator.
func fltChain(n ast.Node, and bool, out []ast.Node) []ast.Node {
	if b, ok := n.(*ast.BinaryNode); ok {
		switch {
		case and && fltIsAnd(b.Operator), !and && (b.Operator == "or" || b.Operator == "||"):
			return fltChain(b.Right, and, fltChain(b.Left, and, out))
		}
	}
	return append(out, n)
}

// logic compiles an and- or an or-chain. Constants are dropped or
// decide; in an and-chain, TCP flag tests merge into one mask
// comparison (`syn && !ack`: TCPFlags&(SYN|ACK) == SYN); in an
// or-chain, positive flags merge into one (`syn || fin`).
func (c *filterCompiler) logic(n *ast.BinaryNode) (fltValue, error) {
	and := fltIsAnd(n.Operator)
	var (
		terms      []fltValue
		mask, want uint8
		flagAt     = -1
	)
	ops := fltChain(n, and, nil)
	vals := make([]fltValue, len(ops))
	for i, o := range ops {
		v, err := c.node(o)
		if err != nil {
			return v, err
		}
		if v.kind != fltBool {
			return v, c.errorf(o, "%s of a %s", n.Operator, v.kind)
		}
		vals[i] = v
	}
	for _, v := range vals {
		switch {
		case v.konst && v.b(nil) == and:
			continue // true in and, false in or
		case v.konst:
			return fltConstBool(!and), nil
		case and && v.mask != 0:
			if mask&v.mask&(want^v.want) != 0 {
				return fltConstBool(false), nil // syn && !syn
			}
			mask, want = mask|v.mask, want|v.want
		case !and && v.mask != 0 && v.mask&(v.mask-1) == 0 && v.want == v.mask:
			mask |= v.mask
		default:
			terms = append(terms, v)
			continue
		}
		if flagAt < 0 {
			flagAt = len(terms)
			terms = append(terms, fltValue{})
		}
	}
	if flagAt >= 0 {
		if and {
			terms[flagAt] = fltMaskTest(mask, want)
		} else if mask&(mask-1) == 0 {
			terms[flagAt] = fltMaskTest(mask, mask)
		} else {
			terms[flagAt] = fltValue{kind: fltBool, b: func(e *Event) bool { return e.TCPFlags&mask != 0 }}
		}
	}
	switch len(terms) {
	case 0:
		return fltConstBool(and), nil
	case 1:
		return terms[0], nil
	}
	fs := make([]func(*Event) bool, len(terms))
	for i, t := range terms {
		fs[i] = t.b
	}
	if and {
		return fltValue{kind: fltBool, b: fltAll(fs)}, nil
	}
	return fltValue{kind: fltBool, b: fltAny(fs)}, nil
}

func fltAll(fs []func(*Event) bool) func(*Event) bool {
	switch len(fs) {
	case 2:
		a, b := fs[0], fs[1]
		return func(e *Event) bool { return a(e) && b(e) }
	case 3:
		a, b, c := fs[0], fs[1], fs[2]
		return func(e *Event) bool { return a(e) && b(e) && c(e) }
	}
	return func(e *Event) bool {
		for _, f := range fs {
			if !f(e) {
				return false
			}
		}
		return true
	}
}

func fltAny(fs []func(*Event) bool) func(*Event) bool {
	switch len(fs) {
	case 2:
		a, b := fs[0], fs[1]
		return func(e *Event) bool { return a(e) || b(e) }
	case 3:
		a, b, c := fs[0], fs[1], fs[2]
		return func(e *Event) bool { return a(e) || b(e) || c(e) }
	}
	return func(e *Event) bool {
		for _, f := range fs {
			if f(e) {
				return true
			}
		}
		return false
	}
}

// compare compiles == != < <= > >= on numbers, strings and bools.
func (c *filterCompiler) compare(n *ast.BinaryNode, l, r fltValue) (fltValue, error) {
	op := n.Operator
	eq := op == "==" || op == "!="
	if l.konst && !r.konst {
		l, r, op = r, l, fltMirror[op]
	}
	var b func(*Event) bool
	switch {
	case l.kind == fltInt && r.kind == fltInt:
		b = fltCompare(op, l.i, r.i, r.konst, constOf(r.konst, r.i))
	case l.kind.numeric() && r.kind.numeric():
		lf, rf := l.float(), r.float()
		b = fltCompare(op, lf, rf, r.konst, constOf(r.konst, rf))
	case l.kind == fltString && r.kind == fltString && eq:
		if l.field != nil && l.field.enum != nil && r.konst {
			return c.enumEqual(n, l.field, r.str, op == "==")
		}
		b = fltCompare(op, l.s, r.s, r.konst, r.str)
	case l.kind == fltBool && r.kind == fltBool && eq:
		if r.konst {
			if r.b(nil) == (op == "==") {
				return l, nil
			}
			return fltNot(l), nil
		}
		lb, rb := l.b, r.b
		if op == "==" {
			b = func(e *Event) bool { return lb(e) == rb(e) }
		} else {
			b = func(e *Event) bool { return lb(e) != rb(e) }
		}
	case l.kind == fltString && r.kind == fltString:
		return fltValue{}, c.unsupported(n, "ordering strings")
	default:
		return fltValue{}, c.errorf(n, "cannot compare a %s with a %s", l.kind, r.kind)
	}
	return fltValue{kind: fltBool, b: b}.fold(l, r), nil
}

// constOf is the value of a constant getter, or the zero value.
func constOf[T any](konst bool, f func(*Event) T) T {
	var zero T
	if !konst {
		return zero
	}
	return f(nil)
}

// enumEqual compares an enum field (direction, source, state) with a
// value name as numbers; an unknown name is an error, not a silent false.
func (c *filterCompiler) enumEqual(n ast.Node, f *fltField, s string, eq bool) (fltValue, error) {
	num, err := f.enumValue(s)
	if err != nil {
		return fltValue{}, c.errorf(n, "%v", err)
	}
	get := f.enumNum
	if eq {
		return fltValue{kind: fltBool, b: func(e *Event) bool { return get(e) == num }}, nil
	}
	return fltValue{kind: fltBool, b: func(e *Event) bool { return get(e) != num }}, nil
}

// arith compiles + - * / % on numbers. / always yields a float, as in expr.
func (c *filterCompiler) arith(n *ast.BinaryNode, l, r fltValue) (fltValue, error) {
	op := n.Operator
	if !l.kind.numeric() || !r.kind.numeric() {
		return fltValue{}, c.unsupported(n, "%s on a %s and a %s", op, l.kind, r.kind)
	}
	var v fltValue
	switch {
	case op == "%":
		if l.kind != fltInt || r.kind != fltInt {
			return v, c.errorf(n, "%% needs integers")
		}
		if r.konst && r.i(nil) == 0 {
			return v, c.errorf(n, "modulo by zero")
		}
		v = fltValue{kind: fltInt, i: fltMod(l.i, r.i)}
	case op == "/" || l.kind == fltFloat || r.kind == fltFloat:
		rf := r.float()
		v = fltValue{kind: fltFloat, f: fltArith(op, l.float(), rf, r.konst, constOf(r.konst, rf))}
	case op == "+" || op == "-" || op == "*":
		v = fltValue{kind: fltInt, i: fltArith(op, l.i, r.i, r.konst, constOf(r.konst, r.i))}
	default:
		return v, c.unsupported(n, "operator %s", op)
	}
	return v.fold(l, r), nil
}
