package detect

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/flow"
)

// The engine at thousands of rules (issue 16): rule sets of 10 to 10,000
// rules with distinct filters, in the shapes operators write them, over
// batches whose events each match a few rules. These are the baseline
// the rework is measured against; they change nothing in the engine.

// scaleSizes are the rule counts of BenchmarkEngineScale.
var scaleSizes = []int{10, 100, 1000, 10000}

// scaleShape is a family of rules: rule i of a set, and an event rule i
// reads, to host h (0..255) of what the rule covers.
type scaleShape struct {
	name  string
	rule  func(w *strings.Builder, i int)
	event func(ev *Event, i, h int, r *rand.Rand)
}

// scaleProtos fills an event's protocol, ports and flags with a mix of
// TCP (a SYN in four), UDP and ICMP.
func scaleProtos(ev *Event, r *rand.Rand) {
	ev.SrcPort = uint16(1024 + r.IntN(60000))
	switch p := r.IntN(10); {
	case p < 6:
		ev.Proto = 6
		ev.DstPort = []uint16{443, 80, 22, 25, 8080}[r.IntN(5)]
		ev.TCPFlags = scaleFlags(r)
	case p < 9:
		ev.Proto = 17
		ev.DstPort = []uint16{53, 123, 443, 4500}[r.IntN(4)]
	default:
		ev.Proto = 1
		if ev.IPVersion == 6 {
			ev.Proto = 58
		}
		ev.SrcPort, ev.DstPort = 0, 8<<8
	}
}

func scaleFlags(r *rand.Rand) uint8 {
	return []uint8{flow.TCPSyn, flow.TCPAck, flow.TCPAck | flow.TCPPsh, flow.TCPFin | flow.TCPAck}[r.IntN(4)]
}

func scaleV4(ev *Event, src, dst [4]byte) {
	ev.IPVersion = 4
	ev.SrcAddr, ev.DstAddr = netip.AddrFrom4(src), netip.AddrFrom4(dst)
}

// scaleThreshold is rule i's own threshold: distinct per rule, and above
// what the benchmarks' traffic reaches (about 100,000 events a second
// over all the rules), so the cost measured is that of reading events.
func scaleThreshold(i int) int { return 200_000 + 10*i }

// siteVariants are the rules of one site: all of its traffic, SYNs, and
// one rule per service (SSH only from outside the management prefix).
var siteVariants = []string{
	"",
	" && tcp && syn && !ack",
	" && tcp && dst_port == 443",
	" && tcp && dst_port == 80",
	` && tcp && dst_port == 22 && !in_cidr(src_addr, "198.51.0.0/20")`,
	" && udp && dst_port == 53",
	" && udp && dst_port == 123",
	" && udp && dst_port == 443",
}

// siteServices are the protocol and port of siteVariants[2:].
var siteServices = [][2]uint16{{6, 443}, {6, 80}, {6, 22}, {17, 53}, {17, 123}, {17, 443}}

var scaleShapes = []scaleShape{
	{
		// A threshold per customer: one rule per IPv4 /24.
		name: "prefix24",
		rule: func(w *strings.Builder, i int) {
			fmt.Fprintf(w, `  - name: cust_%d
    filter: in_cidr(dst_addr, "10.%d.%d.0/24")
    group_by: [dst_addr]
    window: 1s
    measures:
      pps: {rate: packets}
    thresholds:
      pps: %d
`, i, i>>8, i&0xff, scaleThreshold(i))
		},
		event: func(ev *Event, i, h int, r *rand.Rand) {
			scaleV4(ev, [4]byte{198, 51, byte(r.IntN(64)), byte(r.IntN(256))}, [4]byte{10, byte(i >> 8), byte(i), byte(h)})
			scaleProtos(ev, r)
		},
	},
	{
		// The same over IPv6 /64s.
		name: "prefix64",
		rule: func(w *strings.Builder, i int) {
			fmt.Fprintf(w, `  - name: cust_%d
    filter: in_cidr(dst_addr, "2001:db8:0:%x::/64")
    group_by: [dst_addr]
    window: 1s
    measures:
      pps: {rate: packets}
    thresholds:
      pps: %d
`, i, i, scaleThreshold(i))
		},
		event: func(ev *Event, i, h int, r *rand.Rand) {
			ev.IPVersion = 6
			ev.SrcAddr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(r.IntN(256)), byte(r.IntN(256))})
			ev.DstAddr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, byte(i >> 8), byte(i), 0, 0, 0, 0, 0, 0, 0, byte(h)})
			scaleProtos(ev, r)
		},
	},
	{
		// A threshold per service port, TCP and UDP, any host.
		name: "port",
		rule: func(w *strings.Builder, i int) {
			fmt.Fprintf(w, `  - name: svc_%d
    filter: proto == %d && dst_port == %d
    group_by: [dst_addr]
    window: 1s
    measures:
      pps: {rate: packets}
    thresholds:
      pps: %d
`, i, scalePortProto(i), 1+i/2, scaleThreshold(i))
		},
		event: func(ev *Event, i, h int, r *rand.Rand) {
			scaleV4(ev, [4]byte{198, 51, byte(r.IntN(64)), byte(r.IntN(256))}, [4]byte{192, 168, byte(r.IntN(4)), byte(h)})
			ev.Proto, ev.SrcPort, ev.DstPort = uint8(scalePortProto(i)), uint16(1024+r.IntN(60000)), uint16(1+i/2)
			if ev.Proto == 6 {
				ev.TCPFlags = scaleFlags(r)
			}
		},
	},
	{
		// Per-site variants: the site's ingress interface and prefix,
		// and one of siteVariants. An event matches the site's all-traffic
		// rule, its service's and, for a SYN, the site's SYN rule.
		name: "site",
		rule: func(w *strings.Builder, i int) {
			s, v := i/len(siteVariants), i%len(siteVariants)
			measure := "pps: {rate: packets}"
			threshold := fmt.Sprintf("pps: %d", scaleThreshold(i))
			if v == 0 {
				measure = "bps: {rate: bits}"
				threshold = fmt.Sprintf("bps: %d", 1000*scaleThreshold(i))
			}
			fmt.Fprintf(w, `  - name: site_%d_%d
    filter: ifindex == %d && in_cidr(dst_addr, "10.%d.%d.0/24")%s
    group_by: [dst_addr]
    window: 1s
    measures:
      %s
    thresholds:
      %s
`, s, v, 1+s%64, s>>8, s&0xff, siteVariants[v], measure, threshold)
		},
		event: func(ev *Event, i, h int, r *rand.Rand) {
			s, v := i/len(siteVariants), i%len(siteVariants)
			scaleV4(ev, [4]byte{198, 51, byte(r.IntN(64)), byte(r.IntN(256))}, [4]byte{10, byte(s >> 8), byte(s), byte(h)})
			ev.Ifindex = uint32(1 + s%64)
			svc := siteServices[r.IntN(len(siteServices))]
			switch {
			case v == 1:
				svc = siteServices[r.IntN(2)]
			case v >= 2:
				svc = siteServices[v-2]
			}
			ev.Proto, ev.SrcPort, ev.DstPort = uint8(svc[0]), uint16(1024+r.IntN(60000)), svc[1]
			if ev.Proto == 6 {
				ev.TCPFlags = scaleFlags(r)
				if v == 1 {
					ev.TCPFlags = flow.TCPSyn
				}
			}
		},
	},
}

// scalePortProto is the protocol of port rule i: TCP, UDP, TCP, ...
func scalePortProto(i int) int {
	if i%2 == 0 {
		return 6
	}
	return 17
}

// scaleBackground is an event no rule of any shape reads.
func scaleBackground(ev *Event, r *rand.Rand) {
	scaleV4(ev, [4]byte{198, 51, byte(r.IntN(64)), byte(r.IntN(256))}, [4]byte{203, 0, 113, byte(r.IntN(256))})
	ev.Proto, ev.SrcPort, ev.DstPort = 17, uint16(1024+r.IntN(60000)), uint16(40000+r.IntN(20000))
}

// scaleFile is how many rules each file of a large set holds. Loading
// one file of n rules was O(n²) while the duration type took the node's
// text (goccy/go-yaml indexed every token of the file to format it); it
// is linear now (TestRuleFileLoadIsLinear), and the sets stay split as
// a configuration of thousands of rules would be.
const scaleFile = 100

// scaleRules is the YAML of n rules of a shape, in files of per rules.
func scaleRules(sh scaleShape, n, per int) []string {
	var files []string
	for from := 0; from < n; from += per {
		var w strings.Builder
		w.WriteString("rules:\n")
		for i := from; i < min(from+per, n); i++ {
			sh.rule(&w, i)
		}
		files = append(files, w.String())
	}
	return files
}

// scaleWrite writes rule files in a temporary directory.
func scaleWrite(b *testing.B, files []string) []string {
	b.Helper()
	dir := b.TempDir()
	paths := make([]string, len(files))
	for i, src := range files {
		paths[i] = filepath.Join(dir, fmt.Sprintf("rules%05d.yaml", i))
		if err := os.WriteFile(paths[i], []byte(src), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return paths
}

// scaleLoad compiles rule files, read from disk as a configuration's are.
func scaleLoad(b *testing.B, files []string) *RuleSet {
	b.Helper()
	set, err := Load(Options{Files: scaleWrite(b, files)})
	if err != nil {
		b.Fatal(err)
	}
	return set
}

// scaleBatch is the size of a batch: 10ms of event time, as in engBenchRun.
const scaleBatch = 1024

// scalePool is batches of events for n rules of a shape: nine events in
// ten go to one of 16 hosts of a rule, every rule in turn in a shuffled
// order, so that over the pool each rule gets some traffic; one in ten
// matches no rule. There are enough batches for every rule to be read
// at least once (up to 20 batches), so the keys the pool makes stay
// alive in the 1s windows while it is replayed.
func scalePool(sh scaleShape, n int) [][]Event {
	r := rand.New(rand.NewPCG(16, uint64(n)))
	nb := min(max(1, (n+scaleBatch*9/10-1)/(scaleBatch*9/10)), 20)
	perm := r.Perm(n)
	g := 0
	pool := make([][]Event, nb)
	for b := range pool {
		evs := make([]Event, scaleBatch)
		for j := range evs {
			ev := &evs[j]
			if r.IntN(10) == 0 {
				scaleBackground(ev, r)
			} else {
				sh.event(ev, perm[g%n], r.IntN(16), r)
				g++
			}
			ev.Source, ev.Samples, ev.Rate = SourceSamples, 1, 1
			ev.Packets, ev.Bytes = 1, uint64(64+r.IntN(1400))
		}
		pool[b] = evs
	}
	return pool
}

// scaleTotals are the engine's events, matches and keys over every rule.
func scaleTotals(e *Engine) (events, matches uint64, keys int) {
	for _, s := range e.Stats() {
		events += s.Events
		matches += s.Matches
		keys += s.Keys
	}
	return events, matches, keys
}

// scaleRun feeds the batches of pool in turn, 10ms of event time each,
// after one pass over the pool to make the keys: the steady state of a
// sensor whose hosts are known.
func scaleRun(b *testing.B, set *RuleSet, pool [][]Event) {
	alerts := 0
	workers := 1
	if _, w, ok := strings.Cut(b.Name(), "/workers="); ok {
		fmt.Sscanf(w, "%d", &workers)
	}
	e := NewEngine(set, EngineConfig{Workers: workers}, func(as []flow.Alert) { alerts += len(as) })
	e.naive = strings.HasSuffix(b.Name(), "/naive")
	offs := make([]int64, scaleBatch)
	for j := range offs {
		offs[j] = int64(j) * int64(10*time.Millisecond) / scaleBatch
	}
	n := int64(0)
	feed := func() {
		evs := pool[n%int64(len(pool))]
		base := engT0 + n*int64(10*time.Millisecond)
		for j := range evs {
			evs[j].Time = base + offs[j]
		}
		e.Events(SourceSamples, evs)
		n++
	}
	for range pool {
		feed()
	}
	_, m0, _ := scaleTotals(e)
	alerts = 0
	b.ReportAllocs()
	for b.Loop() {
		feed()
	}
	_, m1, keys := scaleTotals(e)
	evs := float64(b.N * scaleBatch)
	b.ReportMetric(evs/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/evs, "ns/event")
	b.ReportMetric(float64(m1-m0)/evs, "matches/event")
	b.ReportMetric(float64(keys), "keys")
	b.ReportMetric(float64(alerts)/float64(b.N), "alerts/op")
}

// BenchmarkEngineScale: n rules with distinct filters, each event read
// by a few of them (matches/event), and n rules sharing one filter.
func BenchmarkEngineScale(b *testing.B) {
	for _, sh := range scaleShapes {
		for _, n := range scaleSizes {
			for _, mode := range scaleModes {
				b.Run(fmt.Sprintf("%s/rules=%d/%s", sh.name, n, mode), func(b *testing.B) {
					scaleRun(b, scaleLoad(b, scaleRules(sh, n, scaleFile)), scalePool(sh, n))
				})
			}
		}
	}
	// 1,000 rules alike but for their thresholds, over the mixed batch
	// of engBenchBatch: every SYN (one event in ten) matches all of them.
	for _, mode := range scaleModes {
		b.Run("shared-filter/rules=1000/"+mode, func(b *testing.B) {
			var src strings.Builder
			src.WriteString("rules:\n")
			for i := range 1000 {
				fmt.Fprintf(&src, `  - name: syn_%d
    filter: tcp && syn && !ack
    group_by: [dst_addr]
    window: 1s
    measures:
      pps: {rate: packets}
    thresholds:
      pps: %d
`, i, scaleThreshold(i))
			}
			evs, _ := engBenchBatch(scaleBatch)
			scaleRun(b, scaleLoad(b, []string{src.String()}), [][]Event{evs})
		})
	}
}

// scaleModes: the engine as it runs (dispatch), and every rule reading
// every event (naive), the baseline in the same run.
var scaleModes = []string{"dispatch", "naive"}

// BenchmarkEngineScalePack is the built-in pack over the mixed batch of
// engBenchBatch (as BenchmarkEngineSamples, with the metrics of
// BenchmarkEngineScale).
func BenchmarkEngineScalePack(b *testing.B) {
	set, err := Load(Options{Builtin: true})
	if err != nil {
		b.Fatal(err)
	}
	evs, _ := engBenchBatch(scaleBatch)
	for _, mode := range scaleModes {
		b.Run(mode, func(b *testing.B) { scaleRun(b, set, [][]Event{evs}) })
	}
}

// BenchmarkEngineScaleWorkers: the engine at 1 and 2 workers (cores),
// 10,000 rules of each shape and the built-in pack. Each worker routes
// and filters every event, and updates only its own keys.
func BenchmarkEngineScaleWorkers(b *testing.B) {
	for _, w := range []int{1, 2} {
		for _, sh := range scaleShapes {
			b.Run(fmt.Sprintf("%s/rules=10000/workers=%d", sh.name, w), func(b *testing.B) {
				scaleRun(b, scaleLoad(b, scaleRules(sh, 10000, scaleFile)), scalePool(sh, 10000))
			})
		}
		b.Run(fmt.Sprintf("pack/workers=%d", w), func(b *testing.B) {
			set, err := Load(Options{Builtin: true})
			if err != nil {
				b.Fatal(err)
			}
			evs, _ := engBenchBatch(scaleBatch)
			scaleRun(b, set, [][]Event{evs})
		})
	}
}

// BenchmarkCompileRules is loading n prefix24 rules (YAML, filters, the
// rule set) from files of scaleFile rules, and installing them in a new
// engine, as a reload does: load-ns/rule and install-ns/rule split the
// time. one-file is the same rules in one file, up to 1,000 (see
// scaleFile).
func BenchmarkCompileRules(b *testing.B) {
	run := func(b *testing.B, n, per int) {
		paths := scaleWrite(b, scaleRules(scaleShapes[0], n, per))
		var load, install time.Duration
		b.ReportAllocs()
		for b.Loop() {
			t0 := time.Now()
			set, err := Load(Options{Files: paths})
			if err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			NewEngine(set, EngineConfig{}, nil)
			install += time.Since(t1)
			load += t1.Sub(t0)
		}
		b.ReportMetric(float64(load.Nanoseconds())/float64(b.N*n), "load-ns/rule")
		b.ReportMetric(float64(install.Nanoseconds())/float64(b.N*n), "install-ns/rule")
	}
	for _, n := range scaleSizes {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) { run(b, n, scaleFile) })
	}
	for _, n := range scaleSizes[:3] {
		b.Run(fmt.Sprintf("one-file/rules=%d", n), func(b *testing.B) { run(b, n, n) })
	}
}

// scaleHeap is the live heap after a collection.
func scaleHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkEngineScaleMemory is the live heap of n rules of a shape:
// B/rule is the compiled rule set and an engine holding no keys, B/key
// what the keys then made add (each rule is sent events for up to 64
// hosts, 65,536 keys in all, or as many as fit in 256 hosts a rule).
func BenchmarkEngineScaleMemory(b *testing.B) {
	for _, sh := range scaleShapes {
		for _, n := range []int{1000, 10000} {
			b.Run(fmt.Sprintf("%s/rules=%d", sh.name, n), func(b *testing.B) {
				src := scaleRules(sh, n, scaleFile)
				hosts := min(max(65536/n, 1), 256)
				r := rand.New(rand.NewPCG(16, 1))
				evs := make([]Event, 0, n*hosts)
				for i := range n {
					for h := range hosts {
						var ev Event
						sh.event(&ev, i, h, r)
						ev.Source, ev.Samples, ev.Rate, ev.Packets, ev.Bytes = SourceSamples, 1, 1, 1, 100
						ev.Time = engT0 + int64(len(evs))
						evs = append(evs, ev)
					}
				}
				var perRule, perKey float64
				for b.Loop() {
					h0 := scaleHeap()
					e := NewEngine(scaleLoad(b, src), EngineConfig{}, nil)
					h1 := scaleHeap()
					for j := 0; j < len(evs); j += scaleBatch {
						e.Events(SourceSamples, evs[j:min(j+scaleBatch, len(evs))])
					}
					h2 := scaleHeap()
					_, _, keys := scaleTotals(e)
					if keys == 0 {
						b.Fatal("no keys")
					}
					perRule = float64(int64(h1-h0)) / float64(n)
					perKey = float64(int64(h2-h1)) / float64(keys)
					runtime.KeepAlive(e)
				}
				b.ReportMetric(perRule, "B/rule")
				b.ReportMetric(perKey, "B/key")
			})
		}
	}
}
