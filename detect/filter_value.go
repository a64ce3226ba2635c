package detect

import "net/netip"

// fltKind is the type of a filter sub-expression.
type fltKind uint8

const (
	fltBool fltKind = iota + 1
	fltInt
	fltFloat
	fltString
	fltAddr
)

var fltKindNames = [...]string{"", "bool", "integer", "float", "string", "address"}

func (k fltKind) String() string { return fltKindNames[k] }

func (k fltKind) numeric() bool { return k == fltInt || k == fltFloat }

// fltValue is a compiled sub-expression: the getter of its kind.
type fltValue struct {
	kind fltKind
	b    func(*Event) bool
	i    func(*Event) int64
	f    func(*Event) float64
	s    func(*Event) string
	a    func(*Event) netip.Addr

	konst bool      // the getter ignores the event: it may be called with nil
	str   string    // a constant string
	field *fltField // a bare field

	// A TCP flag test, when mask != 0: TCPFlags&mask == want. And-chains
	// merge these into one comparison.
	mask, want uint8
}

func fltConstBool(v bool) fltValue {
	return fltValue{kind: fltBool, konst: true, b: func(*Event) bool { return v }}
}

func fltConstInt(v int64) fltValue {
	return fltValue{kind: fltInt, konst: true, i: func(*Event) int64 { return v }}
}

func fltConstFloat(v float64) fltValue {
	return fltValue{kind: fltFloat, konst: true, f: func(*Event) float64 { return v }}
}

func fltConstString(v string) fltValue {
	return fltValue{kind: fltString, konst: true, str: v, s: func(*Event) string { return v }}
}

// fold replaces v by its value when all its operands are constants.
func (v fltValue) fold(operands ...fltValue) fltValue {
	for _, o := range operands {
		if !o.konst {
			return v
		}
	}
	switch v.kind {
	case fltBool:
		return fltConstBool(v.b(nil))
	case fltInt:
		return fltConstInt(v.i(nil))
	case fltFloat:
		return fltConstFloat(v.f(nil))
	case fltString:
		return fltConstString(v.s(nil))
	}
	return v
}

// float is a numeric value as a float64 getter.
func (v fltValue) float() func(*Event) float64 {
	if v.kind == fltFloat {
		return v.f
	}
	i := v.i
	return func(e *Event) float64 { return float64(i(e)) }
}

// fltMaskTest is TCPFlags&mask == want as a flag test.
func fltMaskTest(mask, want uint8) fltValue {
	return fltValue{kind: fltBool, mask: mask, want: want,
		b: func(e *Event) bool { return e.TCPFlags&mask == want }}
}

// fltNot negates a bool value; a one-flag test stays a flag test.
func fltNot(v fltValue) fltValue {
	if v.mask != 0 && v.mask&(v.mask-1) == 0 {
		return fltMaskTest(v.mask, v.want^v.mask)
	}
	b := v.b
	return fltValue{kind: fltBool, b: func(e *Event) bool { return !b(e) }}.fold(v)
}

var fltMirror = map[string]string{"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

// fltCompare compiles l op r; when rConst, r is the constant k.
// A is *Event in filters, []float64 in conditions.
func fltCompare[A any, T int64 | float64 | string](op string, l, r func(A) T, rConst bool, k T) func(A) bool {
	if rConst {
		switch op {
		case "==":
			return func(e A) bool { return l(e) == k }
		case "!=":
			return func(e A) bool { return l(e) != k }
		case "<":
			return func(e A) bool { return l(e) < k }
		case "<=":
			return func(e A) bool { return l(e) <= k }
		case ">":
			return func(e A) bool { return l(e) > k }
		default:
			return func(e A) bool { return l(e) >= k }
		}
	}
	switch op {
	case "==":
		return func(e A) bool { return l(e) == r(e) }
	case "!=":
		return func(e A) bool { return l(e) != r(e) }
	case "<":
		return func(e A) bool { return l(e) < r(e) }
	case "<=":
		return func(e A) bool { return l(e) <= r(e) }
	case ">":
		return func(e A) bool { return l(e) > r(e) }
	default:
		return func(e A) bool { return l(e) >= r(e) }
	}
}

// fltArith compiles l op r for + - * (and / on floats); when rConst, r
// is the constant k.
func fltArith[A any, T int64 | float64](op string, l, r func(A) T, rConst bool, k T) func(A) T {
	if rConst {
		switch op {
		case "+":
			return func(e A) T { return l(e) + k }
		case "-":
			return func(e A) T { return l(e) - k }
		case "*":
			return func(e A) T { return l(e) * k }
		default:
			return func(e A) T { return l(e) / k }
		}
	}
	switch op {
	case "+":
		return func(e A) T { return l(e) + r(e) }
	case "-":
		return func(e A) T { return l(e) - r(e) }
	case "*":
		return func(e A) T { return l(e) * r(e) }
	default:
		return func(e A) T { return l(e) / r(e) }
	}
}

// fltMod is integer l % r; a zero r yields 0 rather than a panic.
func fltMod(l, r func(*Event) int64) func(*Event) int64 {
	return func(e *Event) int64 {
		d := r(e)
		if d == 0 {
			return 0
		}
		return l(e) % d
	}
}

// fltFloatIn reports whether x is one of vals; NaN is never.
func fltFloatIn(x float64, vals []float64) bool {
	for _, v := range vals {
		if x == v {
			return true
		}
	}
	return false
}
