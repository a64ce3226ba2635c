package yamlerr

// FuzzParse: Parse and Unmarshal of any bytes return an error or a
// value, never panic, and stay within the limits Parse promises: what it
// accepts is not nested past MaxDepth, and decoding it does not take
// memory out of proportion to its size.

import (
	"runtime"
	"strings"
	"testing"

	"github.com/goccy/go-yaml/ast"

	"github.com/vigil-sensor/vigil/internal/testutil"
)

// fuzzDoc is shaped like Vigil's files: known keys, nested sections,
// lists, durations; unknown keys are errors.
type fuzzDoc struct {
	Name   string             `yaml:"name"`
	Rate   float64            `yaml:"rate"`
	N      int                `yaml:"n"`
	On     bool               `yaml:"on"`
	Every  Duration           `yaml:"every"`
	Tags   []string           `yaml:"tags"`
	Limits map[string]float64 `yaml:"limits"`
	Sub    *fuzzDoc           `yaml:"sub"`
	Items  []fuzzDoc          `yaml:"items"`
	Any    any                `yaml:"any"`
}

func yamlSeeds(f *testing.F) {
	for _, src := range testutil.FileSeeds(f, 10,
		"../../packaging/*.yaml",
		"../../cmd/vigil/testdata/check-config/*/*.yaml",
		"../../detect/pack/*.yaml",
		"../../detect/testdata/rules/*.yaml",
	) {
		f.Add(src)
	}
	for _, s := range []string{
		"name: x\nrate: 1.5\nevery: 10s\ntags: [a, b]\nlimits: {pps: 10}\nsub:\n  n: 3\n  sub:\n    on: true\nitems:\n  - name: y\n",
		"any: [[[[1]]]]\n",
		"a: &x 1\nb: *x\n",
		"!!map {}\n",
		"---\na: 1\n---\nb: 2\n",
		"\xef\xbb\xbfname: bom\n",
		"any: {a: [b, {c: d}]}\n",
	} {
		f.Add([]byte(s))
	}
}

// depth is the nesting of an AST's collections.
func depth(n ast.Node) int {
	d := 0
	var walk func(ast.Node, int)
	walk = func(n ast.Node, at int) {
		if n == nil {
			return
		}
		switch n.(type) {
		case *ast.MappingNode, *ast.SequenceNode:
			at++
		}
		d = max(d, at)
		ast.Walk(visitFunc(func(c ast.Node) bool {
			if c == n {
				return true
			}
			walk(c, at)
			return false
		}), n)
	}
	walk(n, 0)
	return d
}

func FuzzParse(f *testing.F) {
	yamlSeeds(f)
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > 64<<10 {
			return
		}
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		file, body, err := Parse("f.yaml", src)
		if err != nil {
			if e, ok := err.(*Error); !ok || e.File != "f.yaml" || e.Msg == "" {
				t.Fatalf("Parse error %v (%T) is not an *Error naming the file", err, err)
			}
			return
		}
		if file == nil {
			t.Fatal("Parse returned no file and no error")
		}
		for _, doc := range file.Docs {
			// A mapping value counts twice in the walk (the value node and
			// the mapping under it), so allow twice the limit.
			if d := depth(doc); d > 2*MaxDepth+2 {
				t.Fatalf("Parse accepted collections nested %d deep", d)
			}
		}
		var v fuzzDoc
		if err := Unmarshal("f.yaml", file, body, &v); err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml") {
				t.Fatalf("Unmarshal error %q does not name the file", err)
			}
		}
		var m any
		_ = Unmarshal("f.yaml", file, body, &m)
		// Every field path in the file can be located.
		_ = Locate("f.yaml", file, []Problem{{Field: "name", Msg: "x"}, {Field: "sub.items[0].n", Msg: "y"}, {Field: "", Msg: "z"}})
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		// go-yaml is not frugal, but what it allocates should grow with the
		// input, not explode: 64 KiB of input has no business taking more
		// than a few hundred MiB.
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 4096*uint64(len(src))+64<<20 {
			t.Fatalf("%d bytes of YAML took %d MiB to parse and decode", len(src), grew>>20)
		}
	})
}
