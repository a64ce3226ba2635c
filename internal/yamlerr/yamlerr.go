// Package yamlerr locates problems in YAML files: by file, line and
// column, and by the dotted path of the field (flows.idle_timeout), for
// configuration and rule files alike.
package yamlerr

import (
	"errors"
	"fmt"
	"strings"

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
