package sampler

// Frame builders for the parser tests. Well-formed frames are built with
// gopacket; malformed ones start from a well-formed frame and have single
// fields overwritten at offsets the builders document. The builders are
// methods of frameKit (used through mk) so that their short names stay out
// of the package namespace.

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vigil-sensor/vigil/flow"
)

type frameKit struct{}

// mk builds test frames and the samples expected of them.
var mk frameKit

// fx holds the addresses of the test frames. Expected samples are written
// from these and the fx constants, never from a parser's output.
var fx = struct {
	macA, macB                      net.HardwareAddr
	v4A, v4B, v4TunA, v4TunB        netip.Addr
	v6A, v6B, v6TunA, v6TunB, v6Hop netip.Addr
}{
	macA:   net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x0a},
	macB:   net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x0b},
	v4A:    netip.MustParseAddr("192.0.2.10"),
	v4B:    netip.MustParseAddr("198.51.100.200"),
	v4TunA: netip.MustParseAddr("203.0.113.1"),
	v4TunB: netip.MustParseAddr("203.0.113.254"),
	v6A:    netip.MustParseAddr("2001:db8::a"),
	v6B:    netip.MustParseAddr("2001:db8:ffff::b"),
	v6TunA: netip.MustParseAddr("2001:db8:7::1"),
	v6TunB: netip.MustParseAddr("2001:db8:7::2"),
	v6Hop:  netip.MustParseAddr("2001:db8::99"),
}

const (
	fxTOS4    = 0xb8    // DSCP EF
	fxTTL4    = 57      //
	fxIPID    = 0xbeef  // IPv4 identification
	fxTClass6 = 0xa5    // spans both nibbles of the IPv6 header's first two bytes
	fxFlowLbl = 0xfedcb // its top nibble sits next to the traffic class
	fxHLim6   = 33      //
	fxVNI     = 0xabcdef

	// TCP flag bits as they appear in byte 13 of the TCP header.
	fxFIN = 0x01
	fxSYN = 0x02
	fxRST = 0x04
	fxPSH = 0x08
	fxACK = 0x10
	fxURG = 0x20
	fxECE = 0x40
	fxCWR = 0x80

	// Offsets into an untagged Ethernet frame.
	fxOffIP  = 14      // IPv4 or IPv6 header
	fxOffL4  = 14 + 20 // transport header after an option-less IPv4 header
	fxOffL46 = 14 + 40 // transport header after an IPv6 header without extensions
)

// build serializes layers into a frame, fixing lengths (IHL, total and
// payload lengths, UDP length, GENEVE option length, TCP data offset).
// Checksums are left zero: neither parser reads them. gopacket pads every
// Ethernet frame, inner ones included, to 60 bytes.
func (frameKit) build(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ls...); err != nil {
		tb.Fatalf("building frame: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func (frameKit) eth(t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: fx.macA, DstMAC: fx.macB, EthernetType: t}
}

// dot1q is a VLAN tag; priority and DEI share the TCI with the ID.
func (frameKit) dot1q(prio uint8, id uint16, next layers.EthernetType) *layers.Dot1Q {
	return &layers.Dot1Q{Priority: prio, DropEligible: true, VLANIdentifier: id, Type: next}
}

func (frameKit) ip4(proto layers.IPProtocol, src, dst netip.Addr) *layers.IPv4 {
	return &layers.IPv4{
		Version: 4, TOS: fxTOS4, TTL: fxTTL4, Id: fxIPID, Protocol: proto,
		SrcIP: src.AsSlice(), DstIP: dst.AsSlice(),
	}
}

// ip4f is an IPv4 header with flags and a fragment offset in 8-byte units.
func (frameKit) ip4f(proto layers.IPProtocol, src, dst netip.Addr, f layers.IPv4Flag, off uint16) *layers.IPv4 {
	ip := mk.ip4(proto, src, dst)
	ip.Flags, ip.FragOffset = f, off
	return ip
}

func (frameKit) ip6(nh layers.IPProtocol, src, dst netip.Addr) *layers.IPv6 {
	return &layers.IPv6{
		Version: 6, TrafficClass: fxTClass6, FlowLabel: fxFlowLbl, HopLimit: fxHLim6,
		NextHeader: nh, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(),
	}
}

func (frameKit) tcp(sport, dport uint16, flags uint8) *layers.TCP {
	return &layers.TCP{
		SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport),
		Seq: 1000, Ack: 2000, Window: 512,
		FIN: flags&fxFIN != 0, SYN: flags&fxSYN != 0, RST: flags&fxRST != 0,
		PSH: flags&fxPSH != 0, ACK: flags&fxACK != 0, URG: flags&fxURG != 0,
		ECE: flags&fxECE != 0, CWR: flags&fxCWR != 0,
	}
}

func (frameKit) udp(sport, dport uint16) *layers.UDP {
	return &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
}

func (frameKit) sctp(sport, dport uint16) *layers.SCTP {
	return &layers.SCTP{SrcPort: layers.SCTPPort(sport), DstPort: layers.SCTPPort(dport), VerificationTag: 0x01020304}
}

func (frameKit) icmp4(typ, code uint8) *layers.ICMPv4 {
	return &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Id: 7, Seq: 9}
}

func (frameKit) icmp6(typ, code uint8) *layers.ICMPv6 {
	return &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
}

// hopByHop is an 8-byte hop-by-hop options header (one PadN option).
func (frameKit) hopByHop(nh layers.IPProtocol) *layers.IPv6HopByHop {
	h := &layers.IPv6HopByHop{Options: []*layers.IPv6HopByHopOption{{OptionType: 1, OptionData: make([]byte, 4)}}}
	h.NextHeader = nh
	return h
}

// routing is a 24-byte type 0 routing header (Hdr Ext Len 2).
func (frameKit) routing(nh layers.IPProtocol) *layers.IPv6Routing {
	r := &layers.IPv6Routing{RoutingType: 0, SourceRoutingIPs: []net.IP{fx.v6Hop.AsSlice()}}
	r.NextHeader = nh
	return r
}

// dstOpts is a destination options header of 8*(1+extLen) bytes, filled
// exactly with PadN options (of at most 255 data bytes each).
func (frameKit) dstOpts(nh layers.IPProtocol, extLen int) *layers.IPv6Destination {
	d := &layers.IPv6Destination{}
	for rem := 8*(extLen+1) - 2; rem > 0; {
		n := min(rem-2, 255)
		if rem-(n+2) == 1 {
			n-- // leave room for one more PadN
		}
		d.Options = append(d.Options, &layers.IPv6DestinationOption{OptionType: 1, OptionData: make([]byte, n)})
		rem -= n + 2
	}
	d.NextHeader = nh
	return d
}

// frag6 is an IPv6 fragment header; off is in 8-byte units.
func (frameKit) frag6(nh layers.IPProtocol, off uint16, more bool, id uint32) *layers.IPv6Fragment {
	return &layers.IPv6Fragment{NextHeader: nh, FragmentOffset: off, MoreFragments: more, Identification: id}
}

func (frameKit) vxlan(vni uint32) *layers.VXLAN { return &layers.VXLAN{ValidIDFlag: true, VNI: vni} }

// geneve is a version 0 GENEVE header with one 8-byte option, so 16 bytes
// (option length field 2).
func (frameKit) geneve(proto layers.EthernetType, vni uint32) *layers.Geneve {
	return &layers.Geneve{
		Protocol: proto, VNI: vni,
		Options: []*layers.GeneveOption{{Class: 0x0102, Type: 0x80, Data: []byte{1, 2, 3, 4}}},
	}
}

func (frameKit) payload(n int) gopacket.Payload {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(0xa0 + i)
	}
	return p
}

// Frames used by several tests.

func (frameKit) arp(tb testing.TB) []byte {
	return mk.build(tb, mk.eth(layers.EthernetTypeARP), &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: fx.macA, SourceProtAddress: fx.v4A.AsSlice(),
		DstHwAddress: make([]byte, 6), DstProtAddress: fx.v4B.AsSlice(),
	})
}

// tcp4 is 64 bytes: Ethernet, IPv4, TCP 40000->443 SYN|ECE|CWR, 10 bytes.
func (frameKit) tcp4(tb testing.TB) []byte {
	return mk.build(tb, mk.eth(layers.EthernetTypeIPv4), mk.ip4(layers.IPProtocolTCP, fx.v4A, fx.v4B),
		mk.tcp(40000, 443, fxSYN|fxECE|fxCWR), mk.payload(10))
}

// tcp6 is 104 bytes: Ethernet, IPv6, TCP 40001->22 ACK|PSH, 30 bytes.
func (frameKit) tcp6(tb testing.TB) []byte {
	return mk.build(tb, mk.eth(layers.EthernetTypeIPv6), mk.ip6(layers.IPProtocolTCP, fx.v6A, fx.v6B),
		mk.tcp(40001, 22, fxACK|fxPSH), mk.payload(30))
}

// udp4 is 62 bytes: Ethernet, IPv4, UDP 5353->53, 20 bytes.
func (frameKit) udp4(tb testing.TB) []byte {
	return mk.build(tb, mk.eth(layers.EthernetTypeIPv4), mk.ip4(layers.IPProtocolUDP, fx.v4A, fx.v4B),
		mk.udp(5353, 53), mk.payload(20))
}

// vxlan4 is IPv4/UDP 51000->4789/VXLAN carrying Ethernet/IPv4/TCP 1234->80 SYN.
func (frameKit) vxlan4(tb testing.TB) []byte {
	return mk.build(tb, mk.eth(layers.EthernetTypeIPv4), mk.ip4(layers.IPProtocolUDP, fx.v4TunA, fx.v4TunB),
		mk.udp(51000, 4789), mk.vxlan(fxVNI), mk.eth(layers.EthernetTypeIPv4),
		mk.ip4(layers.IPProtocolTCP, fx.v4A, fx.v4B), mk.tcp(1234, 80, fxSYN), mk.payload(8))
}

// geneveIP is IPv6/UDP 52000->6081/GENEVE (protocol type 0x0800) carrying
// IPv4/UDP 123->123.
func (frameKit) geneveIP(tb testing.TB) []byte {
	return mk.build(tb, mk.eth(layers.EthernetTypeIPv6), mk.ip6(layers.IPProtocolUDP, fx.v6TunA, fx.v6TunB),
		mk.udp(52000, 6081), mk.geneve(layers.EthernetTypeIPv4, fxVNI),
		mk.ip4(layers.IPProtocolUDP, fx.v4A, fx.v4B), mk.udp(123, 123), mk.payload(48))
}

// patched returns a copy of f with b written at off.
func (frameKit) patched(f []byte, off int, b ...byte) []byte {
	g := append([]byte(nil), f...)
	copy(g[off:], b)
	return g
}

// put16 returns a copy of f with the big-endian v at off.
func (frameKit) put16(f []byte, off int, v uint16) []byte {
	return mk.patched(f, off, byte(v>>8), byte(v))
}

// l2 reads the layer 2 of a test frame we built: its length with up to two
// VLAN tags, the sample fields it gives, and where the IP packet after it
// ends by its own length field (0 when it is not IP).
func (frameKit) l2(f []byte) (l2Len int, s flow.Sample, ipEnd int) {
	u16 := func(off int) int { return int(binary.BigEndian.Uint16(f[off:])) }
	l2Len = 14
	t := u16(12)
	vlan := []*uint16{&s.VLAN, &s.InnerVLAN}
	for i := 0; i < 2 && (t == 0x8100 || t == 0x88a8); i++ {
		*vlan[i] = uint16(u16(l2Len) & 0x0fff)
		t = u16(l2Len + 2)
		l2Len += 4
	}
	s.EtherType = uint16(t)
	switch t {
	case 0x0800:
		ipEnd = l2Len + u16(l2Len+2)
	case 0x86dd:
		ipEnd = l2Len + 40 + u16(l2Len+4)
	}
	return l2Len, s, ipEnd
}

// Expected samples. The helpers fill what a parsed IP header yields; the
// cases add the transport, fragment and tunnel fields.

func (frameKit) l2Sample(ethType uint16) flow.Sample { return flow.Sample{EtherType: ethType} }

func (frameKit) ip4Sample(proto uint8, src, dst netip.Addr) flow.Sample {
	return flow.Sample{
		EtherType: 0x0800, IPVersion: 4, TOS: fxTOS4, TTL: fxTTL4, Proto: proto,
		SrcAddr: src, DstAddr: dst,
	}
}

func (frameKit) ip6Sample(proto uint8, src, dst netip.Addr) flow.Sample {
	return flow.Sample{
		EtherType: 0x86dd, IPVersion: 6, TOS: fxTClass6, TTL: fxHLim6, Proto: proto,
		SrcAddr: src, DstAddr: dst,
	}
}

// ports sets the transport fields of s.
func (frameKit) ports(s flow.Sample, sport, dport uint16, tcpFlags uint8) flow.Sample {
	s.SrcPort, s.DstPort, s.TCPFlags = sport, dport, tcpFlags
	return s
}

// frag sets the fragment fields of s.
func (frameKit) frag(s flow.Sample, f flow.Flags, id uint32, off uint16) flow.Sample {
	s.Flags |= f
	s.FragID, s.FragOffset = id, off
	return s
}

func (frameKit) vlans(s flow.Sample, outer, inner uint16) flow.Sample {
	s.VLAN, s.InnerVLAN = outer, inner
	return s
}

// tunneled marks s as the inner packet of a tunnel between src and dst.
func (frameKit) tunneled(s flow.Sample, flag flow.Flags, vni uint32, src, dst netip.Addr) flow.Sample {
	s.OuterSrc, s.OuterDst, s.VNI = src, dst, vni
	s.Flags |= flag
	return s
}

func (frameKit) is(s flow.Sample, o flow.Outcome) flow.Sample {
	s.Outcome = o
	return s
}
