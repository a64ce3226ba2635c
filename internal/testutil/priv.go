// Package testutil holds helpers shared by Vigil's tests.
package testutil

import (
	"os"
	"os/exec"
	"testing"

	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// PrivilegedEnv is the variable that turns skipped privileged tests into
// failures. CI sets it.
const PrivilegedEnv = "VIGIL_PRIVILEGED_TESTS"

// RequirePrivileged skips the test unless the process may load BPF
// programs and manage network namespaces. When VIGIL_PRIVILEGED_TESTS=1
// the test fails instead of skipping: in CI a skip would hide a failure.
func RequirePrivileged(tb testing.TB) {
	tb.Helper()
	if reason := privilegeProblem(); reason != "" {
		if os.Getenv(PrivilegedEnv) == "1" {
			tb.Fatalf("privileged test cannot run (%s) but %s=1", reason, PrivilegedEnv)
		}
		tb.Skipf("privileged test skipped: %s (set %s=1 to make this a failure)", reason, PrivilegedEnv)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		tb.Fatalf("removing memlock rlimit: %v", err)
	}
}

func privilegeProblem() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	var caps unix.CapUserHeader
	caps.Version = unix.LINUX_CAPABILITY_VERSION_3
	var data [2]unix.CapUserData
	if err := unix.Capget(&caps, &data[0]); err != nil {
		return "capget: " + err.Error()
	}
	const capSysAdmin = 21
	if data[0].Effective&(1<<capSysAdmin) == 0 {
		return "no CAP_SYS_ADMIN"
	}
	return ""
}

// RequireTool returns the path of an external program a test needs (a
// real collector, a protocol compiler). It skips when the program is
// missing, or fails when VIGIL_PRIVILEGED_TESTS=1: CI installs it.
func RequireTool(tb testing.TB, name string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv(PrivilegedEnv) == "1" {
			tb.Fatalf("%s is needed but missing (%v) and %s=1", name, err, PrivilegedEnv)
		}
		tb.Skipf("%s not installed: %v (set %s=1 to make this a failure)", name, err, PrivilegedEnv)
	}
	return path
}
