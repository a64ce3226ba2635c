package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

// TestSecondSensorInNamespace starts a second `vigil run` on the same
// interface of the same namespace. The second sensor's netlink traffic
// reached the first one's link subscription as a message from another
// port ("Wrong sender portid"), which the first took for a fatal error
// and exited. The first must keep running and counting, and say in its
// log what it ignored.
func TestSecondSensorInNamespace(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := testutil.Vigil(t)
	lab := labUp(t)
	const port = 7001
	lab.NewSink(t, 4, port)
	first := startVigil(t, lab, bin, "127.0.0.1:19111",
		"--interface", netlab.SensorIf, "--sample-rate", "1", "--metrics-addr", "127.0.0.1:19111",
		"--stats-every", "0", "--flows-out", "")
	second := startVigil(t, lab, bin, "127.0.0.1:19112",
		"--interface", netlab.SensorIf, "--sample-rate", "1", "--metrics-addr", "127.0.0.1:19112",
		"--stats-every", "0", "--flows-out", "")
	// Link changes while both follow them: each sends RTM_GETLINK dumps
	// and the kernel multicasts the changes to both.
	for range 3 {
		for _, mtu := range []string{"65000", "65536"} {
			if out, err := exec.Command("ip", "-n", lab.Sensor.Name, "link", "set", "lo", "mtu", mtu).CombinedOutput(); err != nil {
				t.Fatalf("ip link set: %v: %s", err, out)
			}
		}
	}
	time.Sleep(time.Second)
	before := first.metrics().get(t, "vigil_packets_total", `direction="ingress"`, `interface="vsensor"`)
	const n = 500
	s := lab.NewSender(t, 4, port, 100)
	if sent, err := s.Send(n); err != nil || sent != n {
		t.Fatalf("sent %d of %d: %v", sent, n, err)
	}
	time.Sleep(300 * time.Millisecond)
	if !first.running() {
		t.Fatalf("the first sensor exited when a second one started: %v\n%s", first.err, grepVigil(first.stderr.String()))
	}
	after := first.metrics().get(t, "vigil_packets_total", `direction="ingress"`, `interface="vsensor"`)
	if after-before < n {
		t.Errorf("the first sensor counted %v packets of the %d sent after the second started", after-before, n)
	}
	if !second.running() {
		t.Errorf("the second sensor exited: %v\n%s", second.err, grepVigil(second.stderr.String()))
	}
	// What the first sensor logged it ignored, it counted.
	m := first.metrics()
	ignored, ok := m.sum("vigil_link_watch_errors_total", `reason="foreign_sender"`)
	if !ok {
		t.Error("no vigil_link_watch_errors_total{reason=\"foreign_sender\"}")
	}
	if logged := strings.Contains(first.stderr.String(), "reason=foreign_sender"); logged && ignored < 1 {
		t.Errorf("a foreign netlink sender was logged but vigil_link_watch_errors_total{reason=\"foreign_sender\"} is %v", ignored)
	} else {
		t.Logf("foreign netlink messages: logged %v, counted %v", logged, ignored)
	}
	first.stop()
	second.stop()
	if strings.Contains(first.stderr.String(), "vigil: following link updates") {
		t.Errorf("the first sensor gave up following link updates:\n%s", grepVigil(first.stderr.String()))
	}
}
