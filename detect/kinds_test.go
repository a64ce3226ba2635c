package detect

import (
	"net/netip"
	"testing"

	"github.com/vigil-sensor/vigil/flow"
)

// engProbe is a sampled SYN from src to dst:port standing for rate packets.
func engProbe(at int64, src, dst string, port uint16, rate uint64) Event {
	ev := engSyn(at, src, dst, rate)
	ev.DstPort = port
	return ev
}

func TestDistinctAndRatio(t *testing.T) {
	e, rec := engNew(t, `
rules:
  - name: scan
    filter: tcp && syn && !ack
    group_by: [src_addr, dst_addr]
    window: 60s
    slots: 12
    measures:
      ports: {distinct_once: dst_port}
      probes: {sum: packets}
      spread: {ratio: [ports, probes]}
    thresholds:
      ports: 100
    when: spread >= 0.5
    min_samples: 5
`, Options{})
	const dst = "10.1.2.3"
	started := func(src string) bool {
		for _, a := range rec.of("scan", flow.AlertStart) {
			if a.Key[0].Value == src {
				return true
			}
		}
		return false
	}
	// A scan: each port once.
	var evs []Event
	for p := range uint16(150) {
		evs = append(evs, engProbe(engMS(int64(p)*100), "192.0.2.1", dst, 1000+p, 1))
	}
	engRun(e, evs[:90])
	if started("192.0.2.1") {
		t.Errorf("90 distinct ports: alert, want none below 100")
	}
	engRun(e, evs[90:])
	if !started("192.0.2.1") {
		t.Errorf("150 distinct ports, each once: no alert")
	}
	// A client trying each of 120 ports five times: ports over probes is 0.2.
	evs = evs[:0]
	for i := range 600 {
		evs = append(evs, engProbe(engMS(int64(i)*50), "192.0.2.2", dst, 1000+uint16(i/5), 1))
	}
	engRun(e, evs)
	if started("192.0.2.2") {
		t.Errorf("120 ports repeated five times: alert, want none (when: spread >= 0.5)")
	}
	// One port a thousand times.
	evs = evs[:0]
	for i := range 1000 {
		evs = append(evs, engProbe(engMS(int64(i)*10), "192.0.2.3", dst, 443, 1))
	}
	engRun(e, evs)
	if started("192.0.2.3") {
		t.Errorf("one port: alert")
	}
	// At 1-in-100 each sample stands for 100 distinct ports, but the rule
	// wants five samples.
	evs = evs[:0]
	for p := range uint16(5) {
		evs = append(evs, engProbe(engMS(int64(p)*100), "192.0.2.4", dst, 2000+p, 100))
	}
	engRun(e, evs[:4])
	if started("192.0.2.4") {
		t.Errorf("4 samples (400 estimated ports): alert before min_samples 5")
	}
	engRun(e, evs[4:])
	if !started("192.0.2.4") {
		t.Errorf("5 samples of distinct ports at 1-in-100: no alert")
	}
	if n := len(rec.of("scan", flow.AlertStart)); n != 2 {
		t.Errorf("%d starts, want 2", n)
	}
}

func TestBaseline(t *testing.T) {
	e, rec := engNew(t, `
rules:
  - name: spike
    group_by: [dst_addr]
    window: 1s
    slots: 5
    measures:
      pps: {rate: packets}
    thresholds:
      pps: 100
    baseline:
      measure: pps
      warmup: 5
      alpha: 0.1
      deviations: 5
`, Options{})
	// window sends n events of rate packets in window w (1s) to dst.
	window := func(w int64, n int, dst string, rate uint64) {
		evs := make([]Event, n)
		for j := range evs {
			evs[j] = engSyn(engMS(w*1000+int64(j)*1000/int64(n)), "192.0.2.1", dst, rate)
		}
		e.Events(SourceSamples, evs)
	}
	starts := func(dst string) []flow.Alert {
		var out []flow.Alert
		for _, a := range rec.of("spike", flow.AlertStart) {
			if a.Key[0].Value == dst {
				out = append(out, a)
			}
		}
		return out
	}
	// About 1,000 pps (at 1-in-100) for nine windows, then 20,000.
	const a = "10.1.1.1"
	for w, n := range []int{9, 10, 11, 10, 9, 10, 11, 10, 10} {
		window(int64(w), n, a, 100)
	}
	window(9, 200, a, 100) // closes window 8: normal
	if s := starts(a); len(s) != 0 {
		t.Fatalf("normal windows: %d alerts", len(s))
	}
	window(10, 10, a, 100) // closes window 9: the spike
	s := starts(a)
	if len(s) != 1 {
		t.Fatalf("a 20x spike after warm-up: %d alerts, want 1", len(s))
	}
	if s[0].Time != engMS(10000) || s[0].Packets < 20000 {
		t.Errorf("spike alert at %d with %d packets, want at the window's end %d with >= 20000", s[0].Time, s[0].Packets, engMS(10000))
	}

	// During warm-up a spike is learnt, not alerted.
	const b = "10.1.1.2"
	for w, n := range []int{10, 10, 200, 10} {
		window(int64(w), n, b, 100)
	}
	if s := starts(b); len(s) != 0 {
		t.Errorf("a spike during warm-up: %d alerts", len(s))
	}

	// Far above its baseline but under the rule's threshold: no alert.
	const c = "10.1.1.3"
	for w := range int64(8) {
		window(w, 10, c, 1) // 10 pps
	}
	window(8, 90, c, 1)
	window(9, 10, c, 1)
	if s := starts(c); len(s) != 0 {
		t.Errorf("90 pps (baseline 10, threshold 100): %d alerts", len(s))
	}
	window(10, 150, c, 1)
	window(11, 10, c, 1)
	if s := starts(c); len(s) != 1 {
		t.Errorf("150 pps (baseline about 10, threshold 100): %d alerts, want 1", len(s))
	}
}

const engSeqRule = `
rules:
  - name: seq
    group_by: [src_addr, dst_addr]
    sequence:
      within: 10s
      steps:
        - filter: dst_port == 22
        - filter: dst_port == 4444
`

// BUG(lead): a sequence alert's start report has Start = the time of the
// last step, and its later reports the time of the first: trigger
// (lifecycle.go) reports the start with a.start = t, and sequenceEvent
// (kinds.go, after rs.trigger) lowers a.start to sq.t0 only afterwards (the
// ID is also made from the last step's time). Fix: in trigger, for
// kindSequence, set a.start = ks.seq.t0 before alertID and the report, as
// it does for kindAbsence.
func TestSequence(t *testing.T) {
	e, rec := engNew(t, engSeqRule, Options{})
	const dst = "10.1.2.3"
	engRun(e, []Event{
		engProbe(engMS(0), "192.0.2.1", dst, 22, 1),      // A then B in 5s: fires
		engProbe(engMS(0), "192.0.2.2", dst, 22, 1),      // A then B after 11s
		engProbe(engMS(1000), "192.0.2.3", dst, 4444, 1), // B without A
		engProbe(engMS(1000), "192.0.2.4", dst, 22, 1),   // A, then B from another source
		engProbe(engMS(2000), "192.0.2.6", dst, 22, 1),   // A then B at exactly within
		engProbe(engMS(5000), "192.0.2.1", dst, 4444, 1),
		engProbe(engMS(6000), "192.0.2.5", dst, 4444, 1),
		engProbe(engMS(11000), "192.0.2.2", dst, 4444, 1),
		engProbe(engMS(12000), "192.0.2.6", dst, 4444, 1),
	})
	e.Close(engMS(13000))
	var got []string
	for _, a := range rec.of("seq", flow.AlertStart) {
		got = append(got, a.Key[0].Value)
		if a.Key[1].Value != dst {
			t.Errorf("key %v", a.Key)
		}
	}
	if len(got) != 2 || got[0] != "192.0.2.1" || got[1] != "192.0.2.6" {
		t.Fatalf("sequence alerts for sources %v, want [192.0.2.1 192.0.2.6]", got)
	}
	all := rec.of("seq", 0)
	for _, a := range all {
		src := a.Key[0].Value
		want := map[string]int64{"192.0.2.1": engMS(0), "192.0.2.6": engMS(2000)}[src]
		if a.Start != want {
			t.Errorf("%v of %s: Start %d, want the first step %d", a.State, src, a.Start, want)
		}
	}
}

func TestAbsence(t *testing.T) {
	e, rec := engNew(t, `
rules:
  - name: gone
    group_by: [src_addr]
    absence:
      after: 10s
      learn: 30s
`, Options{})
	const x, y = "192.0.2.1", "192.0.2.2"
	for s := range int64(41) {
		evs := []Event{engSyn(engMS(s*1000), x, "10.1.2.3", 1)}
		if s <= 5 {
			evs = append(evs, engSyn(engMS(s*1000), y, "10.1.2.3", 1)) // never established
		}
		e.Events(SourceSamples, evs)
	}
	for s := int64(41); s <= 90; s++ {
		e.Advance(engMS(s * 1000))
		if s == 49 && len(rec.alerts) != 0 {
			t.Fatalf("alert after 9s of silence: %+v", rec.alerts)
		}
	}
	starts := rec.of("gone", flow.AlertStart)
	if len(starts) != 1 || len(rec.alerts) != 1 {
		t.Fatalf("%d starts, %d alerts in all, want one start (alerts %+v)", len(starts), len(rec.alerts), rec.alerts)
	}
	a := starts[0]
	if a.Key[0].Value != x || a.Time != engMS(50000) || a.Start != engMS(40000) {
		t.Errorf("absence start %v at %d, Start %d; want %s at %d, Start %d", a.Key, a.Time, a.Start, x, engMS(50000), engMS(40000))
	}
	if k := engStats(t, e, "gone").Keys; k != 1 {
		t.Errorf("Keys = %d, want 1: the key never established is forgotten", k)
	}
	// Seen again: the alert ends. Silent again before learning: nothing.
	e.Events(SourceSamples, []Event{engSyn(engMS(95000), x, "10.1.2.3", 1)})
	ends := rec.of("gone", flow.AlertEnd)
	if len(ends) != 1 || ends[0].ID != a.ID || ends[0].Time != engMS(95000) {
		t.Fatalf("ends %+v, want one for %s at %d", ends, a.ID, engMS(95000))
	}
	for s := int64(96); s <= 130; s++ {
		e.Advance(engMS(s * 1000))
	}
	if n := len(rec.alerts); n != 2 {
		t.Errorf("%d alerts after the key came back, want only the start and end", n)
	}
}

func TestChaining(t *testing.T) {
	e, rec := engNew(t, `
rules:
  - name: flood
    filter: tcp && syn && !ack
    group_by: [dst_addr]
    window: 1s
    quiet: 3s
    update_every: 1s
    measures: {pps: {rate: packets}}
    thresholds: {pps: 5000}
  - name: flood_seen
    severity: critical
    source: alerts
    filter: rule == "flood" && state == "start"
    group_by: [dst_addr]
    window: 10s
    quiet: 10s
    measures: {n: {sum: samples}}
    thresholds: {n: 1}
`, Options{})
	engFlood(e, 0, 2000, "10.1.2.3")
	floods, seen := rec.of("flood", flow.AlertStart), rec.of("flood_seen", flow.AlertStart)
	if len(floods) != 1 || len(seen) != 1 {
		t.Fatalf("%d flood starts, %d chained starts, want 1 and 1", len(floods), len(seen))
	}
	if seen[0].Key[0] != (flow.KeyValue{Name: "dst_addr", Value: "10.1.2.3"}) || seen[0].Severity != flow.SeverityCritical {
		t.Errorf("chained alert key %v severity %v", seen[0].Key, seen[0].Severity)
	}
	if seen[0].Time != floods[0].Time {
		t.Errorf("chained start at %d, the flood's at %d", seen[0].Time, floods[0].Time)
	}
	if s := engStats(t, e, "flood_seen"); s.Matches != 1 || s.Events < 2 {
		t.Errorf("chained rule saw %d alerts and kept %d; want the updates seen and only the start kept", s.Events, s.Matches)
	}
	if !netip.MustParseAddr(seen[0].Key[0].Value).Is4() {
		t.Errorf("key %v", seen[0].Key)
	}
}
