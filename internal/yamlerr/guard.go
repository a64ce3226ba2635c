package yamlerr

import (
	"bytes"
	"fmt"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Limits on what Parse accepts. Vigil's files are flat: the deepest
// key of a configuration or rule file is five levels down.
const (
	MaxFileBytes = 16 << 20 // a rule file of 10,000 rules is under 5 MiB
	MaxDepth     = 64       // nested collections
)

// Parse is the one way Vigil reads a YAML file: it checks the file's
// tokens before the parser sees them and rejects what the parser
// cannot take safely, each with its line and column:
//   - more than MaxFileBytes;
//   - collections nested deeper than MaxDepth (go-yaml's parser takes
//     memory quadratic in the depth of flow collections: 40 KB of [[[…
//     took 1.3 GB);
//   - explicit tags (!!seq, !x): Vigil's files do not use them and
//     go-yaml panics on some (a tag with no value);
//   - aliases (*name): each one copies its anchor, so a few lines can
//     expand to gigabytes;
//   - a second document: only the first would be read.
//
// A leading UTF-8 byte order mark is dropped.
func Parse(name string, src []byte) (*ast.File, []byte, error) {
	src = bytes.TrimPrefix(src, []byte("\xef\xbb\xbf"))
	if len(src) > MaxFileBytes {
		return nil, nil, &Error{File: name, Msg: fmt.Sprintf("the file is %d bytes, more than the %d accepted", len(src), MaxFileBytes)}
	}
	if err := guard(name, lexer.Tokenize(string(src))); err != nil {
		return nil, nil, err
	}
	file, err := parser.ParseBytes(src, 0)
	if err != nil {
		return nil, nil, FromYAML(name, nil, err)
	}
	return file, src, nil
}

func guard(name string, tks token.Tokens) error {
	at := func(tk *token.Token, format string, args ...any) error {
		return &Error{File: name, Line: tk.Position.Line, Column: tk.Position.Column, Msg: fmt.Sprintf(format, args...)}
	}
	flow := 0        // open [ and {
	var block []int  // columns of the open block collections
	content := false // a document has begun
	for _, tk := range tks {
		switch tk.Type {
		case token.CommentType:
			continue
		case token.TagType:
			return at(tk, "YAML tags (%s) are not accepted", tk.Value)
		case token.AliasType:
			alias := ""
			if tk.Next != nil {
				alias = tk.Next.Value
			}
			return at(tk, "YAML aliases (*%s) are not accepted; repeat the value", alias)
		case token.DocumentHeaderType:
			if content {
				return at(tk, "a second YAML document: a file holds one")
			}
			continue
		case token.DocumentEndType:
			continue
		case token.SequenceStartType, token.MappingStartType:
			flow++
		case token.SequenceEndType, token.MappingEndType:
			flow--
		case token.SequenceEntryType, token.MappingValueType:
			if flow > 0 {
				break
			}
			col := tk.Position.Column
			if tk.Type == token.MappingValueType && tk.Prev != nil {
				col = tk.Prev.Position.Column // the key's column
			}
			for len(block) > 0 && block[len(block)-1] > col {
				block = block[:len(block)-1]
			}
			if len(block) == 0 || block[len(block)-1] < col {
				block = append(block, col)
			}
		}
		content = true
		if d := flow + len(block); d > MaxDepth {
			return at(tk, "collections nested %d deep, more than the %d accepted", d, MaxDepth)
		}
	}
	return nil
}

// Unmarshal decodes a file Parse accepted into v, rejecting unknown
// keys. A panic inside go-yaml becomes an error: a bad file must never
// stop the sensor.
func Unmarshal(name string, file *ast.File, src []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &Error{File: name, Msg: fmt.Sprintf("the YAML decoder failed on this file (%v)", r)}
		}
	}()
	if err := yaml.UnmarshalWithOptions(src, v, yaml.DisallowUnknownField()); err != nil {
		return FromYAML(name, file, err)
	}
	return nil
}
