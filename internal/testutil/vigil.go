package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// shared is the directory a package's tests share, and the vigil binary
// built into it.
var shared struct {
	dir   string
	build sync.Once
	bin   string
	err   error
}

// Main runs a package's tests (call it from TestMain) with a directory
// they share, SharedDir, removed when they are done.
func Main(m *testing.M) {
	dir, err := os.MkdirTemp("", "vigil-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// SharedDir returns the directory Main made for the package's tests.
func SharedDir(tb testing.TB) string {
	tb.Helper()
	if shared.dir == "" {
		tb.Fatal("testutil.SharedDir: the package's TestMain must call testutil.Main")
	}
	return shared.dir
}

// Vigil builds cmd/vigil once for all the tests of a package and
// returns the binary's path.
func Vigil(tb testing.TB) string {
	tb.Helper()
	dir := SharedDir(tb)
	shared.build.Do(func() {
		shared.bin = filepath.Join(dir, "vigil")
		out, err := exec.Command("go", "build", "-o", shared.bin, "github.com/vigil-sensor/vigil/cmd/vigil").CombinedOutput()
		if err != nil {
			shared.err = fmt.Errorf("building vigil: %v\n%s", err, out)
		}
	})
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.bin
}
