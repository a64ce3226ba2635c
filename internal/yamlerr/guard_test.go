package yamlerr

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestParseRejectsWhatTheParserCannotTake(t *testing.T) {
	deepFlow := "a: " + strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1) + "\n"
	var deepBlock strings.Builder
	deepBlock.WriteString("a:\n")
	for i := 0; i < MaxDepth+1; i++ {
		deepBlock.WriteString(strings.Repeat(" ", 2+2*i) + "-\n")
	}
	cases := []struct {
		name, src, want string
		line            int
	}{
		{"tag in a flow map", "capture: {interfaces: !!seq}\n", "", 1},
		{"tag with no value", "capture:\n  interfaces: !!seq\n", "YAML tags (!!seq) are not accepted", 2},
		{"local tag", "capture:\n  interfaces: !x\n", "YAML tags (!x) are not accepted", 2},
		{"null tag", "a:\n  b: !!null\n", "YAML tags (!!null) are not accepted", 2},
		{"alias", "a: &x [1]\nb: *x\n", "YAML aliases (*x) are not accepted", 2},
		{"second document", "a: 1\n---\nb: 2\n", "a second YAML document", 2},
		{"deep flow", deepFlow, "nested 65 deep, more than the 64 accepted", 1},
		{"deep block", deepBlock.String(), "nested 65 deep, more than the 64 accepted", MaxDepth + 1},
		{"deep sequence on one line", "a: " + strings.Repeat("- ", MaxDepth+1) + "x\n", "nested 65 deep", 1},
		{"too big", "a: \"" + strings.Repeat("x", MaxFileBytes) + "\"\n", "more than the 16777216 accepted", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse("f.yaml", []byte(tc.src))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse: %v, want an *Error", err)
			}
			if e.File != "f.yaml" || e.Line != tc.line || !strings.Contains(e.Msg, tc.want) {
				t.Errorf("Parse: %v, want f.yaml:%d and %q", err, tc.line, tc.want)
			}
		})
	}
}

func TestParseAcceptsOrdinaryFiles(t *testing.T) {
	atLimit := "a: " + strings.Repeat("[", MaxDepth-1) + strings.Repeat("]", MaxDepth-1) + "\n"
	for _, src := range []string{
		"",
		"# only a comment\n",
		"---\na: 1\n",
		"a: 1\n...\n",
		"\xef\xbb\xbfa: {b: [1, 2], c: \"!not a tag\"}\n",
		"rules:\n  - name: x\n    thresholds:\n      - {rate: 1}\n",
		atLimit,
	} {
		file, out, err := Parse("f.yaml", []byte(src))
		if err != nil || file == nil {
			t.Errorf("Parse(%q): %v", src, err)
		}
		if strings.HasPrefix(string(out), "\xef\xbb\xbf") {
			t.Errorf("Parse(%q) kept the byte order mark", src)
		}
	}
}

func TestUnmarshalRejectsUnknownKeys(t *testing.T) {
	src := []byte("a: 1\nb: 2\n")
	file, src, err := Parse("f.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		A int `yaml:"a"`
	}
	err = Unmarshal("f.yaml", file, src, &v)
	var e *Error
	if !errors.As(err, &e) || e.Line != 2 {
		t.Fatalf("Unmarshal: %v, want an error on line 2", err)
	}
}

// A panic in the decoder becomes an error: an UnmarshalYAML that
// panics stands in for go-yaml's own.
type panicky struct{}

func (*panicky) UnmarshalYAML([]byte) error { panic("boom") }

func TestUnmarshalTurnsAPanicIntoAnError(t *testing.T) {
	file, src, err := Parse("f.yaml", []byte("a: 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		A panicky `yaml:"a"`
	}
	err = Unmarshal("f.yaml", file, src, &v)
	if err == nil || !strings.Contains(err.Error(), "f.yaml") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Unmarshal: %v, want an error naming the file", err)
	}
}

// TestReadFileLimits: a FIFO must not block the reader, a directory is
// no file, and a file past MaxFileBytes is refused before it is read.
func TestReadFileLimits(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileBytes + 1); err != nil { // sparse: no disk taken
		t.Fatal(err)
	}
	f.Close()
	for path, want := range map[string]string{fifo: "not a regular file", dir: "not a regular file", big: "past the limit of 16 MiB"} {
		if _, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadFile(%s): %v, want an error that says %q", path, err, want)
		}
	}
	ok := filepath.Join(dir, "ok.yaml")
	if err := os.WriteFile(ok, []byte("a: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if src, err := ReadFile(ok); err != nil || string(src) != "a: 1\n" {
		t.Errorf("ReadFile(ok) = %q, %v", src, err)
	}
}
