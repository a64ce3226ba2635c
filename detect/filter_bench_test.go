package detect

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/vigil-sensor/vigil/flow"
)

// Filters against expr's VM: a differential test on random events, and
// benchmarks with the VM as the baseline. The baseline runs the same
// expressions over a struct env filled once, outside the loop: it
// measures evaluation only, which favours the VM (a real pipeline would
// fill the env per event).

// TestFilterAgainstVM runs the expressions expr's VM can run on random
// events through both and compares the results.
func TestFilterAgainstVM(t *testing.T) {
	srcs := []string{
		`tcp && syn && !ack`, `syn || fin || rst`, `!(psh && ack) && tcp_flags > 3`,
		`dst_port in [22, 80, 443, 3389, 65535]`, `src_port not in [0, 1, 2, 1024]`,
		`dst_port in 1000..2000`, `src_port not in 10..60000`,
		`bytes / packets > 700`, `packets * 500 - bytes < -5 or samples % 3 == 1`,
		`duration > 1.5 and bytes / duration < 1e6`, `rate + ifindex >= vni`,
		`-src_port + dst_port > 0`, `proto in [1, 58] or ip_version == 6`,
		`direction == "egress" and source != "flows"`, `source in ["flows", "alerts"]`,
		`rule in ["a", "b"] or state == "end"`, `severity * 2 > 5`,
		`fragment != non_first_fragment`, `udp == fragment`, `1 < dst_port < 1024`,
		`src_addr == "10.0.0.1" or dst_addr != "2001:db8::1"`,
		`src_addr in ["10.0.0.1", "10.0.0.2"]`,
		`duration in 1..2`, `duration in [1, 2.5]`, `dst_port in [80, 443.0]`,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, src := range srcs {
		f, err := CompileFilter(src, nil)
		if err != nil {
			t.Fatalf("CompileFilter(%q): %v", src, err)
		}
		prog, err := expr.Compile(src, expr.Env(fltVMEnv(&Event{})), expr.AsBool())
		if err != nil {
			t.Fatalf("expr.Compile(%q): %v", src, err)
		}
		matched := 0
		for range 2000 {
			e := fltRandomEvent(rng)
			want, err := expr.Run(prog, fltVMEnv(&e))
			if err != nil {
				t.Fatalf("expr.Run(%q): %v", src, err)
			}
			got := f(&e)
			if got != want.(bool) {
				t.Fatalf("%q on %+v: got %v, expr says %v", src, e, got, want)
			}
			if got {
				matched++
			}
		}
		if matched == 0 || matched == 2000 {
			t.Errorf("%q: %d of 2000 random events match: a weak test", src, matched)
		}
	}
}

func fltRandomEvent(rng *rand.Rand) Event {
	addrs := []string{"10.0.0.1", "10.0.0.2", "192.168.0.1", "2001:db8::1", "2001:db8::2"}
	pick := func(n int) int { return rng.IntN(n) }
	port := func() uint16 {
		if pick(2) == 0 {
			return []uint16{0, 1, 22, 80, 443, 1024, 1500, 3389, 65535}[pick(9)]
		}
		return uint16(rng.Uint32())
	}
	return Event{
		Source:    Source(1 + pick(3)),
		SrcAddr:   netip.MustParseAddr(addrs[pick(len(addrs))]),
		DstAddr:   netip.MustParseAddr(addrs[pick(len(addrs))]),
		SrcPort:   port(),
		DstPort:   port(),
		Proto:     []uint8{1, 6, 17, 58}[pick(4)],
		TCPFlags:  uint8(pick(32)),
		IPVersion: []uint8{4, 6}[pick(2)],
		Direction: flow.Direction(pick(2)),
		Ifindex:   uint32(pick(10)),
		VNI:       uint32(pick(10)),
		Fragment:  pick(2) == 0,
		NonFirst:  pick(2) == 0,
		Packets:   uint64(1 + pick(1000)),
		Bytes:     uint64(pick(1_000_000)),
		Samples:   uint64(pick(100)),
		Rate:      uint32(pick(10)),
		Duration:  []int64{int64(pick(3_000_000_000)), int64(pick(4)) * 500_000_000}[pick(2)],
		Rule:      []string{"", "a", "b", "c"}[pick(4)],
		Severity:  flow.Severity(pick(6)),
		State:     flow.AlertState(pick(4)),
	}
}

// fltVMEnv is an event as expr's VM sees it.
func fltVMEnv(e *Event) map[string]any {
	return map[string]any{
		"src_addr": e.SrcAddr.String(), "dst_addr": e.DstAddr.String(),
		"src_port": int(e.SrcPort), "dst_port": int(e.DstPort), "proto": int(e.Proto),
		"tcp_flags": int(e.TCPFlags), "ip_version": int(e.IPVersion), "ifindex": int(e.Ifindex),
		"vni": int(e.VNI), "packets": int(e.Packets), "bytes": int(e.Bytes),
		"samples": int(e.Samples), "rate": int(e.Rate), "severity": int(e.Severity),
		"duration": float64(e.Duration) / 1e9,
		"syn":      e.TCPFlags&flow.TCPSyn != 0, "ack": e.TCPFlags&flow.TCPAck != 0,
		"fin": e.TCPFlags&flow.TCPFin != 0, "rst": e.TCPFlags&flow.TCPRst != 0,
		"psh": e.TCPFlags&flow.TCPPsh != 0, "tcp": e.Proto == 6, "udp": e.Proto == 17,
		"icmp": e.Proto == 1 || e.Proto == 58, "fragment": e.Fragment, "non_first_fragment": e.NonFirst,
		"direction": e.Direction.String(), "source": e.Source.String(), "rule": e.Rule,
		"state": e.State.String(),
	}
}

var fltBenchFilters = []struct{ name, src string }{
	{"flags", `tcp && syn && !ack`},
	{"ports", `dst_port in [22, 53, 80, 123, 443, 3389, 8080]`},
	{"cidr3", `in_cidr(dst_addr, "10.0.0.0/8", "192.168.0.0/16", "fc00::/7")`},
	{"combined", `tcp && syn && !ack && dst_port not in 1024..65535 && in_cidr(dst_addr, "10.0.0.0/8", "192.168.0.0/16")`},
}

// fltVMEvent is an event as a struct env for expr's VM.
type fltVMEvent struct {
	SrcPort int        `expr:"src_port"`
	DstPort int        `expr:"dst_port"`
	Proto   int        `expr:"proto"`
	DstAddr netip.Addr `expr:"dst_addr"`
	Syn     bool       `expr:"syn"`
	Ack     bool       `expr:"ack"`
	TCP     bool       `expr:"tcp"`
	UDP     bool       `expr:"udp"`
}

func fltBenchEvent() Event {
	return Event{
		Source: SourceSamples, SrcAddr: netip.MustParseAddr("203.0.113.7"),
		DstAddr: netip.MustParseAddr("192.168.1.10"), SrcPort: 40000, DstPort: 443, Proto: 6,
		TCPFlags: flow.TCPSyn, IPVersion: 4, Packets: 1000, Bytes: 64000, Samples: 1, Rate: 1000,
	}
}

func BenchmarkFilter(b *testing.B) {
	e := fltBenchEvent()
	for _, bf := range fltBenchFilters {
		f, err := CompileFilter(bf.src, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bf.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if f(&e) {
					n++
				}
			}
			fltSink = n
		})
	}
}

func fltVMProgram(b *testing.B, src string) *vm.Program {
	prefixes := map[string]netip.Prefix{}
	for _, s := range []string{"10.0.0.0/8", "192.168.0.0/16", "fc00::/7"} {
		prefixes[s] = netip.MustParsePrefix(s)
	}
	inCIDR := func(params ...any) (any, error) {
		a := params[0].(netip.Addr)
		for _, p := range params[1:] {
			if prefixes[p.(string)].Contains(a) {
				return true, nil
			}
		}
		return false, nil
	}
	prog, err := expr.Compile(src, expr.Env(&fltVMEvent{}), expr.AsBool(),
		expr.Function("in_cidr", inCIDR, new(func(netip.Addr, ...string) bool)))
	if err != nil {
		b.Fatal(err)
	}
	return prog
}

func BenchmarkFilterExprVM(b *testing.B) {
	e := fltBenchEvent()
	env := &fltVMEvent{
		SrcPort: int(e.SrcPort), DstPort: int(e.DstPort), Proto: int(e.Proto), DstAddr: e.DstAddr,
		Syn: e.TCPFlags&flow.TCPSyn != 0, Ack: e.TCPFlags&flow.TCPAck != 0, TCP: e.Proto == 6, UDP: e.Proto == 17,
	}
	for _, bf := range fltBenchFilters {
		prog := fltVMProgram(b, bf.src)
		f, err := CompileFilter(bf.src, nil)
		if err != nil {
			b.Fatal(err)
		}
		if out, err := expr.Run(prog, env); err != nil || out.(bool) != f(&e) {
			b.Fatalf("%s: expr says %v, %v; the filter %v", bf.name, out, err, f(&e))
		}
		b.Run(bf.name+"/run", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out, _ := expr.Run(prog, env)
				fltSink = out
			}
		})
		b.Run(bf.name+"/reused-vm", func(b *testing.B) {
			b.ReportAllocs()
			var machine vm.VM
			for b.Loop() {
				out, _ := machine.Run(prog, env)
				fltSink = out
			}
		})
	}
}

var fltSink any

const fltBenchCond = `pps > 1000 and bps / pps < 100 or max(pps, bps) > 1e9`

func BenchmarkCondition(b *testing.B) {
	c, err := CompileCondition(fltBenchCond, []string{"pps", "bps"})
	if err != nil {
		b.Fatal(err)
	}
	vals := []float64{2000, 100000}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if c(vals) {
			n++
		}
	}
	fltSink = n
}

func BenchmarkConditionExprVM(b *testing.B) {
	type env struct {
		PPS float64 `expr:"pps"`
		BPS float64 `expr:"bps"`
	}
	prog, err := expr.Compile(fltBenchCond, expr.Env(&env{}), expr.AsBool())
	if err != nil {
		b.Fatal(err)
	}
	e := &env{PPS: 2000, BPS: 100000}
	b.ReportAllocs()
	var machine vm.VM
	for b.Loop() {
		out, _ := machine.Run(prog, e)
		fltSink = out
	}
}
