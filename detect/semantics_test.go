package detect

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/flow"
)

// engUDP is one sampled UDP datagram of size bytes from src:sport to
// dst:dport, standing for rate packets.
func engUDP(at int64, src string, sport uint16, dst string, dport uint16, size, rate uint64) Event {
	ev := Event{
		Source: SourceSamples, Time: at, SrcAddr: netip.MustParseAddr(src), DstAddr: netip.MustParseAddr(dst),
		SrcPort: sport, DstPort: dport, Proto: 17, IPVersion: 4,
		Packets: rate, Bytes: size * rate, Samples: 1, Rate: uint32(rate),
	}
	if ev.DstAddr.Is6() {
		ev.IPVersion = 6
	}
	return ev
}

const engAnyRule = `
rules:
  - name: amp
    filter: udp
    group_by: [dst_addr]
    window: 1s
    measures:
      pps: {rate: packets}
      bps: {rate: bits}
    thresholds:
      pps: 1000
      bps: 100000000
`

// TestThresholdsAny: thresholds fire when any one is reached; a burst of
// small datagrams over pps alone alerts, as does a few large ones over
// bps alone.
func TestThresholdsAny(t *testing.T) {
	e, rec := engNew(t, engAnyRule, Options{})
	// 1,000 datagrams of 300 bytes in 1 s: 2.4 Mb/s, far under bps.
	var evs []Event
	for i := range int64(1000) {
		evs = append(evs, engUDP(engMS(i), "192.0.2.1", 53, "10.0.0.1", 40000, 300, 1))
	}
	e.Events(SourceSamples, evs)
	if n := len(rec.of("amp", flow.AlertStart)); n != 1 {
		t.Fatalf("pps alone: %d starts, want 1", n)
	}
	if s := rec.of("amp", flow.AlertStart)[0].Summary; !strings.Contains(s, "pps 1000 >= 1000") || strings.Contains(s, "bps") {
		t.Errorf("summary %q: want the pps threshold only", s)
	}
	// 900 datagrams of 15,000 bytes (GSO) to another host: 108 Mb/s.
	evs = evs[:0]
	for i := range int64(900) {
		evs = append(evs, engUDP(engMS(2000+i), "192.0.2.1", 53, "10.0.0.2", 40000, 15000, 1))
	}
	e.Events(SourceSamples, evs)
	got := rec.of("amp", flow.AlertStart)
	if len(got) != 2 || got[1].Key[0].Value != "10.0.0.2" {
		t.Fatalf("bps alone: starts %v, want a second on 10.0.0.2", got)
	}
	// 900 small ones: neither.
	evs = evs[:0]
	for i := range int64(900) {
		evs = append(evs, engUDP(engMS(4000+i), "192.0.2.1", 53, "10.0.0.3", 40000, 300, 1))
	}
	e.Events(SourceSamples, evs)
	if n := len(rec.of("amp", flow.AlertStart)); n != 2 {
		t.Errorf("under both thresholds: %d starts, want still 2", n)
	}
}

// TestThresholdsAll: "all" thresholds must be reached together with
// any of the others.
func TestThresholdsAll(t *testing.T) {
	src := `
rules:
  - name: carpet
    filter: udp
    group_by: [dst_addr/24]
    window: 1s
    measures:
      pps: {rate: packets}
      targets: {distinct: dst_addr}
    thresholds:
      pps: 1000
    all:
      targets: 50
`
	e, rec := engNew(t, src, Options{})
	var evs []Event
	for i := range int64(2000) {
		evs = append(evs, engUDP(engMS(i/2), "192.0.2.1", 1234, "10.0.0.1", 40000, 100, 1))
	}
	e.Events(SourceSamples, evs)
	if n := len(rec.of("carpet", 0)); n != 0 {
		t.Fatalf("one target: %d alerts, want none (targets is required)", n)
	}
	evs = evs[:0]
	for i := range int64(2000) {
		dst := netip.AddrFrom4([4]byte{10, 0, 1, byte(i % 200)}).String()
		evs = append(evs, engUDP(engMS(3000+i/2), "192.0.2.1", 1234, dst, 40000, 100, 1))
	}
	e.Events(SourceSamples, evs)
	got := rec.of("carpet", flow.AlertStart)
	if len(got) != 1 {
		t.Fatalf("200 targets: %d starts, want 1", len(got))
	}
	if s := got[0].Summary; !strings.Contains(s, "pps") || !strings.Contains(s, "targets") {
		t.Errorf("summary %q: want pps and targets", s)
	}
}

const engBurstRule = `
rules:
  - name: flood
    filter: tcp && syn && !ack
    group_by: [dst_addr]
    window: 1s
    slots: 20
    measures:
      pps: {rate: packets}
    thresholds:
      pps: 10000
    min_samples: 20
    burst: {window: 100ms}
`

// engBurst is a burst of pps packets a second lasting ms milliseconds
// from at, sampled at 1 in rate by rng.
func engBurst(rng *rand.Rand, at, ms, pps int64, rate uint64, dst string) []Event {
	var evs []Event
	n := pps * ms / 1000
	for i := range n {
		if rate > 1 && rng.Uint64N(rate) != 0 {
			continue
		}
		evs = append(evs, engSyn(at+i*ms*int64(time.Millisecond)/n, "192.0.2.9", dst, rate))
	}
	return evs
}

// TestBurst: 45 kpps of SYNs for 150 ms is 6,750 packets, under a
// 10 kpps threshold over the 1 s window; the 100 ms burst catches it,
// at the rate the issue measured, within the burst.
func TestBurst(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, rate := range []uint64{1, 10, 100, 1000} {
		e, rec := engNew(t, engBurstRule, Options{})
		e.Events(SourceSamples, engBurst(rng, engMS(1000), 150, 45_000, rate, "10.0.0.1"))
		e.Close(engMS(5000))
		got := rec.of("flood", flow.AlertStart)
		if rate == 1000 {
			// About 7 samples in all: too few to tell from noise.
			if len(got) != 0 {
				t.Errorf("1:%d: %d starts from ~7 samples", rate, len(got))
			}
			continue
		}
		if len(got) != 1 {
			t.Fatalf("1:%d: %d starts, want 1", rate, len(got))
		}
		a := got[0]
		if d := time.Duration(a.Time - engMS(1000)); d > 150*time.Millisecond {
			t.Errorf("1:%d: alert %v after the burst began, want within its 150 ms", rate, d)
		}
		if !strings.Contains(a.Summary, "in a 100ms burst") {
			t.Errorf("1:%d: summary %q does not say burst", rate, a.Summary)
		}
		if end := rec.of("flood", flow.AlertEnd); len(end) != 1 || end[0].PeakPPS < 30_000 || end[0].PeakPPS > 70_000 {
			t.Errorf("1:%d: end %v: want one, its peak_pps the burst's rate (~45k)", rate, end)
		}
	}
	// Without the burst key the same traffic is averaged away.
	e, rec := engNew(t, strings.Replace(engBurstRule, "    burst: {window: 100ms}\n", "", 1), Options{})
	e.Events(SourceSamples, engBurst(rng, engMS(1000), 150, 45_000, 1, "10.0.0.1"))
	if n := len(rec.of("flood", 0)); n != 0 {
		t.Errorf("without burst: %d alerts, want 0", n)
	}
}

// TestBurstNoise: at 1 in 1000, steady traffic at 40% of the threshold
// puts 0.4 samples in each 100 ms on average and, now and then, several
// of them close together; with a burst min_samples of only 3, judged at
// the low end of the interval, no burst is seen in an hour of event
// time, and a real one is.
func TestBurstNoise(t *testing.T) {
	const rate = 1000
	src := strings.Replace(engBurstRule, "burst: {window: 100ms}", "burst: {window: 100ms, min_samples: 3}", 1)
	e, rec := engNew(t, src, Options{})
	rng := rand.New(rand.NewPCG(3, 4))
	// 4,000 pps at 1:1000: a Poisson process of 4 samples a second.
	tm := engMS(0)
	end := engMS(3_600_000)
	batch := make([]Event, 0, 256)
	for tm < end {
		tm += int64(rng.ExpFloat64() / 4 * 1e9)
		batch = append(batch, engSyn(tm, "192.0.2.9", "10.0.0.1", rate))
		if len(batch) == cap(batch) {
			e.Events(SourceSamples, batch)
			batch = batch[:0]
		}
	}
	e.Events(SourceSamples, batch)
	if n := len(rec.of("flood", flow.AlertStart)); n != 0 {
		t.Errorf("noise at 40%% of the threshold: %d starts in an hour", n)
	}
	if !strings.Contains(src, "min_samples: 20") {
		t.Fatal("the window must keep its own min_samples")
	}
	// A burst of 1M pps for 100 ms: 100 samples.
	e.Events(SourceSamples, engBurst(rng, end+int64(time.Second), 100, 1_000_000, rate, "10.0.0.1"))
	if n := len(rec.of("flood", flow.AlertStart)); n != 1 {
		t.Errorf("a real burst: %d starts, want 1", n)
	}
}

const engReverseRule = `
rules:
  - name: refl
    filter: udp && src_port != 0
    group_by: [dst_addr, src_port]
    window: 2s
    measures:
      pps: {rate: packets}
      reflectors: {distinct: src_addr}
      requests: {rate: packets, reverse: true, filter: "udp"}
    thresholds:
      pps: 500
    when: reflectors >= 10 and requests < 0.1 * pps
    service_port: src_port
`

// TestReverse: answers from many sources to a host that asked for them
// are not reflection; the same answers to one that did not are, and the
// alert names the service.
func TestReverse(t *testing.T) {
	e, rec := engNew(t, engReverseRule, Options{})
	var evs []Event
	for i := range int64(2000) {
		res := netip.AddrFrom4([4]byte{198, 51, 100, byte(i % 100)}).String()
		port := uint16(30000 + i)
		// The resolver 10.0.0.53 asks, then gets its answer 1 ms later.
		evs = append(evs, engUDP(engMS(i), "10.0.0.53", port, res, 53, 60, 1))
		evs = append(evs, engUDP(engMS(i)+int64(time.Millisecond), res, 53, "10.0.0.53", port, 600, 1))
		// 10.0.0.9 gets the same answers and asked nothing.
		evs = append(evs, engUDP(engMS(i), res, 53, "10.0.0.9", port, 600, 1))
	}
	e.Events(SourceSamples, evs)
	got := rec.of("refl", flow.AlertStart)
	if len(got) != 1 {
		t.Fatalf("%d starts, want 1 (the host that asked nothing): %v", len(got), got)
	}
	a := got[0]
	if a.Key[0].Value != "10.0.0.9" || a.Key[1].Value != "53" {
		t.Errorf("key %v, want 10.0.0.9, 53", a.Key)
	}
	if a.Service != "dns" || !strings.Contains(a.Summary, "(dns, amplification 28-54x)") {
		t.Errorf("service %q, summary %q: want dns and its amplification", a.Service, a.Summary)
	}
	// A port the catalogue does not know is named by number.
	evs = evs[:0]
	for i := range int64(2000) {
		res := netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 100)}).String()
		evs = append(evs, engUDP(engMS(10_000+i), res, 37547, "10.0.0.9", uint16(1024+i), 600, 1))
	}
	e.Events(SourceSamples, evs)
	got = rec.of("refl", flow.AlertStart)
	if len(got) != 2 || got[1].Service != "udp/37547" {
		t.Fatalf("unknown service: starts %v, want a second one named udp/37547", got)
	}
}

// TestSpreadMeanEvents: events counts records, mean and spread read
// their sizes, and spread leaves out the sampling noise of each value.
func TestSpreadMeanEvents(t *testing.T) {
	src := `
rules:
  - name: sessions
    source: flows
    filter: tcp
    group_by: [src_addr, dst_addr]
    window: 60s
    measures:
      n: {sum: events}
      mean: {mean: bytes}
      spread: {spread: bytes}
    thresholds:
      n: 10
    when: spread <= 0.1
`
	rec := func(at int64, dst string, bytes uint64, bvar float64, rate uint32) Event {
		return Event{Source: SourceFlows, Time: at, SrcAddr: netip.MustParseAddr("192.0.2.7"), DstAddr: netip.MustParseAddr(dst),
			SrcPort: 40000, DstPort: 22, Proto: 6, IPVersion: 4, Packets: 20, Bytes: bytes, Samples: 20, Rate: rate, BytesVar: bvar}
	}
	e, r := engNew(t, src, Options{})
	var evs []Event
	for i := range int64(10) {
		evs = append(evs, rec(engMS(i*1000), "10.0.0.1", 3000+uint64(i%2)*100, 0, 1))  // cv ~1.7%
		evs = append(evs, rec(engMS(i*1000), "10.0.0.2", 1000+uint64(i%2)*2000, 0, 1)) // cv 50%
	}
	e.Events(SourceFlows, evs)
	got := r.of("sessions", flow.AlertStart)
	if len(got) != 1 || got[0].Key[1].Value != "10.0.0.1" {
		t.Fatalf("starts %v, want one for the similar sessions to 10.0.0.1", got)
	}
	if !strings.Contains(got[0].Summary, "n 10 >= 10") {
		t.Errorf("summary %q", got[0].Summary)
	}
	// Values whose spread is what their own sampling variance explains
	// are similar: 1000 and 3000 with a variance of 1000² each.
	e, r = engNew(t, src, Options{})
	evs = evs[:0]
	for i := range int64(10) {
		evs = append(evs, rec(engMS(i*1000), "10.0.0.3", 1000+uint64(i%2)*2000, 1000*1000*1.05, 100))
	}
	e.Events(SourceFlows, evs)
	if n := len(r.of("sessions", flow.AlertStart)); n != 1 {
		t.Errorf("noise-explained spread: %d starts, want 1", n)
	}
}

// TestNewRuleErrors: the new keys are checked with their paths.
func TestNewRuleErrors(t *testing.T) {
	for _, c := range []struct{ name, rule, want string }{
		{"all and thresholds", "measures: {pps: {rate: packets}}\n    thresholds: {pps: 1}\n    all: {pps: 2}", "all.pps: \"pps\" is in thresholds too"},
		{"all unknown", "measures: {pps: {rate: packets}}\n    all: {ppz: 2}", "all.ppz: no measure \"ppz\""},
		{"burst not slots", "measures: {pps: {rate: packets}}\n    thresholds: {pps: 1}\n    burst: {window: 150ms}", "burst.window: must be a multiple of the slot (100ms)"},
		{"burst one slot", "measures: {pps: {rate: packets}}\n    thresholds: {pps: 1}\n    burst: {window: 100ms}", "at least two slots"},
		{"burst no rate", "measures: {n: {sum: packets}}\n    thresholds: {n: 1}\n    burst: {window: 200ms}", "burst: a burst judges rates"},
		{"reverse distinct", "measures: {n: {distinct: src_addr, reverse: true}}\n    thresholds: {n: 1}", "measures.n.reverse: only a sum or a rate"},
		{"service port", "measures: {n: {sum: packets}}\n    thresholds: {n: 1}\n    service_port: dst_port", "service_port: \"dst_port\" is not in group_by"},
		{"nan", "measures: {n: {sum: packets}}\n    thresholds: {n: .nan}", "thresholds.n: must be a finite number"},
		{"negative", "measures: {n: {sum: packets}}\n    thresholds: {n: -5}", "thresholds.n: must be a finite number, 0 or more, got -5"},
		{"negative all", "measures: {n: {sum: packets}, m: {sum: bytes}}\n    thresholds: {n: 1}\n    all: {m: -1}", "all.m: must be a finite number, 0 or more, got -1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := "rules:\n  - name: r\n    group_by: [dst_addr]\n    window: 1s\n    " + c.rule + "\n"
			_, err := ParseRules("r.yaml", []byte(src), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
}
