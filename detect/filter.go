package detect

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/parser/lexer"
)

// Filters and conditions are written in expr's syntax. expr parses and
// type-checks them; its VM never runs them. The checked tree is
// translated once into Go closures over typed values, so matching an
// event costs a few direct calls: no reflection, no boxing, no
// allocation.

// Filter reports whether an event matches. CompileFilter never returns a
// nil Filter: an empty source compiles to MatchAll.
type Filter func(*Event) bool

// MatchAll matches every event.
func MatchAll(*Event) bool { return true }

// AddrSet is a named list of addresses. Contains is called per event.
type AddrSet interface{ Contains(netip.Addr) bool }

// ListSet resolves list names when a filter is compiled.
type ListSet interface {
	List(name string) (AddrSet, bool)
}

// CompileFilter compiles a filter expression over event fields (see
// FieldNames). lists resolves in_list names; when it is nil, every
// in_list call is an error. Integer % by a zero that is not a constant
// yields 0; / always yields a float, as in expr.
func CompileFilter(src string, lists ListSet) (Filter, error) {
	if strings.TrimSpace(src) == "" {
		return MatchAll, nil
	}
	fc := &filterCompiler{src: src, lists: lists}
	if err := fltPrecheck(src, fc); err != nil {
		return nil, err
	}
	program, err := expr.Compile(src, expr.Env(fltEnv()), expr.AsBool(), expr.Optimize(false),
		expr.Function("in_cidr", fltNotCalled, new(func(string, ...string) bool)),
		expr.Function("in_list", fltNotCalled, new(func(string, string) bool)))
	if err != nil {
		return nil, fltExprError(err)
	}
	v, err := fc.node(program.Node())
	if err != nil {
		return nil, err
	}
	if v.kind != fltBool {
		return nil, fc.errorf(program.Node(), "filter is a %s, not a bool", v.kind)
	}
	return v.b, nil
}

// fltNotCalled stands for in_cidr and in_list in expr's type checker: the
// VM never runs a compiled filter.
func fltNotCalled(...any) (any, error) { return nil, errors.New("not callable") }

// fltLang is what the syntax pre-check needs to know about a language:
// filters or conditions.
type fltLang interface {
	what() string              // "filters" or "conditions"
	ident(name string) error   // nil when name is known
	function(name string) bool // a supported function
	builtin(name string) bool  // a supported expr builtin
	errorf(n ast.Node, format string, args ...any) error
}

// fltPrecheck rejects what the translation does not support, before expr's
// checker reports it in its own words (unknown names, member access on
// strings and the like).
func fltPrecheck(src string, c fltLang) error {
	tokens, err := lexer.Lex(file.NewSource(src))
	if err != nil {
		return fltExprError(err)
	}
	for _, t := range tokens {
		if t.Is(lexer.Operator, "|") {
			return fltLocError(src, t.Location, "not supported in %s: pipe |", c.what())
		}
	}
	tree, err := parser.Parse(src)
	if err != nil {
		return fltExprError(err)
	}
	return fltWalk(tree.Node, c)
}

var fltOps = map[string]bool{
	"and": true, "or": true, "&&": true, "||": true, "not": true, "!": true,
	"==": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true,
	"+": true, "-": true, "*": true, "/": true, "%": true, "in": true, "..": true,
}

func fltWalk(n ast.Node, c fltLang) error {
	unsupported := func(what string, args ...any) error {
		return c.errorf(n, "not supported in %s: %s", c.what(), fmt.Sprintf(what, args...))
	}
	switch n := n.(type) {
	case *ast.IdentifierNode:
		if err := c.ident(n.Value); err != nil {
			return c.errorf(n, "%v", err)
		}
	case *ast.IntegerNode, *ast.FloatNode, *ast.StringNode, *ast.BoolNode:
	case *ast.UnaryNode:
		if !fltOps[n.Operator] {
			return unsupported("operator %s", n.Operator)
		}
		return fltWalk(n.Node, c)
	case *ast.BinaryNode:
		if !fltOps[n.Operator] {
			return unsupported("operator %s", n.Operator)
		}
		if err := fltWalk(n.Left, c); err != nil {
			return err
		}
		return fltWalk(n.Right, c)
	case *ast.ArrayNode:
		for _, e := range n.Nodes {
			if err := fltWalk(e, c); err != nil {
				return err
			}
		}
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || !c.function(id.Value) {
			return unsupported("function %s", n.Callee)
		}
		return fltWalkArgs(n.Arguments, c)
	case *ast.BuiltinNode:
		if !c.builtin(n.Name) {
			return unsupported("function %s", n.Name)
		}
		return fltWalkArgs(n.Arguments, c)
	case *ast.MemberNode, *ast.ChainNode:
		return unsupported("member access %s", n)
	case *ast.MapNode, *ast.PairNode:
		return unsupported("map %s", n)
	case *ast.PredicateNode, *ast.PointerNode:
		return unsupported("closure %s", n)
	case *ast.ConditionalNode:
		return unsupported("conditional %s", n)
	case *ast.VariableDeclaratorNode, *ast.SequenceNode:
		return unsupported("let and ; sequences")
	case *ast.SliceNode:
		return unsupported("slice %s", n)
	case *ast.NilNode:
		return unsupported("nil")
	default:
		return unsupported("%s", n)
	}
	return nil
}

func fltWalkArgs(args []ast.Node, c fltLang) error {
	for _, a := range args {
		if err := fltWalk(a, c); err != nil {
			return err
		}
	}
	return nil
}

// fltExprError reduces expr's multi-line error (message, position, source
// snippet) to one line: message (line:column).
func fltExprError(err error) error {
	var fe *file.Error
	if errors.As(err, &fe) && fe.Line > 0 {
		return fmt.Errorf("%s (%d:%d)", fe.Message, fe.Line, fe.Column+1)
	}
	if errors.As(err, &fe) {
		return errors.New(fe.Message)
	}
	return err
}

func fltLocError(src string, loc file.Location, format string, args ...any) error {
	fe := (&file.Error{Location: loc}).Bind(file.NewSource(src))
	return fmt.Errorf("%s (%d:%d)", fmt.Sprintf(format, args...), fe.Line, fe.Column+1)
}
