package daemon

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// ConfigError is a problem in a configuration file, located by file,
// line and column, and by the dotted path of the field.
type ConfigError struct {
	File   string
	Line   int // 0 when the problem has no place in the file
	Column int
	Field  string // flows.idle_timeout; empty for syntax errors
	Msg    string
}

func (e *ConfigError) Error() string {
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

// LoadConfig reads a YAML configuration file over DefaultConfig. Unknown
// keys are rejected. Every error is a *ConfigError (several are joined
// with errors.Join) naming the file, line and field.
func LoadConfig(path string) (Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading configuration: %w", err)
	}
	return ParseConfig(path, src)
}

// ParseConfig is LoadConfig on the file's contents; name is used in
// errors.
func ParseConfig(name string, src []byte) (Config, error) {
	cfg := DefaultConfig()
	file, err := parser.ParseBytes(src, 0)
	if err != nil {
		return Config{}, yamlError(name, nil, err)
	}
	empty := true // no document, or only comments: the defaults
	for _, doc := range file.Docs {
		if doc.Body != nil && doc.Body.Type() != ast.CommentType {
			empty = false
		}
	}
	if empty {
		return cfg, nil
	}
	if err := yaml.UnmarshalWithOptions(src, &cfg, yaml.DisallowUnknownField()); err != nil {
		return Config{}, yamlError(name, file, err)
	}
	cfg.Export.fillDefaults()
	if fes := cfg.Validate(); len(fes) > 0 {
		ces := make([]*ConfigError, len(fes))
		for i, fe := range fes {
			ce := &ConfigError{File: name, Field: fe.Field, Msg: fe.Msg}
			if n := nodeAt(file, fe.Field); n != nil {
				pos := n.GetToken().Position
				ce.Line, ce.Column = pos.Line, pos.Column
			}
			ces[i] = ce
		}
		// In file order; problems with defaults (no line) last.
		slices.SortStableFunc(ces, func(a, b *ConfigError) int {
			la, lb := a.Line, b.Line
			if la == 0 {
				la = math.MaxInt
			}
			if lb == 0 {
				lb = math.MaxInt
			}
			return cmp.Or(cmp.Compare(la, lb), cmp.Compare(a.Column, b.Column))
		})
		errs := make([]error, len(ces))
		for i, ce := range ces {
			errs[i] = ce
		}
		return Config{}, errors.Join(errs...)
	}
	return cfg, nil
}

// yamlError turns a go-yaml error into a ConfigError with its place and,
// when the AST is known, the path of the field it is about.
func yamlError(name string, file *ast.File, err error) error {
	ce := &ConfigError{File: name, Msg: err.Error()}
	var ye yaml.Error
	if errors.As(err, &ye) {
		ce.Msg = ye.GetMessage()
		if tk := ye.GetToken(); tk != nil {
			ce.Line, ce.Column = tk.Position.Line, tk.Position.Column
			ce.Field = fieldAt(file, tk)
		}
	}
	return ce
}

// nodeAt finds the value node of a dotted field path (capture.interfaces[1]).
func nodeAt(file *ast.File, field string) ast.Node {
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

// fieldAt returns the dotted path of the node holding token tk.
func fieldAt(file *ast.File, tk *token.Token) string {
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
