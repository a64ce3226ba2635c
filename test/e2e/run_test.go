package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

type sampleLine struct {
	Kind    string `json:"kind"`
	Src     string `json:"src_addr"`
	Dst     string `json:"dst_addr"`
	DstPort uint16 `json:"dst_port"`
	Proto   uint8  `json:"proto"`
	Rate    uint32 `json:"sampling_rate"`
	Outcome string `json:"outcome"`
}

// TestRunCapturesLabTraffic runs `vigil run` inside the sensor namespace
// of a lab, sends known UDP traffic from the peer, scrapes the metrics,
// then stops it with SIGTERM: it must detach and exit 0, and the samples
// and counters must account for every packet.
func TestRunCapturesLabTraffic(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := testutil.Vigil(t)
	lab := labUp(t)
	const port, n = 7000, 3000
	lab.NewSink(t, 4, port)
	samples := filepath.Join(t.TempDir(), "samples.jsonl")
	v := startVigil(t, lab, bin, "127.0.0.1:19099",
		"--interface", netlab.SensorIf, "--sample-rate", "1", "--samples-out", samples,
		"--metrics-addr", "127.0.0.1:19099", "--stats-every", "0", "--flows-out", "")

	s := lab.NewSender(t, 4, port, 100)
	if sent, err := s.Send(n); err != nil || sent != n {
		t.Fatalf("sent %d of %d: %v", sent, n, err)
	}
	time.Sleep(300 * time.Millisecond) // the reader's flush interval is 100 ms
	metrics := v.metrics()
	pkts := metrics.get(t, "vigil_packets_total", `direction="ingress"`, `interface="vsensor"`)
	if pkts < n {
		t.Errorf("vigil_packets_total %v, want at least the %d packets sent", pkts, n)
	}
	if mode := metrics.get(t, "vigil_attach_mode", `interface="vsensor"`, `mode="xdp-native"`); mode != 1 {
		t.Errorf("attach mode metric %v, want native XDP on a veth", mode)
	}
	samplesTotal := metrics.get(t, "vigil_samples_total")
	if samplesTotal != pkts {
		t.Errorf("at N=1 samples %v != packets %v", samplesTotal, pkts)
	}

	v.stop() // SIGTERM, exit status 0
	if !strings.Contains(v.stderr.String(), "detached") {
		t.Errorf("no detach logged on shutdown:\n%s", v.stderr.String())
	}

	f, err := os.Open(samples)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	matched, lines := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines++
		var l sampleLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", lines, err, sc.Text())
		}
		if l.Kind == "sample" && l.Src == netlab.PeerIPv4.String() && l.Dst == netlab.SensorIPv4.String() &&
			l.DstPort == port && l.Proto == 17 && l.Rate == 1 && l.Outcome == "ok" {
			matched++
		}
	}
	if matched != n {
		t.Errorf("%d samples of the lab's flow in %d lines, want %d (one per packet at N=1)", matched, lines, n)
	}
	if float64(lines) != samplesTotal {
		t.Errorf("%d sample lines written, %v samples counted: some were lost", lines, samplesTotal)
	}
}
