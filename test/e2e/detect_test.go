package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

// floodFor bounds the hping3 flood of the live detection test.
const floodFor = 8 * time.Second

// alertLine is the part of an alert JSON line the live test reads.
type alertLine struct {
	Kind       string            `json:"kind"`
	ID         string            `json:"id"`
	Rule       string            `json:"rule"`
	State      string            `json:"state"`
	Key        map[string]string `json:"key"`
	Time       time.Time         `json:"time"`
	Start      time.Time         `json:"start"`
	PeakPPS    float64           `json:"peak_pps"`
	CurrentPPS float64           `json:"current_pps"`
	CurrentBPS float64           `json:"current_bps"`
	// The 95% intervals of the current rates; pointers, so that a
	// missing field is told from a zero.
	CurrentPPSLo *float64 `json:"current_pps_lo"`
	CurrentPPSHi *float64 `json:"current_pps_hi"`
	CurrentBPSLo *float64 `json:"current_bps_lo"`
	CurrentBPSHi *float64 `json:"current_bps_hi"`
	SamplingRate int      `json:"sampling_rate"`
	TopSources   []struct {
		Value string `json:"value"`
	} `json:"top_sources"`
}

// readAlerts returns the alert lines of a JSON lines file. Every line
// must carry intervals of its current rates that hold them.
func readAlerts(t *testing.T, path string) []alertLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []alertLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), []byte(`"kind":"alert"`)) {
			continue
		}
		var a alertLine
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("%s: %v: %s", path, err, sc.Bytes())
		}
		if a.CurrentPPSLo == nil || a.CurrentPPSHi == nil || a.CurrentBPSLo == nil || a.CurrentBPSHi == nil {
			t.Fatalf("%s: an alert without the intervals of its current rates: %s", path, sc.Bytes())
		}
		if *a.CurrentPPSLo > a.CurrentPPS || a.CurrentPPS > *a.CurrentPPSHi || *a.CurrentBPSLo > a.CurrentBPS || a.CurrentBPS > *a.CurrentBPSHi {
			t.Errorf("%s: current rates outside their intervals: %s", path, sc.Bytes())
		}
		out = append(out, a)
	}
	return out
}

// TestDetectLiveSYNFlood runs vigil at 1-in-100 on the lab's veth and
// floods the sensor's address with SYNs from `hping3 --flood` in the
// peer namespace. The syn_flood alert (key dst_addr = the sensor's
// address, evidence naming the peer) must be written while the flood
// runs; the time from the flood's start to the alert line is logged as
// the live detection latency (docs/BENCHMARKS.md). After SIGTERM the
// alert has ended and the per-rule metrics count one start.
func TestDetectLiveSYNFlood(t *testing.T) {
	testutil.RequirePrivileged(t)
	hping := testutil.RequireTool(t, "hping3")
	bin := testutil.Vigil(t)
	lab := labUp(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "flows.jsonl")
	const addr = "127.0.0.1:19123"
	cfg := filepath.Join(dir, "vigil.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`capture:
  interfaces: [%s]
  sampling: fixed
  sample_rate: 100
flows:
  output: %q
http:
  listen: %s
`, netlab.SensorIf, out, addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	v := startVigil(t, lab, bin, addr, "--config", cfg)

	ctx, cancel := context.WithTimeout(context.Background(), floodFor)
	defer cancel()
	flood := exec.CommandContext(ctx, "ip", "netns", "exec", lab.Peer.Name,
		hping, "--flood", "--syn", "-p", "80", "-q", netlab.SensorIPv4.String())
	var floodOut bytes.Buffer
	flood.Stdout, flood.Stderr = &floodOut, &floodOut
	began := time.Now()
	if err := flood.Start(); err != nil {
		t.Fatalf("starting hping3: %v", err)
	}
	floodDone := make(chan struct{})
	go func() { flood.Wait(); close(floodDone) }()

	var start *alertLine
	var seenAt time.Time
	for start == nil {
		select {
		case <-floodDone:
			t.Fatalf("the flood ended (%v) and no syn_flood alert was written; hping3: %s\nvigil:\n%s",
				time.Since(began), floodOut.String(), v.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		for _, a := range readAlerts(t, out) {
			if a.Rule == "syn_flood" && a.State == "start" {
				start, seenAt = &a, time.Now()
				break
			}
		}
	}
	floodRunning := true
	select {
	case <-floodDone:
		floodRunning = false
	default:
	}
	if !floodRunning {
		t.Errorf("the alert was seen only after the flood ended")
	}
	t.Logf("live detection latency: %v from the flood's start to the alert line (alert time %v after it); peak %.0f pps at 1-in-%d",
		seenAt.Sub(began), start.Time.Sub(began), start.PeakPPS, start.SamplingRate)
	if got := start.Key["dst_addr"]; got != netlab.SensorIPv4.String() || len(start.Key) != 1 {
		t.Errorf("alert key %v, want dst_addr=%s", start.Key, netlab.SensorIPv4)
	}
	if start.SamplingRate != 100 {
		t.Errorf("sampling rate %d, want 100", start.SamplingRate)
	}
	if len(start.TopSources) == 0 || start.TopSources[0].Value != netlab.PeerIPv4.String() {
		t.Errorf("top sources %v, want %s first", start.TopSources, netlab.PeerIPv4)
	}
	if start.Time.Before(began.Add(-clockSlack)) || start.Time.After(seenAt.Add(clockSlack)) {
		t.Errorf("alert time %v outside [%v, %v]", start.Time, began, seenAt)
	}
	<-floodDone
	m := v.metrics()
	if n, ok := m.sum("vigil_detect_alerts_total", `rule="syn_flood"`, `state="start"`); !ok || n != 1 {
		t.Errorf("vigil_detect_alerts_total{rule=syn_flood,state=start} = %v (%v), want 1", n, ok)
	}
	if n, ok := m.sum("vigil_detect_matches_total", `rule="syn_flood"`); !ok || n < 50 {
		t.Errorf("vigil_detect_matches_total{rule=syn_flood} = %v (%v), want the flood's samples", n, ok)
	}
	if n, _ := m.sum("vigil_detect_dropped_samples_total"); n != 0 {
		t.Logf("the engine missed %v samples while behind", n)
	}
	v.stop()

	var starts, ends int
	for _, a := range readAlerts(t, out) {
		if a.Rule != "syn_flood" {
			continue
		}
		switch {
		case a.State == "start":
			starts++
		case a.State == "end" && a.ID == start.ID:
			ends++
		}
	}
	if starts != 1 || ends != 1 {
		t.Errorf("syn_flood: %d starts and %d ends of %s, want 1 and 1", starts, ends, start.ID)
	}
}
