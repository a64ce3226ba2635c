package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestCheckConfigGolden runs `vigil check-config` on every
// testdata/check-config/<case>/in.yaml (with the flags in args, if any)
// and compares what a user sees, stdout, the error and the exit status,
// with want.txt.
func TestCheckConfigGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/check-config/*")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, dir := range cases {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			args := []string{"check-config"}
			if b, err := os.ReadFile(filepath.Join(dir, "args")); err == nil {
				args = append(args, strings.Fields(string(b))...)
			}
			args = append(args, filepath.Join(dir, "in.yaml"))
			var stdout, stderr bytes.Buffer
			err := run(args, &stdout, &stderr)
			got := stdout.String() + stderr.String()
			if err != nil {
				got += "vigil: " + err.Error() + "\n"
			}
			code := 0
			if err != nil {
				code = exitCode(err)
			}
			got += fmt.Sprintf("exit status %d\n", code)

			golden := filepath.Join(dir, "want.txt")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("check-config %s (-want +got):\n%s", dir, diff)
			}
		})
	}
}
