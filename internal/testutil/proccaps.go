package testutil

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// ProcCaps reads the Cap* lines (CapInh, CapPrm, CapEff, CapBnd,
// CapAmb) of a /proc status file, of a process or of one of its threads.
func ProcCaps(t testing.TB, path string) map[string]uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	caps := map[string]uint64{}
	for l := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if !ok || !strings.HasPrefix(k, "Cap") {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			t.Fatalf("%s: %q: %v", path, l, err)
		}
		caps[k] = n
	}
	if len(caps) < 5 {
		t.Fatalf("%s: no capability lines: %v", path, caps)
	}
	return caps
}
