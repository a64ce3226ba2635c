// Package yamlerr locates problems in YAML files: by file, line and
// column, and by the dotted path of the field (flows.idle_timeout), for
// configuration and rule files alike.
package yamlerr

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// Error is a problem in a YAML file, located by file,
// line and column, and by the dotted path of the field.
type Error struct {
	File   string
	Line   int // 0 when the problem has no place in the file
	Column int
	Field  string // flows.idle_timeout; empty for syntax errors
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// FromYAML turns a go-yaml error into an Error with its place and,
// when the AST is known, the path of the field it is about.
func FromYAML(name string, file *ast.File, err error) error {
	ce := &Error{File: name, Msg: err.Error()}
	var ye yaml.Error
	if errors.As(err, &ye) {
		ce.Msg = ye.GetMessage()
		if tk := ye.GetToken(); tk != nil {
			ce.Line, ce.Column = tk.Position.Line, tk.Position.Column
			ce.Field = FieldAt(file, tk)
		}
	}
	return ce
}

// NodeAt finds the value node of a dotted field path (capture.interfaces[1]).
func NodeAt(file *ast.File, field string) ast.Node {
	p, err := yaml.PathString("$." + field)
	if err != nil {
		return nil
	}
	n, err := p.FilterFile(file)
	if err != nil {
		return nil
	}
	return n
}

// FieldAt returns the dotted path of the node holding token tk.
func FieldAt(file *ast.File, tk *token.Token) string {
	if file == nil {
		return ""
	}
	v := &tokenFinder{tk: tk}
	for _, doc := range file.Docs {
		ast.Walk(v, doc)
	}
	if v.found == nil {
		return ""
	}
	return strings.TrimPrefix(strings.TrimPrefix(v.found.GetPath(), "$"), ".")
}

type tokenFinder struct {
	tk    *token.Token
	found ast.Node
}

func (v *tokenFinder) Visit(n ast.Node) ast.Visitor {
	if v.found != nil || n == nil {
		return nil
	}
	if t := n.GetToken(); t != nil && t.Position.Line == v.tk.Position.Line && t.Position.Column == v.tk.Position.Column {
		if mv, ok := n.(*ast.MappingValueNode); ok {
			v.found = mv.Value
		} else {
			v.found = n
		}
		return nil
	}
	return v
}

// Problem is a validation problem at a dotted field path.
type Problem struct {
	Field, Msg string
}

// Locate places each problem in file, at the node of its field or, for
// a field that is missing, at the key of the mapping it belongs in, and
// returns them as *Errors joined in file order (problems with no place,
// such as defaults, last).
func Locate(name string, file *ast.File, ps []Problem) error {
	es := make([]*Error, len(ps))
	for i, p := range ps {
		e := &Error{File: name, Field: p.Field, Msg: p.Msg}
		if n := NodeAt(file, p.Field); n != nil {
			pos := n.GetToken().Position
			e.Line, e.Column = pos.Line, pos.Column
		} else if tk := keyToken(file, parentPath(p.Field)); tk != nil {
			e.Line, e.Column = tk.Position.Line, tk.Position.Column
		}
		es[i] = e
	}
	slices.SortStableFunc(es, func(a, b *Error) int {
		la, lb := a.Line, b.Line
		if la == 0 {
			la = math.MaxInt
		}
		if lb == 0 {
			lb = math.MaxInt
		}
		return cmp.Or(cmp.Compare(la, lb), cmp.Compare(a.Column, b.Column))
	})
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// keyToken finds the token of the key whose value is at path.
func keyToken(file *ast.File, path string) *token.Token {
	if file == nil || path == "" {
		return nil
	}
	var found *token.Token
	for _, doc := range file.Docs {
		ast.Walk(visitFunc(func(n ast.Node) bool {
			if mv, ok := n.(*ast.MappingValueNode); ok && found == nil &&
				strings.TrimPrefix(mv.Value.GetPath(), "$.") == path {
				found = mv.Key.GetToken()
			}
			return found == nil
		}), doc)
	}
	return found
}

type visitFunc func(ast.Node) bool

func (f visitFunc) Visit(n ast.Node) ast.Visitor {
	if n == nil || !f(n) {
		return nil
	}
	return f
}

// parentPath drops the last element of a dotted path.
func parentPath(p string) string {
	if i := strings.LastIndexAny(p, ".["); i > 0 {
		return p[:i]
	}
	return ""
}

// Duration is a time.Duration written as "15s" or "1m30s" in YAML. A
// value that does not parse is kept, for validation to report with the
// field's place.
type Duration struct {
	D       time.Duration
	invalid string
}

// Invalid returns the text of a value that is not a duration, or "".
func (d Duration) Invalid() string { return d.invalid }

// UnmarshalYAML parses a duration string. It takes the decoded value,
// not the node's text: goccy/go-yaml formats a node for a bytes
// unmarshaler by indexing every token of the whole file, which made a
// rule file's load quadratic in its size (1,000 rules: 3 s and 2.9 GB).
func (d *Duration) UnmarshalYAML(unmarshal func(any) error) error {
	var raw any
	if err := unmarshal(&raw); err != nil {
		return err
	}
	var s string
	switch v := raw.(type) {
	case string:
		s = strings.TrimSpace(v)
	case nil:
		s = "null"
	default:
		s = fmt.Sprint(v)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		*d = Duration{invalid: s}
		return nil
	}
	*d = Duration{D: v}
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return d.D.String(), nil }
