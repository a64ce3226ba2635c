package sampler

// The Go parser against its expectations and against the BPF parser: the
// case table, every cut of it, and seeded random frames, through
// ParseFrame and BPF_PROG_RUN, must give identical samples.

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

var (
	diffFrames = flag.Int("diff-frames", 5000, "random frames in TestDiffRandomFrames")
	diffSeed   = flag.Uint64("diff-seed", 0x7669_6769_6c21, "seed of TestDiffRandomFrames")
)

// goParse runs ParseFrame on a zeroed sample and records the outcome in it.
func goParse(frame []byte, decap Decap) flow.Sample {
	var s flow.Sample
	s.Outcome = ParseFrame(frame, decap, &s)
	return s
}

func TestParseFrameCases(t *testing.T) {
	for _, c := range wireCases(t) {
		if diff := cmp.Diff(goParse(c.frame, c.decap), c.want, sampleDiffOpts); diff != "" {
			t.Errorf("%s: frame % x\nsample (-got +want):\n%s", c.name, c.frame, diff)
		}
	}
}

// cutWant is what a parser must make of the first n bytes of a
// well-formed frame: before the end of the layer 2 headers, nothing;
// before the end of the IP packet, truncated with the layer 2 fields;
// after it (Ethernet padding), the whole frame's sample.
func cutWant(c wireCase, n int) flow.Sample {
	l2Len, l2, ipEnd := mk.l2(c.frame)
	switch {
	case n < l2Len:
		return mk.is(flow.Sample{}, flow.OutcomeTruncated)
	case ipEnd == 0:
		return c.want // not IP
	case n < ipEnd:
		return mk.is(l2, flow.OutcomeTruncated)
	}
	return c.want
}

func TestParseFrameCuts(t *testing.T) {
	for _, c := range wireCases(t) {
		if !c.whole {
			continue
		}
		for n := range len(c.frame) + 1 {
			if diff := cmp.Diff(goParse(c.frame[:n], c.decap), cutWant(c, n), sampleDiffOpts); diff != "" {
				t.Errorf("%s cut to %d bytes: frame % x\nsample (-got +want):\n%s", c.name, n, c.frame[:n], diff)
			}
		}
	}
}

// TestParseFrameInnerOffsetLimit: a tunnel whose inner packet starts 4096
// bytes or more into the frame is truncated (VIGIL_MAX_INNER_OFF). Go
// only: BPF_PROG_RUN does not take frames that long. The inner offset is
// always 2 mod 4, so 4094 and 4098 are the closest to the limit.
func TestParseFrameInnerOffsetLimit(t *testing.T) {
	const DstO = layers.IPProtocolIPv6Destination
	for _, tags := range []int{0, 1} {
		ls := []gopacket.SerializableLayer{mk.eth(layers.EthernetTypeIPv6)}
		if tags == 1 {
			ls = []gopacket.SerializableLayer{mk.eth(layers.EthernetTypeDot1Q), mk.dot1q(0, 9, layers.EthernetTypeIPv6)}
		}
		f := mk.build(t, append(ls, mk.ip6(DstO, fx.v6TunA, fx.v6TunB), mk.dstOpts(DstO, 250),
			mk.dstOpts(layers.IPProtocolUDP, 250), mk.udp(52000, 6081), mk.geneve(layers.EthernetTypeIPv4, 5),
			mk.ip4(layers.IPProtocolUDP, fx.v4A, fx.v4B), mk.udp(1, 2))...)
		inner := 14 + 4*tags + 40 + 2*2008 + 8 + 16
		if inner != len(f)-28 {
			t.Fatalf("inner packet at %d in a %d-byte frame", inner, len(f))
		}
		want := mk.is(mk.tunneled(mk.ports(mk.ip4Sample(17, fx.v4A, fx.v4B), 1, 2, 0), flow.FlagGENEVE, 5, fx.v6TunA, fx.v6TunB),
			flow.OutcomeTunnel)
		if inner >= 4096 {
			want = mk.is(mk.tunneled(flow.Sample{}, flow.FlagGENEVE, 5, fx.v6TunA, fx.v6TunB), flow.OutcomeTruncated)
		}
		if diff := cmp.Diff(goParse(f, fxDecapBoth), want, sampleDiffOpts); diff != "" {
			t.Errorf("inner packet at %d: sample (-got +want):\n%s", inner, diff)
		}
	}
}

// diffRigs holds one loaded program set per decap setting.
type diffRigs map[Decap]*runRig

func (d diffRigs) get(tb testing.TB, decap Decap) *runRig {
	if d[decap] == nil {
		d[decap] = newRunRig(tb, LoadOptions{SampleRate: 1, Decap: decap})
	}
	return d[decap]
}

// check runs frame through h's program and through ParseFrame and
// reports any difference. It returns the outcome.
func (d diffRigs) check(tb testing.TB, h runHook, frame []byte, decap Decap, what string) (flow.Outcome, bool) {
	tb.Helper()
	r := d.get(tb, decap)
	want := withCapture(goParse(frame, decap), h, frame, 1)
	ret, err := h.prog(r.p).Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		tb.Fatalf("%s, %s: BPF_PROG_RUN on %d bytes: %v", what, h.name, len(frame), err)
	}
	got := r.drain(tb)
	switch {
	case ret != h.verdict:
		tb.Errorf("%s, %s: verdict %#x, want %#x", what, h.name, ret, h.verdict)
	case len(got) != 1:
		tb.Errorf("%s, %s: %d records, want 1", what, h.name, len(got))
	default:
		diff := cmp.Diff(got[0], want, sampleDiffOpts)
		if diff == "" {
			return want.Outcome, true
		}
		tb.Errorf("%s, %s, decap %#x: frame % x\nBPF and Go samples differ (-bpf +go):\n%s", what, h.name, decap, frame, diff)
	}
	return want.Outcome, false
}

func TestDiffCasesAndCuts(t *testing.T) {
	testutil.RequirePrivileged(t)
	rigs := diffRigs{}
	hs := runHooks(t)
	for _, c := range wireCases(t) {
		for n := 14; n <= len(c.frame); n++ {
			for _, h := range hs {
				if (h.skb && skbRunRefuses(c.frame[:n])) || (n < len(c.frame) && h.dir == flow.Egress) {
					continue
				}
				rigs.check(t, h, c.frame[:n], c.decap, fmt.Sprintf("%s cut to %d", c.name, n))
			}
		}
	}
}

// TestDiffRandomFrames runs seeded random frames, built from random
// protocol stacks and then damaged, through both parsers.
func TestDiffRandomFrames(t *testing.T) {
	testutil.RequirePrivileged(t)
	n := *diffFrames
	g := frameGen{tb: t, r: rand.New(rand.NewPCG(*diffSeed, 1)), cases: wireCases(t)}
	rigs := diffRigs{}
	hs := runHooks(t)
	before := map[Decap]Stats{}
	for _, decap := range []Decap{0, DecapVXLAN, DecapGENEVE, fxDecapBoth} {
		before[decap] = rigs.get(t, decap).stats(t)
	}
	var seen [flow.NumOutcomes]int
	counted := map[Decap]*[flow.NumOutcomes]uint64{}
	fails := 0
	for i := range n {
		frame, decap := g.frame()
		h := hs[0]
		if i%5 == 4 && !skbRunRefuses(frame) {
			h = hs[1+i%2]
		}
		out, ok := rigs.check(t, h, frame, decap, fmt.Sprintf("random frame %d", i))
		seen[out]++
		if counted[decap] == nil {
			counted[decap] = new([flow.NumOutcomes]uint64)
		}
		counted[decap][out]++
		if !ok {
			if fails++; fails >= 10 {
				t.Fatal("too many differences")
			}
		}
	}
	t.Logf("outcomes of %d random frames (seed %#x): %v", n, *diffSeed, seen)
	for o, k := range seen {
		if k < n/100 {
			t.Errorf("only %d random frames had outcome %v: the generator misses it", k, flow.Outcome(o))
		}
	}
	for decap, c := range counted {
		got := statsIncrement(rigs.get(t, decap).stats(t), before[decap])
		if got.Outcomes != *c || got.Samples != sumOutcomes(c) {
			t.Errorf("decap %#x: counters %+v, want outcomes %v", decap, got, *c)
		}
	}
}

func sumOutcomes(c *[flow.NumOutcomes]uint64) uint64 {
	var n uint64
	for _, v := range c {
		n += v
	}
	return n
}

// frameGen makes random frames: a random protocol stack (or a case from
// the table), then random damage.
type frameGen struct {
	tb    testing.TB
	r     *rand.Rand
	cases []wireCase
}

func (g *frameGen) frame() ([]byte, Decap) {
	decap := []Decap{0, DecapVXLAN, DecapGENEVE, fxDecapBoth, fxDecapBoth}[g.r.IntN(5)]
	var f []byte
	if g.r.IntN(4) == 0 {
		f = append([]byte(nil), g.cases[g.r.IntN(len(g.cases))].frame...)
	} else {
		f = mk.build(g.tb, g.stack(true, 1)...)
	}
	hdr := min(len(f), 14+4*2+60+40+16+8+60)
	if g.r.IntN(2) == 0 { // byte flips in the headers
		for range 1 + g.r.IntN(4) {
			f[g.r.IntN(hdr)] = byte(g.r.Uint32())
		}
	}
	if g.r.IntN(4) == 0 { // a nasty 16-bit value, where length fields live
		v := []uint16{0, 1, 7, 8, 19, 20, 39, 40, 0xffff, uint16(g.r.Uint32())}[g.r.IntN(10)]
		off := g.r.IntN(hdr - 1)
		f[off], f[off+1] = byte(v>>8), byte(v)
	}
	if g.r.IntN(3) == 0 { // truncation
		f = f[:14+g.r.IntN(len(f)-13)]
	}
	return f, decap
}

func (g *frameGen) pick(n int) int { return g.r.IntN(n) }

// stack is a random Ethernet frame's layers; depth bounds tunnel nesting.
func (g *frameGen) stack(ethernet bool, depth int) []gopacket.SerializableLayer {
	var ls []gopacket.SerializableLayer
	l3 := []layers.EthernetType{layers.EthernetTypeIPv4, layers.EthernetTypeIPv6, layers.EthernetTypeIPv4,
		layers.EthernetTypeIPv6, layers.EthernetTypeIPv4, layers.EthernetTypeIPv6, layers.EthernetTypeIPv4,
		layers.EthernetTypeIPv6, layers.EthernetTypeIPv4, layers.EthernetTypeARP}[g.pick(10)]
	if ethernet {
		tpids := []layers.EthernetType{layers.EthernetTypeDot1Q, layers.EthernetTypeQinQ}
		tags := []int{0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3}[g.pick(12)]
		next := l3
		if tags > 0 {
			next = tpids[g.pick(2)]
		}
		ls = append(ls, mk.eth(next))
		for i := range tags {
			next = l3
			if i < tags-1 {
				next = tpids[g.pick(2)]
			}
			ls = append(ls, mk.dot1q(uint8(g.pick(8)), uint16(g.pick(4096)), next))
		}
	}
	l4, tail := g.transport(depth)
	switch l3 {
	case layers.EthernetTypeIPv4:
		ip := mk.ip4(l4, fx.v4A, fx.v4B)
		for range []int{0, 0, 1, 3, 10}[g.pick(5)] {
			ip.Options = append(ip.Options, layers.IPv4Option{OptionType: 1})
		}
		ip.Flags = layers.IPv4Flag(g.pick(4))
		if g.pick(6) == 0 {
			ip.FragOffset = uint16(g.pick(0x2000))
		}
		ls = append(ls, ip)
	case layers.EthernetTypeIPv6:
		ls = append(ls, g.ipv6(l4)...)
	default:
		return append(ls, gopacket.Payload(mk.arp(g.tb)[14:]))
	}
	return append(ls, tail...)
}

// ipv6 is an IPv6 header and a random chain of extension headers.
func (g *frameGen) ipv6(l4 layers.IPProtocol) []gopacket.SerializableLayer {
	kinds := []layers.IPProtocol{layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing,
		layers.IPProtocolIPv6Destination, layers.IPProtocolIPv6Fragment}
	chain := make([]layers.IPProtocol, []int{0, 0, 1, 2, 7, 8, 9, 10}[g.pick(8)])
	for i := range chain {
		chain[i] = kinds[g.pick(len(kinds))]
	}
	next := func(i int) layers.IPProtocol {
		if i+1 < len(chain) {
			return chain[i+1]
		}
		return l4
	}
	first := l4
	if len(chain) > 0 {
		first = chain[0]
	}
	ls := []gopacket.SerializableLayer{mk.ip6(first, fx.v6A, fx.v6B)}
	for i, k := range chain {
		switch k {
		case layers.IPProtocolIPv6HopByHop:
			ls = append(ls, mk.hopByHop(next(i)))
		case layers.IPProtocolIPv6Routing:
			ls = append(ls, mk.routing(next(i)))
		case layers.IPProtocolIPv6Destination:
			ls = append(ls, mk.dstOpts(next(i), g.pick(3)))
		default:
			off := uint16(0)
			if g.pick(3) == 0 {
				off = uint16(g.pick(0x2000))
			}
			ls = append(ls, mk.frag6(next(i), off, g.pick(2) == 0, g.r.Uint32()))
		}
	}
	return ls
}

// transport is a random IP protocol and the layers after the IP headers.
func (g *frameGen) transport(depth int) (layers.IPProtocol, []gopacket.SerializableLayer) {
	pl := mk.payload(g.pick(40))
	port := func() uint16 { return uint16(g.r.Uint32()) }
	switch g.pick(10) {
	case 0:
		t := mk.tcp(port(), port(), uint8(g.r.Uint32()))
		for range g.pick(3) {
			t.Options = append(t.Options, layers.TCPOption{OptionType: layers.TCPOptionKindNop})
		}
		return layers.IPProtocolTCP, []gopacket.SerializableLayer{t, pl}
	case 1:
		return layers.IPProtocolUDP, []gopacket.SerializableLayer{mk.udp(port(), port()), pl}
	case 2:
		return layers.IPProtocolSCTP, []gopacket.SerializableLayer{mk.sctp(port(), port()), pl}
	case 3:
		return layers.IPProtocolICMPv4, []gopacket.SerializableLayer{mk.icmp4(uint8(g.pick(256)), uint8(g.pick(256))), pl}
	case 4:
		return layers.IPProtocolICMPv6, []gopacket.SerializableLayer{mk.icmp6(uint8(g.pick(256)), uint8(g.pick(256))), pl}
	case 5:
		return layers.IPProtocol(g.pick(256)), []gopacket.SerializableLayer{pl}
	}
	if depth == 0 { // no deeper tunnels: UDP to a tunnel port, random payload
		return layers.IPProtocolUDP, []gopacket.SerializableLayer{mk.udp(port(), []uint16{4789, 6081}[g.pick(2)]), pl}
	}
	ls := []gopacket.SerializableLayer{nil}
	if g.pick(2) == 0 {
		ls[0] = mk.udp(port(), 4789)
		vx := mk.vxlan(uint32(g.pick(1 << 24)))
		vx.ValidIDFlag = g.pick(8) != 0
		ls = append(ls, vx)
		ls = append(ls, g.stack(true, depth-1)...)
		return layers.IPProtocolUDP, ls
	}
	ls[0] = mk.udp(port(), 6081)
	ptype := []layers.EthernetType{layers.EthernetTypeTransparentEthernetBridging, layers.EthernetTypeIPv4,
		layers.EthernetTypeIPv6, 0x88cc}[g.pick(4)]
	gn := mk.geneve(ptype, uint32(g.pick(1<<24)))
	gn.Options = gn.Options[:g.pick(2)]
	ls = append(ls, gn)
	// With an IP protocol type the inner stack's IP version may not match.
	inner := g.stack(ptype == layers.EthernetTypeTransparentEthernetBridging, depth-1)
	return layers.IPProtocolUDP, append(ls, inner...)
}
