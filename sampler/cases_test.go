package sampler

// The parser case table, shared by the BPF_PROG_RUN tests, the
// differential test and the fuzz seeds.

import (
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vigil-sensor/vigil/flow"
)

// wireCase is a frame and the sample both parsers must make of it. want
// holds the packet fields and Outcome; the capture fields (WireLen,
// SamplingRate, Segments, Direction, Ifindex, Head) are the test's.
type wireCase struct {
	name  string
	frame []byte
	decap Decap
	want  flow.Sample
	// whole marks a well-formed frame: cut anywhere before the end of
	// its outer IP packet it must parse as truncated (TestWireCuts).
	whole bool
}

const fxDecapBoth = DecapVXLAN | DecapGENEVE

func wireCases(tb testing.TB) []wireCase {
	tb.Helper()
	b := func(ls ...gopacket.SerializableLayer) []byte { return mk.build(tb, ls...) }
	const (
		TCP, UDP, ICMP, SCTP = layers.IPProtocolTCP, layers.IPProtocolUDP, layers.IPProtocolICMPv4, layers.IPProtocolSCTP
		ICMP6, Frag6, DstO   = layers.IPProtocolICMPv6, layers.IPProtocolIPv6Fragment, layers.IPProtocolIPv6Destination
		HBH, Rt              = layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing
		E4, E6, EQ, EAD, TEB = layers.EthernetTypeIPv4, layers.EthernetTypeIPv6, layers.EthernetTypeDot1Q, layers.EthernetTypeQinQ,
			layers.EthernetTypeTransparentEthernetBridging
		MF, DF           = layers.IPv4MoreFragments, layers.IPv4DontFragment
		fF, fN, fM       = flow.FlagFragment, flow.FlagNonFirstFragment, flow.FlagMoreFragments
		fVX, fGN         = flow.FlagVXLAN, flow.FlagGENEVE
		ok, notIP, trunc = flow.OutcomeOK, flow.OutcomeNotIP, flow.OutcomeTruncated
		bad, frg, tun    = flow.OutcomeBadHeader, flow.OutcomeFragment, flow.OutcomeTunnel
	)
	a, is, ports, frag, tunneled := fx, mk.is, mk.ports, mk.frag, mk.tunneled
	t4, u4 := mk.ip4Sample(6, a.v4A, a.v4B), mk.ip4Sample(17, a.v4A, a.v4B)
	t6, u6 := mk.ip6Sample(6, a.v6A, a.v6B), mk.ip6Sample(17, a.v6A, a.v6B)
	ic4, sc4 := mk.ip4Sample(1, a.v4A, a.v4B), mk.ip4Sample(132, a.v4A, a.v4B)
	e4, e6 := mk.eth(E4), mk.eth(E6)
	ip4AB, ip6AB := func(p layers.IPProtocol) *layers.IPv4 { return mk.ip4(p, a.v4A, a.v4B) },
		func(p layers.IPProtocol) *layers.IPv6 { return mk.ip6(p, a.v6A, a.v6B) }
	tun4 := func() *layers.IPv4 { return mk.ip4(UDP, a.v4TunA, a.v4TunB) }

	ipOpt := ip4AB(UDP) // router alert: IHL 6
	ipOpt.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}}
	ipMaxOpt := ip4AB(TCP) // 40 NOPs: IHL 15
	for range 40 {
		ipMaxOpt.Options = append(ipMaxOpt.Options, layers.IPv4Option{OptionType: 1})
	}
	tcpOpt := mk.tcp(2000, 8080, fxSYN) // MSS: data offset 6
	tcpOpt.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}}
	allFlags := mk.tcp(1, 65535, 0xff)
	allFlags.NS = true // bit 0 of byte 12, outside the flags byte
	chain := func(n int, last layers.IPProtocol, tail ...gopacket.SerializableLayer) []byte {
		ls := []gopacket.SerializableLayer{e6, ip6AB(DstO)}
		for i := range n {
			nh := DstO
			if i == n-1 {
				nh = last
			}
			ls = append(ls, mk.dstOpts(nh, 0))
		}
		return b(append(ls, tail...)...)
	}
	vxNoI := mk.vxlan(fxVNI)
	vxNoI.ValidIDFlag = false
	tunFrag := mk.ip4f(UDP, a.v4TunA, a.v4TunB, MF, 0)

	tcp4, udp4, tcp6, vx4, gnIP := mk.tcp4(tb), mk.udp4(tb), mk.tcp6(tb), mk.vxlan4(tb), mk.geneveIP(tb)
	icmp := b(e4, ip4AB(ICMP), mk.icmp4(3, 4), mk.payload(8))
	sctp4 := b(e4, ip4AB(SCTP), mk.sctp(2905, 2944), mk.payload(16))
	gnEth := b(e4, tun4(), mk.udp(52001, 6081), mk.geneve(TEB, 7), e4, ip4AB(ICMP), mk.icmp4(0, 0), mk.payload(4))
	hbh6 := b(e6, ip6AB(HBH), mk.hopByHop(UDP), mk.udp(546, 547), mk.payload(12))
	frag6 := b(e6, ip6AB(Frag6), mk.frag6(UDP, 0, true, 0x11223344), mk.udp(33434, 33435), mk.payload(40))
	vxShort := b(e4, tun4(), mk.udp(51000, 4789), mk.payload(4))
	vxInner := b(e4, tun4(), mk.udp(51000, 4789), mk.vxlan(fxVNI), mk.payload(10))
	gn4 := b(e4, tun4(), mk.udp(52000, 6081), mk.geneve(E4, 9), ip4AB(UDP), mk.udp(1, 2), mk.payload(12))
	const gn4Geneve, gn4Inner = fxOffL4 + 8, fxOffL4 + 8 + 16 // offsets in gn4

	vxOuter := is(ports(mk.ip4Sample(17, a.v4TunA, a.v4TunB), 51000, 4789, 0), ok)
	gnOuter := is(ports(mk.ip6Sample(17, a.v6TunA, a.v6TunB), 52000, 6081, 0), ok)
	gnOff := fxOffL46 + 8 // the GENEVE header in gnIP

	return []wireCase{
		// IPv4 transports.
		{"ipv4/tcp", tcp4, 0, is(ports(t4, 40000, 443, fxSYN|fxECE|fxCWR), ok), true},
		{"ipv4/tcp all flags", b(e4, ip4AB(TCP), allFlags), 0, is(ports(t4, 1, 65535, 0xff), ok), true},
		{"ipv4/tcp options", b(e4, ip4AB(TCP), tcpOpt), 0, is(ports(t4, 2000, 8080, fxSYN), ok), true},
		{"ipv4/udp", udp4, 0, is(ports(u4, 5353, 53, 0), ok), true},
		{"ipv4/icmp unreachable", icmp, 0, is(ports(ic4, 0, 3<<8|4, 0), ok), true},
		{"ipv4/icmp echo", b(e4, ip4AB(ICMP), mk.icmp4(8, 0)), 0, is(ports(ic4, 0, 0x0800, 0), ok), true},
		{"ipv4/sctp", sctp4, 0, is(ports(sc4, 2905, 2944, 0), ok), true},
		{"ipv4/gre no ports", b(e4, ip4AB(layers.IPProtocolGRE), mk.payload(24)), 0, is(mk.ip4Sample(47, a.v4A, a.v4B), ok), true},
		{"ipv4/options ihl 6", b(e4, ipOpt, mk.udp(7, 9), mk.payload(4)), 0, is(ports(u4, 7, 9, 0), ok), true},
		{"ipv4/options ihl 15", b(e4, ipMaxOpt, mk.tcp(8, 10, fxFIN|fxACK)), 0, is(ports(t4, 8, 10, fxFIN|fxACK), ok), true},
		{"ipv4/dont fragment", b(e4, mk.ip4f(UDP, a.v4A, a.v4B, DF, 0), mk.udp(1, 2)), 0, is(ports(u4, 1, 2, 0), ok), true},
		{"ipv4/first fragment", b(e4, mk.ip4f(UDP, a.v4A, a.v4B, MF, 0), mk.udp(500, 4500), mk.payload(64)), 0,
			is(frag(ports(u4, 500, 4500, 0), fF|fM, fxIPID, 0), ok), true},
		{"ipv4/middle fragment", b(e4, mk.ip4f(UDP, a.v4A, a.v4B, MF, 185), mk.payload(64)), 0,
			is(frag(u4, fF|fN|fM, fxIPID, 1480), frg), true},
		{"ipv4/last fragment", b(e4, mk.ip4f(TCP, a.v4A, a.v4B, 0, 370), mk.payload(30)), 0, is(frag(t4, fF|fN, fxIPID, 2960), frg), true},
		{"ipv4/max fragment offset", b(e4, mk.ip4f(TCP, a.v4A, a.v4B, DF, 0x1fff), mk.payload(8)), 0,
			is(frag(t4, fF|fN, fxIPID, 0xfff8), frg), true},

		// VLAN tags.
		{"vlan/802.1Q", b(mk.eth(EQ), mk.dot1q(5, 100, E4), ip4AB(UDP), mk.udp(68, 67)), 0, is(mk.vlans(ports(u4, 68, 67, 0), 100, 0), ok), true},
		{"vlan/802.1ad+802.1Q", b(mk.eth(EAD), mk.dot1q(7, 4095, EQ), mk.dot1q(1, 42, E6), ip6AB(TCP), mk.tcp(3, 4, fxRST)), 0,
			is(mk.vlans(ports(t6, 3, 4, fxRST), 4095, 42), ok), true},
		{"vlan/three tags", b(mk.eth(EQ), mk.dot1q(0, 10, EQ), mk.dot1q(0, 20, EQ), mk.dot1q(0, 30, E4), ip4AB(UDP), mk.udp(1, 2)), 0,
			is(mk.vlans(mk.l2Sample(0x8100), 10, 20), notIP), false},

		// IPv6 and its extension headers.
		{"ipv6/tcp", tcp6, 0, is(ports(t6, 40001, 22, fxACK|fxPSH), ok), true},
		{"ipv6/udp", b(e6, ip6AB(UDP), mk.udp(5000, 5001), mk.payload(3)), 0, is(ports(u6, 5000, 5001, 0), ok), true},
		{"ipv6/icmpv6 echo", b(e6, ip6AB(ICMP6), mk.icmp6(128, 0), mk.payload(8)), 0,
			is(ports(mk.ip6Sample(58, a.v6A, a.v6B), 0, 128<<8, 0), ok), true},
		{"ipv6/icmpv6 unreachable", b(e6, ip6AB(ICMP6), mk.icmp6(1, 4), mk.payload(8)), 0,
			is(ports(mk.ip6Sample(58, a.v6A, a.v6B), 0, 1<<8|4, 0), ok), true},
		{"ipv6/sctp", b(e6, ip6AB(SCTP), mk.sctp(36412, 36412)), 0, is(ports(mk.ip6Sample(132, a.v6A, a.v6B), 36412, 36412, 0), ok), true},
		{"ipv6/no next header", b(e6, ip6AB(layers.IPProtocolNoNextHeader), mk.payload(8)), 0, is(mk.ip6Sample(59, a.v6A, a.v6B), ok), true},
		{"ipv6/hop-by-hop", hbh6, 0, is(ports(u6, 546, 547, 0), ok), true},
		{"ipv6/routing", b(e6, ip6AB(Rt), mk.routing(TCP), mk.tcp(5, 6, fxSYN|fxACK)), 0, is(ports(t6, 5, 6, fxSYN|fxACK), ok), true},
		{"ipv6/destination options", b(e6, ip6AB(DstO), mk.dstOpts(UDP, 1), mk.udp(9, 10)), 0, is(ports(u6, 9, 10, 0), ok), true},
		{"ipv6/hbh+routing+dstopts+atomic fragment", b(e6, ip6AB(HBH), mk.hopByHop(Rt), mk.routing(DstO), mk.dstOpts(Frag6, 2),
			mk.frag6(TCP, 0, false, 0xcafe), mk.tcp(11, 12, fxURG)), 0, is(frag(ports(t6, 11, 12, fxURG), fF, 0xcafe, 0), ok), true},
		{"ipv6/first fragment", frag6, 0, is(frag(ports(u6, 33434, 33435, 0), fF|fM, 0x11223344, 0), ok), true},
		{"ipv6/non-first fragment", b(e6, ip6AB(Frag6), mk.frag6(UDP, 100, true, 0xfeedface), mk.payload(40)), 0,
			is(frag(u6, fF|fN|fM, 0xfeedface, 800), frg), true},
		{"ipv6/last fragment after hop-by-hop", b(e6, ip6AB(HBH), mk.hopByHop(Frag6), mk.frag6(TCP, 8191, false, 1), mk.payload(16)), 0,
			is(frag(t6, fF|fN, 1, 0xfff8), frg), true},
		{"ipv6/8 extension headers", chain(8, TCP, mk.tcp(13, 14, fxSYN)), 0, is(ports(t6, 13, 14, fxSYN), ok), true},
		{"ipv6/9 extension headers", chain(9, TCP, mk.tcp(13, 14, fxSYN)), 0, is(mk.ip6Sample(60, a.v6A, a.v6B), bad), true},
		{"ipv6/7 extension headers then non-first fragment", chain(7, Frag6, mk.frag6(UDP, 1, false, 77), mk.payload(8)), 0,
			is(frag(u6, fF|fN, 77, 8), frg), true},

		// Not IP.
		{"arp", mk.arp(tb), 0, is(mk.l2Sample(0x0806), notIP), true},
		{"lldp", b(mk.eth(layers.EthernetTypeLinkLayerDiscovery), mk.payload(40)), 0, is(mk.l2Sample(0x88cc), notIP), true},

		// Tunnels.
		{"vxlan/inner ipv4 tcp", vx4, fxDecapBoth, is(tunneled(ports(t4, 1234, 80, fxSYN), fVX, fxVNI, a.v4TunA, a.v4TunB), tun), true},
		{"vxlan/ipv6 outer, inner vlan ipv6 udp", b(e6, mk.ip6(UDP, a.v6TunA, a.v6TunB), mk.udp(51001, 4789), mk.vxlan(1),
			mk.eth(EQ), mk.dot1q(2, 77, E6), ip6AB(UDP), mk.udp(4000, 4001), mk.payload(2)), fxDecapBoth,
			is(tunneled(mk.vlans(ports(u6, 4000, 4001, 0), 77, 0), fVX, 1, a.v6TunA, a.v6TunB), tun), true},
		{"vxlan/decap off", vx4, 0, vxOuter, true},
		{"vxlan/only geneve decap", vx4, DecapGENEVE, vxOuter, true},
		{"vxlan/I flag clear", b(e4, tun4(), mk.udp(51000, 4789), vxNoI, e4, ip4AB(TCP), mk.tcp(1, 2, 0)), fxDecapBoth, vxOuter, true},
		{"vxlan/outer vlan and first fragment", b(mk.eth(EQ), mk.dot1q(0, 10, E4), tunFrag, mk.udp(51000, 4789), mk.vxlan(fxVNI),
			e4, ip4AB(TCP), mk.tcp(1234, 80, fxSYN)), fxDecapBoth,
			is(tunneled(ports(t4, 1234, 80, fxSYN), fVX, fxVNI, a.v4TunA, a.v4TunB), tun), true},
		{"vxlan/inner arp", b(e4, tun4(), mk.udp(51000, 4789), mk.vxlan(fxVNI), gopacket.Payload(mk.arp(tb))), fxDecapBoth,
			is(tunneled(mk.l2Sample(0x0806), fVX, fxVNI, a.v4TunA, a.v4TunB), notIP), true},
		{"vxlan/inner non-first fragment", b(e4, tun4(), mk.udp(51000, 4789), mk.vxlan(fxVNI), e4,
			mk.ip4f(UDP, a.v4A, a.v4B, 0, 2), mk.payload(16)), fxDecapBoth,
			is(tunneled(frag(u4, fF|fN, fxIPID, 16), fVX, fxVNI, a.v4TunA, a.v4TunB), frg), true},
		{"vxlan/in vxlan: inner not decapsulated", b(e4, tun4(), mk.udp(51000, 4789), mk.vxlan(fxVNI),
			e4, ip4AB(UDP), mk.udp(51002, 4789), mk.vxlan(2), mk.payload(20)), fxDecapBoth,
			is(tunneled(ports(u4, 51002, 4789, 0), fVX, fxVNI, a.v4TunA, a.v4TunB), tun), true},
		{"geneve/inner ethernet ipv4 icmp", gnEth, fxDecapBoth, is(tunneled(ports(ic4, 0, 0, 0), fGN, 7, a.v4TunA, a.v4TunB), tun), true},
		{"geneve/inner ip 0x0800", gnIP, fxDecapBoth, is(tunneled(ports(u4, 123, 123, 0), fGN, fxVNI, a.v6TunA, a.v6TunB), tun), true},
		{"geneve/inner ipv6 0x86dd", b(e4, tun4(), mk.udp(52000, 6081), mk.geneve(E6, 0xffffff), ip6AB(TCP), mk.tcp(80, 81, fxFIN)),
			DecapGENEVE, is(tunneled(ports(t6, 80, 81, fxFIN), fGN, 0xffffff, a.v4TunA, a.v4TunB), tun), true},
		{"geneve/decap off", gnIP, 0, gnOuter, true},
		{"geneve/inner ethernet, decap off", gnEth, 0, is(ports(mk.ip4Sample(17, a.v4TunA, a.v4TunB), 52001, 6081, 0), ok), true},
		{"geneve/only vxlan decap", gnIP, DecapVXLAN, gnOuter, true},
		{"geneve/version 1", mk.patched(gnIP, gnOff, 0x40|gnIP[gnOff]), fxDecapBoth, gnOuter, true},
		{"geneve/unknown protocol type", mk.put16(gnIP, gnOff+2, 0x88cc), fxDecapBoth, gnOuter, true},

		// Malformed tunnels.
		{"vxlan/header beyond ip length", vxShort, fxDecapBoth, is(vxOuter, trunc), true},
		{"vxlan/inner ethernet truncated", vxInner, fxDecapBoth, is(tunneled(flow.Sample{}, fVX, fxVNI, a.v4TunA, a.v4TunB), trunc), true},
		{"geneve/options beyond udp payload", mk.patched(gn4, gn4Geneve, 0x3f), fxDecapBoth,
			is(ports(mk.ip4Sample(17, a.v4TunA, a.v4TunB), 52000, 6081, 0), trunc), true},
		{"geneve/inner ip length beyond frame", mk.put16(gn4, gn4Inner+2, 200), fxDecapBoth,
			is(tunneled(mk.l2Sample(0x0800), fGN, 9, a.v4TunA, a.v4TunB), trunc), true},
		{"geneve/inner ihl 3", mk.patched(gn4, gn4Inner, 0x43), fxDecapBoth,
			is(tunneled(mk.l2Sample(0x0800), fGN, 9, a.v4TunA, a.v4TunB), bad), true},

		// Malformed IPv4.
		{"ipv4/ihl 4", mk.patched(tcp4, fxOffIP, 0x44), 0, is(mk.l2Sample(0x0800), bad), false},
		{"ipv4/version 6", mk.patched(tcp4, fxOffIP, 0x65), 0, is(mk.l2Sample(0x0800), bad), false},
		{"ipv4/total length < ihl", mk.put16(tcp4, fxOffIP+2, 19), 0, is(mk.l2Sample(0x0800), bad), false},
		{"ipv4/total length < ihl 6", mk.put16(b(e4, ipOpt, mk.udp(7, 9)), fxOffIP+2, 23), 0, is(mk.l2Sample(0x0800), bad), false},
		{"ipv4/total length beyond frame", mk.put16(tcp4, fxOffIP+2, uint16(len(tcp4)-14+1)), 0, is(mk.l2Sample(0x0800), trunc), false},
		{"ipv4/only ethernet", tcp4[:14], 0, is(mk.l2Sample(0x0800), trunc), false},
		{"ipv4/tcp data offset 4", mk.patched(tcp4, fxOffL4+12, 0x40), 0, is(t4, bad), false},
		{"ipv4/tcp data offset 0", mk.patched(tcp4, fxOffL4+12, 0x00), 0, is(t4, bad), false},
		{"ipv4/tcp data offset beyond ip length", mk.patched(tcp4, fxOffL4+12, 0xf0), 0, is(t4, trunc), false},
		{"ipv4/tcp header beyond ip length", mk.put16(tcp4, fxOffIP+2, 20+19), 0, is(t4, trunc), false},
		{"ipv4/udp header beyond ip length", mk.put16(udp4, fxOffIP+2, 20+7), 0, is(u4, trunc), false},
		{"ipv4/icmp header beyond ip length", mk.put16(icmp, fxOffIP+2, 20+3), 0, is(ic4, trunc), false},
		{"ipv4/sctp header beyond ip length", mk.put16(sctp4, fxOffIP+2, 20+11), 0, is(sc4, trunc), false},

		// Malformed IPv6 and Ethernet.
		{"ipv6/payload length beyond frame", mk.put16(tcp6, fxOffIP+4, uint16(len(tcp6)-54+1)), 0, is(mk.l2Sample(0x86dd), trunc), false},
		{"ipv6/version 4", mk.patched(tcp6, fxOffIP, 0x40|tcp6[fxOffIP]&0x0f), 0, is(mk.l2Sample(0x86dd), bad), false},
		{"ipv6/tcp header beyond payload length", mk.put16(tcp6, fxOffIP+4, 19), 0, is(t6, trunc), false},
		{"ipv6/hop-by-hop beyond payload", mk.patched(hbh6, fxOffL46+1, 5), 0, is(mk.ip6Sample(0, a.v6A, a.v6B), trunc), false},
		{"ipv6/fragment header beyond payload", mk.put16(frag6, fxOffIP+4, 7), 0, is(mk.ip6Sample(44, a.v6A, a.v6B), trunc), false},
		{"vlan/tag truncated", b(mk.eth(EQ), mk.dot1q(0, 5, E4))[:17], 0, is(flow.Sample{}, trunc), false},
	}
}
