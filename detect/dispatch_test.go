package detect

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/vigil-sensor/vigil/flow"
)

// The dispatch tests check that routing by guards changes nothing but
// the cost: a guard admits every event its filter matches, the index
// routes every event to every rule that can match it, and an engine
// with dispatch raises exactly the alerts of one evaluating every rule
// on every event.

// dispAtoms are the filter atoms random filters are made of: the ones
// guards understand, in every form, and some they do not.
var dispAtoms = []func(r *rand.Rand) string{
	func(r *rand.Rand) string {
		return []string{"tcp", "udp", "icmp", "syn", "ack", "fin", "rst", "psh", "amplifier_port", "login_port", "fragment"}[r.IntN(11)]
	},
	func(r *rand.Rand) string { return fmt.Sprintf("proto == %d", dispProtos[r.IntN(len(dispProtos))]) },
	func(r *rand.Rand) string { return fmt.Sprintf("proto != %d", dispProtos[r.IntN(len(dispProtos))]) },
	func(r *rand.Rand) string { return "proto in [6, 17]" },
	func(r *rand.Rand) string { return fmt.Sprintf("tcp_flags == %d", dispFlags[r.IntN(len(dispFlags))]) },
	func(r *rand.Rand) string { return fmt.Sprintf("dst_port == %d", dispPorts[r.IntN(len(dispPorts))]) },
	func(r *rand.Rand) string { return fmt.Sprintf("%d == src_port", dispPorts[r.IntN(len(dispPorts))]) },
	func(r *rand.Rand) string { return fmt.Sprintf("src_port == %d", dispPorts[r.IntN(len(dispPorts))]) },
	func(r *rand.Rand) string { return "dst_port in [53, 123, 443]" },
	func(r *rand.Rand) string { return "dst_port in 20..25" },
	func(r *rand.Rand) string { return fmt.Sprintf("src_port != %d", dispPorts[r.IntN(len(dispPorts))]) },
	func(r *rand.Rand) string { return fmt.Sprintf(`in_cidr(dst_addr, "10.0.%d.0/24")`, r.IntN(4)) },
	func(r *rand.Rand) string {
		return fmt.Sprintf(`in_cidr(src_addr, "10.%d.0.0/16", "2001:db8::/32")`, r.IntN(2))
	},
	func(r *rand.Rand) string { return `in_cidr(dst_addr, "0.0.0.0/0")` },
	func(r *rand.Rand) string { return fmt.Sprintf(`in_cidr(dst_addr, "10.0.1.%d")`, r.IntN(8)) },
	func(r *rand.Rand) string { return fmt.Sprintf(`in_cidr(dst_addr, "2001:db8:0:%d::/64")`, r.IntN(4)) },
	func(r *rand.Rand) string { return `in_cidr(dst_addr, "::ffff:10.0.0.0/120", "10.0.2.0/23")` },
	func(r *rand.Rand) string { return fmt.Sprintf("ifindex == %d", 1+r.IntN(3)) },
	func(r *rand.Rand) string { return fmt.Sprintf("packets < %d", 1+r.IntN(4)) },
	func(r *rand.Rand) string { return "dst_port > 1000" },
	func(r *rand.Rand) string { return []string{"true", "false"}[r.IntN(2)] },
}

var (
	dispProtos = []uint8{1, 6, 17, 47, 58}
	dispFlags  = []uint8{0, flow.TCPSyn, flow.TCPAck, flow.TCPSyn | flow.TCPAck, flow.TCPRst, flow.TCPFin | flow.TCPAck, flow.TCPPsh | flow.TCPAck}
	dispPorts  = []uint16{0, 22, 23, 53, 80, 123, 443, 1900, 11211, 40000}
)

// dispFilter is a random filter of up to depth levels of and, or, not.
func dispFilter(r *rand.Rand, depth int) string {
	if depth == 0 || r.IntN(3) == 0 {
		return dispAtoms[r.IntN(len(dispAtoms))](r)
	}
	a, b := dispFilter(r, depth-1), dispFilter(r, depth-1)
	switch r.IntN(5) {
	case 0, 1:
		return "(" + a + ") && (" + b + ")"
	case 2, 3:
		return "(" + a + ") || (" + b + ")"
	}
	return []string{"!(", "not ("}[r.IntN(2)] + a + ")"
}

// dispAddr is a random address from a few prefixes filters name, IPv4
// sometimes written IPv4-mapped.
func dispAddr(r *rand.Rand) netip.Addr {
	switch r.IntN(6) {
	case 0:
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, byte(r.IntN(4)), 15: byte(r.IntN(8))})
	case 1:
		return netip.AddrFrom4([4]byte{192, 0, 2, byte(r.IntN(256))})
	case 2:
		return netip.AddrFrom16(netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4)), byte(r.IntN(8))}).As16())
	}
	return netip.AddrFrom4([4]byte{10, byte(r.IntN(2)), byte(r.IntN(4)), byte(r.IntN(8))})
}

// dispEvent is a random event over the values the atoms name.
func dispEvent(r *rand.Rand, t int64) Event {
	ev := Event{Time: t, Source: SourceSamples, Packets: 1 + uint64(r.IntN(3)), Samples: 1, Rate: 1}
	ev.Proto = dispProtos[r.IntN(len(dispProtos))]
	ev.TCPFlags = dispFlags[r.IntN(len(dispFlags))]
	ev.SrcPort, ev.DstPort = dispPorts[r.IntN(len(dispPorts))], dispPorts[r.IntN(len(dispPorts))]
	if r.IntN(4) == 0 {
		ev.DstPort = uint16(r.IntN(65536))
	}
	ev.SrcAddr, ev.DstAddr = dispAddr(r), dispAddr(r)
	ev.IPVersion = 4
	if ev.DstAddr.Is6() && !ev.DstAddr.Is4In6() {
		ev.IPVersion = 6
	}
	ev.Ifindex = uint32(1 + r.IntN(3))
	ev.Bytes = ev.Packets * uint64(60+r.IntN(1400))
	ev.Fragment = r.IntN(10) == 0
	return ev
}

// dispTraffic shapes random batches: each of 1 to 150 events, samples
// or flow records, step apart (at most, in ns); one event in lateOdds
// is up to lateN lateUnits late; every jumpEvery batches the clock
// jumps up to a minute.
type dispTraffic struct {
	batches, step   int
	lateOdds, lateN int
	lateUnit        int64
	jumpEvery       int
}

// dispBatches is random traffic of the shape tr, and each batch's source.
func dispBatches(r *rand.Rand, tr dispTraffic) (batches [][]Event, sources []Source) {
	at := engT0
	for i := range tr.batches {
		b := make([]Event, 1+r.IntN(150))
		src := []Source{SourceSamples, SourceSamples, SourceFlows}[r.IntN(3)]
		if tr.jumpEvery > 0 && i%tr.jumpEvery == tr.jumpEvery-1 {
			at += int64(r.IntN(60)) * int64(time.Second)
		}
		for j := range b {
			at += int64(r.IntN(tr.step))
			b[j] = dispEvent(r, at)
			b[j].Source = src
			if tr.lateOdds > 0 && r.IntN(tr.lateOdds) == 0 {
				b[j].Time -= int64(r.IntN(tr.lateN)) * tr.lateUnit
			}
		}
		batches, sources = append(batches, b), append(sources, src)
	}
	return batches, sources
}

// TestGuardIsNecessary: whatever a filter matches, its guard admits;
// a guard marked exact admits only what its filter matches (addresses
// not IPv4-mapped).
func TestGuardIsNecessary(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	narrowed, exact := 0, 0
	for i := range 3000 {
		src := dispFilter(r, 3)
		f, err := CompileFilter(src, nil)
		if err != nil {
			t.Fatalf("filter %q: %v", src, err)
		}
		g := filterGuard(src)
		if g.proto != allBits || g.flags != allBits || !g.dport.any || !g.sport.any || !g.dst.any || !g.src.any {
			narrowed++
		}
		if g.exact {
			exact++
		}
		for range 200 {
			ev := dispEvent(r, int64(i))
			m, a := f(&ev), g.admits(&ev)
			if m && !a {
				t.Fatalf("filter %q matches %+v, its guard %+v does not admit it", src, ev, g)
			}
			if g.exact && a && !m && !ev.SrcAddr.Is4In6() && !ev.DstAddr.Is4In6() {
				t.Fatalf("filter %q does not match %+v, its exact guard %+v admits it", src, ev, g)
			}
		}
	}
	if exact < 500 {
		t.Fatalf("only %d of 3000 guards are exact", exact)
	}
	// The property holds trivially for guards that admit everything:
	// most random filters must narrow something for it to mean much.
	if narrowed < 1500 {
		t.Fatalf("only %d of 3000 guards narrow anything", narrowed)
	}
}

// TestGuardsOfPackFilters: the guards of the built-in pack's filters
// are as narrow as they are written.
func TestGuardsOfPackFilters(t *testing.T) {
	synOnly := bitsWhere(func(f uint8) bool { return f&flow.TCPSyn != 0 && f&flow.TCPAck == 0 })
	g := filterGuard("tcp && syn && !ack")
	if g.proto != bitsWhere(func(p uint8) bool { return p == 6 }) || g.flags != synOnly {
		t.Errorf("tcp && syn && !ack: proto %x flags %x", g.proto, g.flags)
	}
	g = filterGuard("(tcp && syn && !ack) || (icmp && dst_port in [2048, 32768])")
	if want := bitsWhere(func(p uint8) bool { return p == 6 || p == 1 || p == 58 }); g.proto != want {
		t.Errorf("syn or icmp: proto %x, want %x", g.proto, want)
	}
	g = filterGuard("amplifier_port")
	if g.sport.any || !g.sport.has(53) || !g.sport.has(123) || g.sport.has(443) || !g.proto.has(17) || g.proto.has(6) {
		t.Errorf("amplifier_port: %+v", g)
	}
	g = filterGuard(`in_cidr(dst_addr, "10.1.2.0/24") && dst_port == 443`)
	if g.dst.any || len(g.dst.pfx) != 1 || g.dst.pfx[0] != netip.MustParsePrefix("10.1.2.0/24") || !g.dport.has(443) || g.dport.has(80) {
		t.Errorf("prefix and port: %+v", g)
	}
	if g := filterGuard("tcp && udp"); !g.empty() {
		t.Errorf("tcp && udp admits %+v", g)
	}
	if g := filterGuard("!(tcp && syn)"); g.proto != allBits || g.flags != allBits {
		t.Errorf("!(tcp && syn) is a guess: %+v", g)
	}
}

// dispRule is a random rule: a threshold over a random filter, some
// with a reverse measure, some bursts, some sequences and absences.
func dispRule(r *rand.Rand, i int) string {
	var w strings.Builder
	groups := []string{"[dst_addr]", "[src_addr]", "[dst_addr, dst_port]", "[dst_addr/24]", "[proto]"}
	source := []string{"samples", "samples", "samples", "flows"}[r.IntN(4)]
	fmt.Fprintf(&w, "  - name: r%d\n    source: %s\n", i, source)
	switch r.IntN(10) {
	case 0:
		fmt.Fprintf(&w, `    group_by: [src_addr]
    sequence:
      within: 2s
      steps:
        - {source: %s, filter: %q}
        - {source: %s, filter: %q}
`, source, dispFilter(r, 2), source, dispFilter(r, 2))
		return strings.Replace(w.String(), "    source: "+source+"\n", "", 1)
	case 1:
		fmt.Fprintf(&w, "    filter: %q\n    group_by: [dst_addr]\n    absence: {after: 3s, learn: 2s}\n", dispFilter(r, 2))
		return w.String()
	}
	fmt.Fprintf(&w, "    filter: %q\n    group_by: %s\n    window: 1s\n    quiet: 2s\n    update_every: 1s\n",
		dispFilter(r, 3), groups[r.IntN(len(groups))])
	burst := r.IntN(4) == 0 && source == "samples"
	if burst {
		w.WriteString("    burst: {window: 200ms}\n    measures:\n      pkts: {rate: packets}\n")
	} else {
		w.WriteString("    measures:\n      pkts: {sum: packets}\n")
	}
	if r.IntN(3) == 0 {
		fmt.Fprintf(&w, "      back: {sum: packets, reverse: true, filter: %q}\n", dispFilter(r, 2))
		w.WriteString("    all:\n      back: 1\n")
	}
	fmt.Fprintf(&w, "    thresholds:\n      pkts: %d\n", 2+r.IntN(20))
	return w.String()
}

// dispRules is the YAML of n random rules that all compile, and one
// rule chaining on the others' alerts.
func dispRules(t *testing.T, r *rand.Rand, n int) string {
	var w strings.Builder
	w.WriteString("rules:\n")
	for i := 0; i < n; i++ {
		src := dispRule(r, i)
		if strings.Contains(src, "reverse: true") && !strings.Contains(src, "group_by: [dst_addr") &&
			!strings.Contains(src, "group_by: [src_addr") {
			src = strings.Replace(src, "group_by: [proto]", "group_by: [dst_addr]", 1)
		}
		w.WriteString(src)
	}
	w.WriteString(`  - name: chained
    source: alerts
    filter: state == "start"
    group_by: [dst_addr]
    window: 5s
    measures:
      n: {sum: events}
    thresholds:
      n: 2
`)
	return w.String()
}

// dispRun runs events through an engine over rules, naive or with
// dispatch, and returns what it raised and its rule counters.
func dispRun(t *testing.T, set *RuleSet, naive bool, batches [][]Event, sources []Source) ([]flow.Alert, []RuleStats) {
	return dispRunWorkers(t, set, naive, 1, batches, sources)
}

// dispFullSweep makes the engines of dispRunWorkers sweep by full scans.
var dispFullSweep bool

// dispRunWorkers is dispRun on an engine of workers.
func dispRunWorkers(t *testing.T, set *RuleSet, naive bool, workers int, batches [][]Event, sources []Source) ([]flow.Alert, []RuleStats) {
	var rec engRecorder
	// No rate limit: which of a rule's keys is updated first on a tick
	// follows map order, run to run, so which one a limit holds back
	// does too.
	e := NewEngine(set, EngineConfig{AlertsPerSecond: 1e9, RuleAlertsPerSecond: 1e9, Workers: workers}, rec.emit)
	e.naive = naive
	if e.pool != nil {
		for _, w := range e.pool.workers {
			w.naive = naive
		}
	}
	if dispFullSweep {
		e.fullSweep = true
		e.install(set, nil) // the rules again, without wheels
	}
	for i, b := range batches {
		evs := append([]Event(nil), b...) // the engine marks events
		e.Events(sources[i], evs)
		if i%7 == 6 {
			e.Advance(b[len(b)-1].Time + int64(100*time.Millisecond))
		}
	}
	e.Close(batches[len(batches)-1][0].Time + int64(10*time.Second))
	stats := e.Stats()
	for i := range stats {
		stats[i].EvalSeconds, stats[i].EvalShare = 0, 0
	}
	// The same order as far as the engine defines it: by time, rule
	// and key within a tick.
	keys := make(map[*flow.Alert]string, len(rec.alerts))
	ptrs := make([]*flow.Alert, len(rec.alerts))
	for i := range rec.alerts {
		ptrs[i] = &rec.alerts[i]
		keys[ptrs[i]] = fmt.Sprint(ptrs[i].Key)
	}
	slices.SortStableFunc(ptrs, func(a, b *flow.Alert) int {
		return cmp.Or(cmp.Compare(a.Time, b.Time), strings.Compare(a.Rule, b.Rule),
			strings.Compare(keys[a], keys[b]), cmp.Compare(a.State, b.State))
	})
	out := make([]flow.Alert, len(ptrs))
	for i, a := range ptrs {
		out[i] = *a
	}
	return out, stats
}

// TestDispatchMatchesNaive is the differential test: over random rule
// sets and random events, the engine with dispatch raises exactly the
// alerts, in the same order, with the same counters, as evaluating
// every rule on every event.
func TestDispatchMatchesNaive(t *testing.T) {
	for seed := range uint64(12) {
		r := rand.New(rand.NewPCG(seed, 99))
		opts := Options{}
		if seed%3 == 0 {
			opts.Lists = []ListSpec{{Name: AllowList, Entries: []string{"10.1.3.0/24"}}}
		}
		set := engLoad(t, dispRules(t, r, 40+int(seed)*10), opts)
		batches, sources := dispBatches(r, dispTraffic{batches: 80, step: 200_000, lateOdds: 20, lateN: 2_000_000_000, lateUnit: 1})
		wantA, wantS := dispRun(t, set, true, batches, sources)
		gotA, gotS := dispRun(t, set, false, batches, sources)
		if len(wantA) < 20 {
			t.Fatalf("seed %d: only %d alerts: the rules test little", seed, len(wantA))
		}
		if reflect.DeepEqual(wantA, gotA) && reflect.DeepEqual(wantS, gotS) {
			continue
		}
		if d := gocmp.Diff(wantS, gotS); d != "" {
			t.Fatalf("seed %d: rule counters differ (-naive +dispatch):\n%s", seed, d)
		}
		if d := gocmp.Diff(wantA, gotA); d != "" {
			t.Fatalf("seed %d: alerts differ (-naive +dispatch):\n%s", seed, d)
		}
	}
}

// TestEvalTimeChargedToRulesThatRan: with dispatch, a rule no event can
// match is charged no time; the rules that ran share all of it.
func TestEvalTimeChargedToRulesThatRan(t *testing.T) {
	set := engLoad(t, `rules:
  - name: syn
    filter: tcp && syn && !ack
    group_by: [dst_addr]
    measures:
      pps: {rate: packets}
    thresholds:
      pps: 1000000
  - name: dns
    filter: udp && dst_port == 53
    group_by: [dst_addr]
    measures:
      pps: {rate: packets}
    thresholds:
      pps: 1000000
  - name: never
    filter: udp && dst_port == 9
    group_by: [dst_addr]
    measures:
      pps: {rate: packets}
    thresholds:
      pps: 1000000
`, Options{})
	e := NewEngine(set, EngineConfig{}, nil)
	wall := time.Unix(1_700_000_000, 0)
	e.clock = func() time.Time { wall = wall.Add(time.Millisecond); return wall }
	for i := range 50 {
		evs := []Event{engSyn(engMS(int64(i)), "192.0.2.1", "10.0.0.1", 1), engSyn(engMS(int64(i)), "192.0.2.2", "10.0.0.1", 1)}
		evs = append(evs, engUDP(engMS(int64(i)), "192.0.2.3", 4000, "10.0.0.2", 53, 80, 1))
		e.Events(SourceSamples, evs)
	}
	share := 0.0
	for _, s := range e.Stats() {
		share += s.EvalShare
		switch {
		case s.Rule == "never" && (s.EvalSeconds != 0 || s.Events != 150):
			t.Errorf("never: charged %vs for %d events; want 0s for 150", s.EvalSeconds, s.Events)
		case s.Rule != "never" && s.EvalSeconds == 0:
			t.Errorf("%s ran and was charged nothing", s.Rule)
		}
	}
	if share < 0.999 || share > 1.001 {
		t.Errorf("shares add up to %v", share)
	}
}

// TestDispatchMatchesNaivePack: the built-in pack over the benchmark's
// mixed traffic (floods, scans, reflection, brute force, background)
// raises the same alerts with dispatch as without.
func TestDispatchMatchesNaivePack(t *testing.T) {
	set, err := Load(Options{Builtin: true, Lists: []ListSpec{{Name: "intel", Entries: []string{"203.0.113.0/24"}},
		{Name: "watched", Entries: []string{"198.51.100.7"}}}})
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := engBenchBatch(4096)
	for i := range evs { // as sampled 1 in 200: 20 M packets a second
		evs[i].Rate, evs[i].Packets, evs[i].Bytes = 200, 200, 200*evs[i].Bytes
	}
	var batches [][]Event
	var sources []Source
	for i := range 300 {
		b := append([]Event(nil), evs[(i%4)*1024:(i%4+1)*1024]...)
		for j := range b {
			b[j].Time = engT0 + int64(i)*int64(10*time.Millisecond) + int64(j)*int64(10*time.Millisecond)/1024
		}
		batches, sources = append(batches, b), append(sources, SourceSamples)
	}
	wantA, wantS := dispRun(t, set, true, batches, sources)
	gotA, gotS := dispRun(t, set, false, batches, sources)
	rules := map[string]bool{}
	for _, a := range wantA {
		rules[a.Rule] = true
	}
	if len(rules) < 3 {
		t.Fatalf("the pack raised %d alerts of %d rules: the traffic tests little", len(wantA), len(rules))
	}
	if !reflect.DeepEqual(wantA, gotA) || !reflect.DeepEqual(wantS, gotS) {
		t.Fatalf("differ:\nalerts %s\ncounters %s", gocmp.Diff(wantA, gotA), gocmp.Diff(wantS, gotS))
	}
	t.Logf("%d alerts of rules %v", len(wantA), rules)
}
