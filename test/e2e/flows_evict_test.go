package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

// TestFlowsEvictedAtMaxFlows runs vigil with flows.max_flows 3 at
// 1-in-1 and sends 10 UDP flows one after the other (20 datagrams each,
// 150 ms apart). The table must never hold more than 3 flows
// (vigil_flows_active); every flow past the bound must push the least
// recently seen flow out early: with R records in all (our 10 flows and
// any packet the kernel sent on its own), the R-3 flows seen least
// recently end "evicted" and the 3 most recent "shutdown", and
// vigil_flow_evictions_total and vigil_flows_expired_total
// {reason="evicted"} both count R-3. Every flow's figures stay exact.
func TestFlowsEvictedAtMaxFlows(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := testutil.Vigil(t)
	lab := labUp(t)
	dir := t.TempDir()
	const metricsAddr = "127.0.0.1:19112"
	const maxFlows, nFlows, n = 3, 10, 20
	cfgPath := filepath.Join(dir, "vigil.yaml")
	flowsPath := filepath.Join(dir, "flows.jsonl")
	writeFile(t, cfgPath, fmt.Sprintf(`capture:
  interfaces: [%s]
  sampling: fixed
  sample_rate: 1
flows:
  idle_timeout: 10m
  active_timeout: 1h
  max_flows: %d
  output: %q
http:
  listen: %s
`, netlab.SensorIf, maxFlows, flowsPath, metricsAddr))
	v := startVigil(t, lab, bin, metricsAddr, "--config", cfgPath)

	var keys []flowKey
	frameLen := map[flowKey]int{}
	maxActive := 0.0
	for i := range nFlows {
		port := uint16(7501 + i)
		sink := lab.NewSink(t, 4, port)
		s := lab.NewSender(t, 4, port, 30)
		if sent, err := s.Send(n); err != nil || sent != n {
			t.Fatalf("sent %d of %d: %v", sent, n, err)
		}
		waitSinks(t, map[*netlab.Sink]uint64{sink: n})
		keys = append(keys, udpKey(s))
		frameLen[udpKey(s)] = s.FrameLen()
		time.Sleep(150 * time.Millisecond) // past the reader's 100 ms flush: flows enter the table in order
		maxActive = max(maxActive, v.metrics().get(t, "vigil_flows_active"))
	}
	time.Sleep(quiet)
	m := v.metrics()
	scraped := time.Now()
	maxActive = max(maxActive, m.get(t, "vigil_flows_active"))
	if maxActive > maxFlows {
		t.Errorf("vigil_flows_active reached %v with flows.max_flows %d", maxActive, maxFlows)
	}
	evictions := m.counter("vigil_flow_evictions_total")
	expiredEvicted := m.counter("vigil_flows_expired_total", `reason="evicted"`)
	v.stop()

	recs := readFlowsFile(t, flowsPath)
	got := byKey(recs)
	for i, k := range keys {
		rs := got[k]
		if len(rs) != 1 {
			t.Errorf("flow %d (%s): %d records, want 1", i+1, k, len(rs))
			continue
		}
		r := rs[0]
		checkEstimate(t, fmt.Sprintf("flow %d", i+1), r.Packets, r.SampledPackets, r.Bytes, r.SampledBytes, r.SamplingRate, n, frameLen[k])
	}
	// Least recently seen first: order every record by its last packet.
	slices.SortFunc(recs, func(a, b flowRecord) int { return a.End.Compare(b.End) })
	wantEvicted := len(recs) - maxFlows
	var order []string
	for i, r := range recs {
		port := fmt.Sprint(r.DstPort)
		if j := slices.Index(keys, r.key()); j >= 0 {
			port = fmt.Sprintf("flow %d", j+1)
		}
		order = append(order, port+":"+r.EndReason)
		want := "shutdown"
		if i < wantEvicted {
			want = "evicted"
		}
		if r.EndReason != want {
			t.Errorf("record %d of %d by last packet (%s, last packet %s): end_reason %q, want %q",
				i+1, len(recs), r.key(), r.End.Format(time.RFC3339Nano), r.EndReason, want)
		}
	}
	t.Logf("records by last packet: %v; most flows active at once: %v", order, maxActive)
	// A flow the kernel started after the scrape evicted one more after it.
	late := 0
	for _, r := range recs {
		if r.Start.After(scraped) {
			late++
		}
	}
	if want := float64(wantEvicted - late); evictions != want || expiredEvicted != want {
		t.Errorf("vigil_flow_evictions_total %v, vigil_flows_expired_total{reason=\"evicted\"} %v; %d flows (%d after the scrape) with max_flows %d: want %v",
			evictions, expiredEvicted, len(recs), late, maxFlows, want)
	}
}

// checkJSONLog checks that every line of a --log-json stderr is a JSON
// object with time, level and msg, and that there is at least one.
func checkJSONLog(t *testing.T, stderr string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) == 0 || lines[0] == "" {
		t.Errorf("nothing logged with --log-json")
		return
	}
	for i, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Errorf("stderr line %d is not JSON with --log-json: %v: %s", i+1, err, l)
			continue
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k].(string); !ok {
				t.Errorf("stderr line %d: no string %q: %s", i+1, k, l)
			}
		}
	}
}
