package sampler

import (
	"encoding/binary"
	"net/netip"

	"github.com/vigil-sensor/vigil/flow"
)

// Decap selects the tunnels the parsers look into.
type Decap uint8

// Tunnels that can be decapsulated. The values are the sample flags the
// BPF program sets, so they pass to it unchanged.
const (
	DecapVXLAN  = Decap(flow.FlagVXLAN)
	DecapGENEVE = Decap(flow.FlagGENEVE)
)

const (
	vxlanPort  = 4789
	genevePort = 6081

	ethPIPv4  = 0x0800
	ethPIPv6  = 0x86dd
	ethPTEB   = 0x6558 // Transparent Ethernet Bridging
	ethP8021Q = 0x8100
	ethP8021A = 0x88a8

	protoHopOpts  = 0
	protoICMP     = 1
	protoTCP      = 6
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoICMPv6   = 58
	protoDstOpts  = 60
	protoSCTP     = 132

	maxExtHeaders = 8    // VIGIL_MAX_EXT_HDRS
	maxInnerOff   = 4096 // VIGIL_MAX_INNER_OFF

	parseTunnel = 0x80 // internal: a tunnel header follows UDP
)

// frameParser is the Go twin of bpf/include/parse.h. It follows the C
// code step by step, so that both produce the same sample for the same
// frame; read them side by side when changing either.
type frameParser struct {
	b   []byte
	pos int
	rem int
	// cut is how many bytes of the packet the capture did not keep (a
	// pcap snaplen); length fields are checked against rem+cut. Always 0
	// for the BPF twin, which sees whole frames.
	cut int
	s   *flow.Sample
}

func (p *frameParser) need(n int) bool { return n <= p.rem }

func (p *frameParser) skip(n int) {
	p.pos += n
	p.rem -= n
}

// ParseFrame parses an Ethernet frame as the BPF program does, filling
// the packet fields of s (addresses, ports, protocol, flags, ...), and
// returns the outcome. Fields the frame does not reach are left as they
// were; pass a zeroed Sample. It never panics, whatever the input.
func ParseFrame(frame []byte, decap Decap, s *flow.Sample) flow.Outcome {
	p := frameParser{b: frame, rem: len(frame), s: s}
	return p.frame(decap)
}

func (p *frameParser) frame(decap Decap) flow.Outcome {
	var flags, tflag flow.Flags
	ret, ethType := p.eth()
	if ret == int(flow.OutcomeOK) {
		ret = p.l3(ethType, &flags, decap)
	}
	if ret == parseTunnel {
		ret = p.afterTunnel(&flags, &tflag)
	}
	p.s.Flags = flags
	return flow.Outcome(ret)
}

// afterTunnel continues a parse that stopped at a tunnel header.
func (p *frameParser) afterTunnel(flags, tflag *flow.Flags) int {
	inner := p.tunnel(tflag)
	if inner == 0 {
		return int(flow.OutcomeOK)
	}
	if inner < 0 {
		return int(flow.OutcomeTruncated)
	}
	p.enterTunnel()
	*flags = *tflag
	if p.pos >= maxInnerOff {
		return int(flow.OutcomeTruncated)
	}
	var ret int
	ethType := uint16(inner)
	if inner == ethPTEB {
		if ret, ethType = p.eth(); ret != int(flow.OutcomeOK) {
			return ret
		}
	} else {
		p.s.EtherType = ethType
	}
	if ret = p.l3(ethType, flags, 0); ret == int(flow.OutcomeOK) {
		ret = int(flow.OutcomeTunnel)
	}
	return ret
}

func (p *frameParser) eth() (int, uint16) {
	var vlan [2]uint16
	if !p.need(14) {
		return int(flow.OutcomeTruncated), 0
	}
	proto := binary.BigEndian.Uint16(p.b[p.pos+12:])
	p.skip(14)
	for i := range 2 {
		if proto != ethP8021Q && proto != ethP8021A {
			break
		}
		if !p.need(4) {
			return int(flow.OutcomeTruncated), 0
		}
		tag := p.b[p.pos:]
		vlan[i] = binary.BigEndian.Uint16(tag) & 0x0fff
		proto = binary.BigEndian.Uint16(tag[2:])
		p.skip(4)
	}
	p.s.VLAN = vlan[0]
	p.s.InnerVLAN = vlan[1]
	p.s.EtherType = proto
	return int(flow.OutcomeOK), proto
}

func (p *frameParser) l3(ethType uint16, flags *flow.Flags, decap Decap) int {
	var ret, avail int
	switch ethType {
	case ethPIPv4:
		ret, avail = p.ipv4(flags)
	case ethPIPv6:
		ret, avail = p.ipv6(flags)
	default:
		return int(flow.OutcomeNotIP)
	}
	if ret != int(flow.OutcomeOK) {
		return ret
	}
	return p.l4(avail, decap)
}

func (p *frameParser) ipv4(flags *flow.Flags) (int, int) {
	if !p.need(20) {
		return int(flow.OutcomeTruncated), 0
	}
	h := p.b[p.pos:]
	if h[0]>>4 != 4 || h[0]&0x0f < 5 {
		return int(flow.OutcomeBadHeader), 0
	}
	hlen := int(h[0]&0x0f) * 4
	tot := int(binary.BigEndian.Uint16(h[2:]))
	if tot < hlen {
		return int(flow.OutcomeBadHeader), 0
	}
	if tot > p.rem+p.cut || !p.need(hlen) {
		return int(flow.OutcomeTruncated), 0
	}
	s := p.s
	s.IPVersion = 4
	s.TOS = h[1]
	s.TTL = h[8]
	s.Proto = h[9]
	s.SrcAddr = netip.AddrFrom4([4]byte(h[12:16]))
	s.DstAddr = netip.AddrFrom4([4]byte(h[16:20]))

	frag := binary.BigEndian.Uint16(h[6:])
	if frag&0x3fff != 0 {
		*flags |= flow.FlagFragment
		if frag&0x2000 != 0 {
			*flags |= flow.FlagMoreFragments
		}
		s.FragID = uint32(binary.BigEndian.Uint16(h[4:]))
		s.FragOffset = (frag & 0x1fff) << 3
		if frag&0x1fff != 0 {
			*flags |= flow.FlagNonFirstFragment
			return int(flow.OutcomeFragment), 0
		}
	}
	p.skip(hlen)
	return int(flow.OutcomeOK), tot - hlen
}

func (p *frameParser) ipv6(flags *flow.Flags) (int, int) {
	if !p.need(40) {
		return int(flow.OutcomeTruncated), 0
	}
	h := p.b[p.pos:]
	if h[0]>>4 != 6 {
		return int(flow.OutcomeBadHeader), 0
	}
	plen := int(binary.BigEndian.Uint16(h[4:]))
	if plen > p.rem+p.cut-40 {
		return int(flow.OutcomeTruncated), 0
	}
	nh := h[6]
	s := p.s
	s.IPVersion = 6
	s.TOS = h[0]<<4 | h[1]>>4
	s.TTL = h[7]
	s.Proto = nh
	s.SrcAddr = netip.AddrFrom16([16]byte(h[8:24]))
	s.DstAddr = netip.AddrFrom16([16]byte(h[24:40]))
	p.skip(40)

	for range maxExtHeaders {
		e := p.b[p.pos:]
		switch nh {
		case protoHopOpts, protoRouting, protoDstOpts:
			if plen < 8 || !p.need(8) {
				return int(flow.OutcomeTruncated), 0
			}
			n := (int(e[1]) + 1) * 8
			if plen < n || !p.need(n) {
				return int(flow.OutcomeTruncated), 0
			}
			nh = e[0]
			s.Proto = nh
			p.skip(n)
			plen -= n
		case protoFragment:
			if plen < 8 || !p.need(8) {
				return int(flow.OutcomeTruncated), 0
			}
			nh = e[0]
			s.Proto = nh
			fo := binary.BigEndian.Uint16(e[2:])
			*flags |= flow.FlagFragment
			if fo&1 != 0 {
				*flags |= flow.FlagMoreFragments
			}
			s.FragID = binary.BigEndian.Uint32(e[4:])
			s.FragOffset = fo & 0xfff8
			p.skip(8)
			plen -= 8
			if fo&0xfff8 != 0 {
				*flags |= flow.FlagNonFirstFragment
				return int(flow.OutcomeFragment), 0
			}
		default:
			return int(flow.OutcomeOK), plen
		}
	}
	switch nh {
	case protoHopOpts, protoRouting, protoDstOpts, protoFragment:
		return int(flow.OutcomeBadHeader), 0
	}
	return int(flow.OutcomeOK), plen
}

func (p *frameParser) l4(avail int, decap Decap) int {
	s := p.s
	h := p.b[p.pos:]
	switch s.Proto {
	case protoTCP:
		if avail < 20 || !p.need(20) {
			return int(flow.OutcomeTruncated)
		}
		doff := int(h[12] >> 4)
		if doff < 5 {
			return int(flow.OutcomeBadHeader)
		}
		if doff*4 > avail {
			return int(flow.OutcomeTruncated)
		}
		s.SrcPort = binary.BigEndian.Uint16(h)
		s.DstPort = binary.BigEndian.Uint16(h[2:])
		s.TCPFlags = h[13]
	case protoUDP:
		if avail < 8 || !p.need(8) {
			return int(flow.OutcomeTruncated)
		}
		s.SrcPort = binary.BigEndian.Uint16(h)
		s.DstPort = binary.BigEndian.Uint16(h[2:])
		if (decap&DecapVXLAN != 0 && s.DstPort == vxlanPort) ||
			(decap&DecapGENEVE != 0 && s.DstPort == genevePort) {
			p.skip(8)
			wire := min(p.rem+p.cut, avail-8)
			p.rem = min(p.rem, wire)
			p.cut = wire - p.rem
			return parseTunnel
		}
	case protoSCTP:
		if avail < 12 || !p.need(12) {
			return int(flow.OutcomeTruncated)
		}
		s.SrcPort = binary.BigEndian.Uint16(h)
		s.DstPort = binary.BigEndian.Uint16(h[2:])
	case protoICMP, protoICMPv6:
		if avail < 4 || !p.need(4) {
			return int(flow.OutcomeTruncated)
		}
		s.SrcPort = 0
		s.DstPort = binary.BigEndian.Uint16(h)
	}
	return int(flow.OutcomeOK)
}

// tunnel reads a VXLAN or GENEVE header: the inner EtherType (ethPTEB for
// Ethernet), 0 when it is not a tunnel we decapsulate, -1 when truncated.
func (p *frameParser) tunnel(tflag *flow.Flags) int {
	if !p.need(8) {
		return -1
	}
	h := p.b[p.pos:]
	vni := uint32(h[4])<<16 | uint32(h[5])<<8 | uint32(h[6])
	if p.s.DstPort == vxlanPort {
		if h[0]&0x08 == 0 {
			return 0
		}
		*tflag = flow.FlagVXLAN
		p.s.VNI = vni
		p.skip(8)
		return ethPTEB
	}
	if h[0]>>6 != 0 {
		return 0
	}
	ptype := int(binary.BigEndian.Uint16(h[2:]))
	if ptype != ethPTEB && ptype != ethPIPv4 && ptype != ethPIPv6 {
		return 0
	}
	optlen := int(h[0]&0x3f) * 4
	if !p.need(8 + optlen) {
		return -1
	}
	*tflag = flow.FlagGENEVE
	p.s.VNI = vni
	p.skip(8 + optlen)
	return ptype
}

func (p *frameParser) enterTunnel() {
	s := p.s
	s.OuterSrc, s.OuterDst = s.SrcAddr, s.DstAddr
	s.SrcAddr, s.DstAddr = netip.Addr{}, netip.Addr{}
	s.SrcPort, s.DstPort = 0, 0
	s.Proto, s.TOS, s.TTL, s.IPVersion, s.TCPFlags = 0, 0, 0, 0, 0
	s.VLAN, s.InnerVLAN, s.EtherType = 0, 0, 0
	s.FragID, s.FragOffset = 0, 0
}
