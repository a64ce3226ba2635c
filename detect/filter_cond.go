package detect

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
)

// Condition evaluates a `when` expression over measure values; vals[i]
// is the value of names[i] given to CompileCondition, and vals must be
// at least that long.
type Condition func(vals []float64) bool

// CompileCondition compiles a `when` expression. Identifiers are the
// names; it allows numbers, + - * / (as Go floats: x/0 is ±Inf or NaN),
// comparisons (IEEE: NaN compares false, except with !=), and or not,
// parentheses, min(a, b, ...), max(a, b, ...) and abs(x). An empty
// source is an error: a rule needs a condition to alert.
func CompileCondition(src string, names []string) (Condition, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("empty condition")
	}
	cc := &condCompiler{src: src, names: names}
	if err := fltPrecheck(src, cc); err != nil {
		return nil, err
	}
	env := make(map[string]any, len(names))
	for _, n := range names {
		env[n] = 0.0
	}
	program, err := expr.Compile(src, expr.Env(env), expr.AsBool(), expr.Optimize(false))
	if err != nil {
		return nil, fltExprError(err)
	}
	v, err := cc.node(program.Node())
	if err != nil {
		return nil, err
	}
	if v.b == nil {
		return nil, cc.errorf(program.Node(), "condition is a number, not a bool")
	}
	return v.b, nil
}

type condCompiler struct {
	src   string
	names []string
}

// condValue is a compiled sub-expression: a bool or a number.
type condValue struct {
	b     func([]float64) bool
	f     func([]float64) float64
	konst bool // ignores the values: may be called with nil
}

func (c *condCompiler) what() string { return "conditions" }

func (c *condCompiler) ident(name string) error {
	if !slices.Contains(c.names, name) {
		return fmt.Errorf("unknown measure %q (have %s)", name, strings.Join(c.names, ", "))
	}
	return nil
}

func (c *condCompiler) function(string) bool { return false }

func (c *condCompiler) builtin(name string) bool {
	return name == "min" || name == "max" || name == "abs"
}

func (c *condCompiler) errorf(n ast.Node, format string, args ...any) error {
	return fltLocError(c.src, n.Location(), format, args...)
}

func condConst(f float64) condValue {
	return condValue{konst: true, f: func([]float64) float64 { return f }}
}

// fold replaces v by its value when all its operands are constants.
func (v condValue) fold(operands ...condValue) condValue {
	for _, o := range operands {
		if !o.konst {
			return v
		}
	}
	if v.b != nil {
		r := v.b(nil)
		return condValue{konst: true, b: func([]float64) bool { return r }}
	}
	return condConst(v.f(nil))
}

func (c *condCompiler) node(n ast.Node) (condValue, error) {
	switch n := n.(type) {
	case *ast.IdentifierNode:
		i := slices.Index(c.names, n.Value)
		if i < 0 {
			return condValue{}, c.errorf(n, "%v", c.ident(n.Value))
		}
		return condValue{f: func(v []float64) float64 { return v[i] }}, nil
	case *ast.IntegerNode:
		return condConst(float64(n.Value)), nil
	case *ast.FloatNode:
		return condConst(n.Value), nil
	case *ast.BoolNode:
		b := n.Value
		return condValue{konst: true, b: func([]float64) bool { return b }}, nil
	case *ast.UnaryNode:
		return c.unary(n)
	case *ast.BinaryNode:
		return c.binary(n)
	case *ast.BuiltinNode:
		return c.builtinCall(n)
	}
	return condValue{}, c.errorf(n, "not supported in conditions: %s", n)
}

func (c *condCompiler) number(n ast.Node) (func([]float64) float64, condValue, error) {
	v, err := c.node(n)
	if err == nil && v.f == nil {
		err = c.errorf(n, "want a number, not a bool")
	}
	return v.f, v, err
}

func (c *condCompiler) boolean(n ast.Node) (func([]float64) bool, condValue, error) {
	v, err := c.node(n)
	if err == nil && v.b == nil {
		err = c.errorf(n, "want a bool, not a number")
	}
	return v.b, v, err
}

func (c *condCompiler) unary(n *ast.UnaryNode) (condValue, error) {
	if n.Operator == "not" || n.Operator == "!" {
		b, x, err := c.boolean(n.Node)
		if err != nil {
			return x, err
		}
		return condValue{b: func(v []float64) bool { return !b(v) }}.fold(x), nil
	}
	f, x, err := c.number(n.Node)
	if err != nil || n.Operator == "+" {
		return x, err
	}
	return condValue{f: func(v []float64) float64 { return -f(v) }}.fold(x), nil
}

func (c *condCompiler) binary(n *ast.BinaryNode) (condValue, error) {
	switch op := n.Operator; op {
	case "and", "&&", "or", "||":
		lb, l, err := c.boolean(n.Left)
		if err != nil {
			return l, err
		}
		rb, r, err := c.boolean(n.Right)
		if err != nil {
			return r, err
		}
		if fltIsAnd(op) {
			return condValue{b: func(v []float64) bool { return lb(v) && rb(v) }}.fold(l, r), nil
		}
		return condValue{b: func(v []float64) bool { return lb(v) || rb(v) }}.fold(l, r), nil
	case "==", "!=", "<", "<=", ">", ">=":
		l, err := c.node(n.Left)
		if err != nil {
			return l, err
		}
		r, err := c.node(n.Right)
		if err != nil {
			return r, err
		}
		if l.b != nil && r.b != nil && (op == "==" || op == "!=") {
			lb, rb, eq := l.b, r.b, op == "=="
			return condValue{b: func(v []float64) bool { return (lb(v) == rb(v)) == eq }}.fold(l, r), nil
		}
		if l.f == nil || r.f == nil {
			return l, c.errorf(n, "%s compares numbers", op)
		}
		if l.konst && !r.konst {
			l, r, op = r, l, fltMirror[op]
		}
		var k float64
		if r.konst {
			k = r.f(nil)
		}
		return condValue{b: fltCompare(op, l.f, r.f, r.konst, k)}.fold(l, r), nil
	case "+", "-", "*", "/":
		lf, l, err := c.number(n.Left)
		if err != nil {
			return l, err
		}
		rf, r, err := c.number(n.Right)
		if err != nil {
			return r, err
		}
		var k float64
		if r.konst {
			k = rf(nil)
		}
		return condValue{f: fltArith(op, lf, rf, r.konst, k)}.fold(l, r), nil
	}
	return condValue{}, c.errorf(n, "not supported in conditions: operator %s", n.Operator)
}

func (c *condCompiler) builtinCall(n *ast.BuiltinNode) (condValue, error) {
	args := make([]func([]float64) float64, len(n.Arguments))
	vals := make([]condValue, len(n.Arguments))
	for i, a := range n.Arguments {
		var err error
		if args[i], vals[i], err = c.number(a); err != nil {
			return vals[i], err
		}
	}
	if n.Name == "abs" {
		if len(args) != 1 {
			return condValue{}, c.errorf(n, "abs takes one argument")
		}
		f := args[0]
		return condValue{f: func(v []float64) float64 { return math.Abs(f(v)) }}.fold(vals...), nil
	}
	if len(args) < 2 {
		return condValue{}, c.errorf(n, "%s takes two or more arguments", n.Name)
	}
	pick := func(a, b float64) float64 { return min(a, b) }
	if n.Name == "max" {
		pick = func(a, b float64) float64 { return max(a, b) }
	}
	var f func([]float64) float64
	if len(args) == 2 {
		a, b := args[0], args[1]
		if n.Name == "max" {
			f = func(v []float64) float64 { return max(a(v), b(v)) }
		} else {
			f = func(v []float64) float64 { return min(a(v), b(v)) }
		}
	} else {
		f = func(v []float64) float64 {
			m := args[0](v)
			for _, a := range args[1:] {
				m = pick(m, a(v))
			}
			return m
		}
	}
	return condValue{f: f}.fold(vals...), nil
}
