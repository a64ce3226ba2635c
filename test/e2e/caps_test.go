package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

// TestRunWithLeastPrivilege runs vigil as nobody with only CAP_BPF,
// CAP_NET_ADMIN and CAP_PERFMON: it must load, attach, and stop cleanly.
func TestRunWithLeastPrivilege(t *testing.T) {
	testutil.RequirePrivileged(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed: %v", err)
	}
	built := testutil.Vigil(t)
	dir, err := os.MkdirTemp("", "vigil-caps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "vigil")
	data, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lab := labUp(t)

	const caps = "-all,+bpf,+net_admin,+perfmon"
	cmd := exec.Command("nsenter", "--net=/run/netns/"+lab.Sensor.Name,
		"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps="+caps, "--ambient-caps="+caps, "--bounding-set="+caps,
		bin, "run", "--interface", netlab.SensorIf, "--stats-every", "0", "--metrics-addr", "127.0.0.1:0")
	var stderr testutil.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(20 * time.Second)
	for !strings.Contains(stderr.String(), "msg=attached") {
		select {
		case err := <-exited:
			t.Fatalf("vigil exited (%v) before attaching with CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON:\n%s", err, stderr.String())
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("vigil did not attach within 20s:\n%s", stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "msg=detached") {
		t.Errorf("no detach logged:\n%s", stderr.String())
	}
}
