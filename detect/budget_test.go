package detect

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/flow"
)

// budgetRules is n rules reading every UDP sample, keyed by source (so
// spoofed sources make new keys in each), their severities cycling
// info, low, medium, high, critical; rule "victim" alerts on one
// destination's packet rate.
func budgetRules(n int) string {
	var w strings.Builder
	w.WriteString(`rules:
  - name: victim
    severity: info
    filter: udp && dst_port == 9
    group_by: [dst_addr]
    window: 1s
    measures:
      pps: {rate: packets}
    thresholds:
      pps: 100
`)
	sev := []string{"info", "low", "medium", "high", "critical"}
	for i := range n {
		fmt.Fprintf(&w, `  - name: src_%d
    severity: %s
    filter: udp && dst_port == %d
    group_by: [src_addr]
    window: 10s
    measures:
      pps: {rate: packets}
      peers: {distinct: dst_addr}
    thresholds:
      pps: 1000000
`, i, sev[i%len(sev)], 1000+i%50)
	}
	return w.String()
}

// budgetFlood is a batch of UDP samples from spoofed sources to ports
// 1000-1049 (each read by n/50 rules), and some to the victim.
func budgetFlood(r *rand.Rand, at int64, n int) []Event {
	evs := make([]Event, n)
	for i := range evs {
		ev := &evs[i]
		ev.Time, ev.Source, ev.Proto, ev.IPVersion = at+int64(i)*1000, SourceSamples, 17, 4
		ev.SrcAddr = netip.AddrFrom4([4]byte{byte(r.IntN(224)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
		ev.DstAddr = netip.AddrFrom4([4]byte{10, 0, 0, byte(r.IntN(16))})
		ev.SrcPort, ev.DstPort = 53, uint16(1000+r.IntN(50))
		ev.Packets, ev.Bytes, ev.Samples, ev.Rate = 1, 512, 1, 1
		if i%4 == 0 {
			ev.DstAddr, ev.DstPort = netip.MustParseAddr("10.9.9.9"), 9
		}
	}
	return evs
}

// TestMemoryBudgetSheds floods 1,000 rules with spoofed keys under a
// budget a tenth of what they would hold: the estimate stays under the
// budget, lower severities shed first and more, every shed key is
// counted, and the running alert of an info rule is never shed.
func TestMemoryBudgetSheds(t *testing.T) {
	set := engLoad(t, budgetRules(1000), Options{})
	var rec engRecorder
	const limit = 16 << 20
	e := NewEngine(set, EngineConfig{MaxMemory: limit}, rec.emit)
	r := rand.New(rand.NewPCG(5, 5))
	at := engT0
	for range 200 {
		e.Events(SourceSamples, budgetFlood(r, at, 1024))
		at += int64(10 * time.Millisecond)
		if es := e.EngineStats(); es.MemoryBytes > limit {
			t.Fatalf("state estimated at %d bytes, over the budget of %d", es.MemoryBytes, limit)
		}
	}
	shed, held, refused := map[flow.Severity]uint64{}, map[flow.Severity]int{}, map[flow.Severity]uint64{}
	var shedAll uint64
	for i, s := range e.Stats() {
		rs := e.rules[i]
		shed[rs.r.severity] += s.ShedKeys
		held[rs.r.severity] += s.Keys
		refused[rs.r.severity] += s.ShedEvents
		shedAll += s.ShedKeys + s.ShedEvents
		if s.Rule == "victim" && (s.Active != 1 || s.ShedEvents != 0) {
			t.Errorf("victim: %d alerts running, %d events shed: want its alert kept", s.Active, s.ShedEvents)
		}
	}
	if shedAll == 0 {
		t.Fatal("nothing was shed")
	}
	if len(rec.of("victim", flow.AlertStart)) != 1 {
		t.Errorf("victim alerts: %v", rec.alerts)
	}
	// Severity order: the critical rules, shed last, hold nearly all the
	// keys, and lose no event for want of memory; the others lose their
	// keys to them.
	for s := flow.SeverityInfo; s < flow.SeverityCritical; s++ {
		if 10*held[s] > held[flow.SeverityCritical] || shed[s] == 0 {
			t.Errorf("%v rules hold %d keys and shed %d; critical rules hold %d", s, held[s], shed[s], held[flow.SeverityCritical])
		}
	}
	if refused[flow.SeverityCritical] != 0 || refused[flow.SeverityInfo] == 0 {
		t.Errorf("events shed for want of memory, by severity: %v", refused)
	}
	es := e.EngineStats()
	if es.MemoryBytes < limit/2 {
		t.Fatalf("state estimated at %d bytes: the flood did not reach the budget of %d", es.MemoryBytes, limit)
	}
	// The estimate follows what the state really holds.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e.Replace(engLoad(t, engFloodRule, Options{}))
	runtime.GC()
	runtime.ReadMemStats(&after)
	freed := int64(before.HeapAlloc) - int64(after.HeapAlloc)
	if 4*freed < 3*es.MemoryBytes || 3*freed > 4*es.MemoryBytes {
		t.Errorf("dropping the rules freed %d bytes; their state was estimated at %d", freed, es.MemoryBytes)
	}

	t.Logf("shed by severity %v, held %v, refused %v, estimate %d of %d bytes, %d freed", shed, held, refused, es.MemoryBytes, limit, freed)
}

// TestCPUGuardSheds drives the guard with a clock that charges each
// measurement 1 ms of wall time: the engine is busy all the time, so one
// severity class more is shed per second, up to high; critical rules
// always run; shed events are counted per rule. Once the engine is idle
// the classes come back.
func TestCPUGuardSheds(t *testing.T) {
	set := engLoad(t, budgetRules(10), Options{})
	e := NewEngine(set, EngineConfig{MaxCPU: 0.5}, nil)
	wall := time.Unix(1_700_000_000, 0)
	busy := true
	e.clock = func() time.Time {
		if busy {
			wall = wall.Add(time.Millisecond)
		}
		return wall
	}
	r := rand.New(rand.NewPCG(6, 6))
	at := engT0
	levels := map[int]bool{}
	for range 2000 {
		e.Events(SourceSamples, budgetFlood(r, at, 64))
		at += int64(time.Millisecond)
		levels[e.EngineStats().CPUShedLevel] = true
	}
	if es := e.EngineStats(); es.CPUShedLevel != maxShed || es.CPULoad <= 0.5 {
		t.Fatalf("after 2000 busy batches: level %d, load %.2f; want %d, over 0.5", es.CPUShedLevel, es.CPULoad, maxShed)
	}
	for l := 1; l <= maxShed; l++ {
		if !levels[l] {
			t.Errorf("level %d was skipped: %v", l, levels)
		}
	}
	for i, s := range e.Stats() {
		sev := e.rules[i].r.severity
		switch {
		case sev == flow.SeverityCritical && s.ShedCPU != 0:
			t.Errorf("%s (critical): %d events shed", s.Rule, s.ShedCPU)
		case sev < flow.SeverityCritical && s.ShedCPU == 0:
			t.Errorf("%s (%v): nothing shed", s.Rule, sev)
		case sev == flow.SeverityCritical && s.Matches == 0:
			t.Errorf("%s (critical): matched nothing", s.Rule)
		}
	}
	// Idle: every second of wall time without engine time brings a
	// class back.
	busy = false
	for range maxShed {
		wall = wall.Add(2 * cpuPeriod)
		e.Events(SourceSamples, budgetFlood(r, at, 1))
	}
	if es := e.EngineStats(); es.CPUShedLevel != 0 {
		t.Fatalf("idle: level %d, load %.2f; want 0", es.CPUShedLevel, es.CPULoad)
	}
}
