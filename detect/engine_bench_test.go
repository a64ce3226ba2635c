package detect

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/flow"
)

// engBenchBatch is a realistic mixed batch of n sampled packets (rate 1):
// many hosts and ports, TCP (handshakes, data, resets), UDP (DNS, NTP,
// QUIC, ephemeral), ICMP, one packet in five over IPv6. offs are the
// events' offsets in a 10ms batch.
func engBenchBatch(n int) (evs []Event, offs []int64) {
	r := rand.New(rand.NewPCG(42, 7))
	evs = make([]Event, n)
	offs = make([]int64, n)
	for i := range evs {
		ev := &evs[i]
		v6 := r.IntN(5) == 0
		if v6 {
			ev.IPVersion = 6
			ev.SrcAddr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(r.IntN(256)), byte(r.IntN(256))})
			ev.DstAddr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(r.IntN(64))})
		} else {
			ev.IPVersion = 4
			ev.SrcAddr = netip.AddrFrom4([4]byte{198, 51, byte(r.IntN(64)), byte(r.IntN(256))})
			ev.DstAddr = netip.AddrFrom4([4]byte{192, 168, byte(r.IntN(4)), byte(r.IntN(256))})
		}
		ev.Source, ev.Samples, ev.Rate = SourceSamples, 1, 1
		ev.SrcPort = uint16(1024 + r.IntN(60000))
		size := uint64(64 + r.IntN(1400))
		switch p := r.IntN(100); {
		case p < 60:
			ev.Proto = 6
			ev.DstPort = []uint16{443, 80, 22, 3389, 8080, 25}[r.IntN(6)]
			ev.TCPFlags = []uint8{flow.TCPSyn, flow.TCPSyn | flow.TCPAck, flow.TCPAck, flow.TCPAck | flow.TCPPsh, flow.TCPRst, flow.TCPFin | flow.TCPAck}[r.IntN(6)]
		case p < 85:
			ev.Proto = 17
			ev.DstPort = uint16(1024 + r.IntN(60000))
			ev.SrcPort = []uint16{53, 123, 443, 1900, ev.SrcPort}[r.IntN(5)]
		case p < 95:
			ev.Proto = 1
			if v6 {
				ev.Proto = 58
			}
			ev.DstPort, ev.SrcPort = 8<<8, 0
		default:
			ev.Proto = 47
			ev.SrcPort, ev.DstPort = 0, 0
		}
		ev.Packets, ev.Bytes = 1, size
		offs[i] = int64(i) * int64(10*time.Millisecond) / int64(n)
	}
	return evs, offs
}

// engBenchRun feeds b.N batches of 1024 events, 10ms of event time each
// (about 100,000 packets a second).
func engBenchRun(b *testing.B, set *RuleSet) {
	evs, offs := engBenchBatch(1024)
	alerts := 0
	e := NewEngine(set, EngineConfig{}, func(as []flow.Alert) { alerts += len(as) })
	b.ReportAllocs()
	n := int64(0)
	for b.Loop() {
		base := engT0 + n*int64(10*time.Millisecond)
		for j := range evs {
			evs[j].Time = base + offs[j]
		}
		e.Events(SourceSamples, evs)
		n++
	}
	b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(alerts)/float64(b.N), "alerts/op")
}

func BenchmarkEngineSamples(b *testing.B) {
	set, err := Load(Options{Builtin: true})
	if err != nil {
		b.Fatal(err)
	}
	engBenchRun(b, set)
}

func BenchmarkEngineRules(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			var src strings.Builder
			src.WriteString("rules:\n")
			for i := range n {
				fmt.Fprintf(&src, `  - name: syn_flood_%d
    filter: tcp && syn && !ack
    group_by: [dst_addr]
    window: 1s
    measures:
      pps: {rate: packets}
      sources: {distinct_once: src_addr}
    thresholds:
      pps: 5000
    min_samples: 20
`, i)
			}
			engBenchRun(b, engLoad(b, src.String(), Options{}))
		})
	}
}
