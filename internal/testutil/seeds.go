package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// FileSeeds returns the contents of the files matching patterns, to
// seed a fuzzer with the repository's real inputs; fewer than min files
// fails, so a moved directory cannot leave a fuzzer without seeds.
func FileSeeds(f *testing.F, min int, patterns ...string) [][]byte {
	f.Helper()
	var files []string
	for _, pat := range patterns {
		m, err := filepath.Glob(pat)
		if err != nil {
			f.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < min {
		f.Fatalf("only %d files match %v to seed the fuzzer with, want %d", len(files), patterns, min)
	}
	out := make([][]byte, len(files))
	for i, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		out[i] = src
	}
	return out
}
