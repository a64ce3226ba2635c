package captures

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// builder accumulates the packets of one capture.
type builder struct {
	c    *Capture
	base time.Time
	err  error
}

func newBuilder(name string, f Format, link layers.LinkType, base time.Time) *builder {
	return &builder{c: &Capture{Name: name, Format: f, Link: link}, base: base}
}

// done sorts the packets by time (stable: equal times keep their order).
func (b *builder) done() (*Capture, error) {
	if b.err != nil {
		return nil, fmt.Errorf("%s: %w", b.c.Name, b.err)
	}
	slices.SortStableFunc(b.c.Packets, func(x, y Packet) int { return x.Time.Compare(y.Time) })
	return b.c, nil
}

var (
	macA = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x0a}
	macB = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x0b}
)

// ipHeader is the network layer of a packet to build.
type ipHeader struct {
	src, dst netip.Addr
	vlan     uint16
	ttl      uint8
	// IPv4 fragmentation (offset in bytes, a multiple of 8) or IPv6
	// fragment header when frag is set.
	frag     bool
	fragOff  uint16
	moreFrag bool
	fragID   uint32
}

// emit serializes net+transport layers on the capture's link layer and
// records the packet with its key.
func (b *builder) emit(at time.Duration, h ipHeader, proto layers.IPProtocol, key Key, tcpFlags uint8, l4 ...gopacket.SerializableLayer) {
	if b.err != nil {
		return
	}
	var ls []gopacket.SerializableLayer
	var etype layers.EthernetType
	if h.src.Is4() {
		etype = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: h.ttl, Protocol: proto, SrcIP: h.src.AsSlice(), DstIP: h.dst.AsSlice()}
		if h.frag {
			ip.Id = uint16(h.fragID)
			ip.FragOffset = h.fragOff / 8
			if h.moreFrag {
				ip.Flags = layers.IPv4MoreFragments
			}
		} else {
			ip.Flags = layers.IPv4DontFragment
		}
		ls = append(ls, ip)
		setNet(l4, ip)
	} else {
		etype = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: h.ttl, NextHeader: proto, SrcIP: h.src.AsSlice(), DstIP: h.dst.AsSlice()}
		ls = append(ls, ip)
		if h.frag {
			ip.NextHeader = layers.IPProtocolIPv6Fragment
			ls = append(ls, &layers.IPv6Fragment{NextHeader: proto, FragmentOffset: h.fragOff / 8, MoreFragments: h.moreFrag, Identification: h.fragID})
		}
		setNet(l4, ip)
	}
	ls = append(ls, l4...)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		b.err = err
		return
	}
	ipb := buf.Bytes()
	var frame []byte
	switch b.c.Link {
	case layers.LinkTypeEthernet:
		frame = ethernet(h.vlan, etype, ipb, key.Src.Less(key.Dst))
	case layers.LinkTypeRaw:
		frame = slices.Clone(ipb)
	case layers.LinkTypeLinuxSLL:
		// Linux cooked header: packet type (0 to us, 4 outgoing),
		// ARPHRD_ETHER, address length, address (8 bytes), protocol.
		hdr := make([]byte, 16, 16+len(ipb))
		if !key.Src.Less(key.Dst) {
			binary.BigEndian.PutUint16(hdr[0:], 4)
		}
		binary.BigEndian.PutUint16(hdr[2:], 1)
		binary.BigEndian.PutUint16(hdr[4:], 6)
		copy(hdr[6:], macA)
		binary.BigEndian.PutUint16(hdr[14:], uint16(etype))
		frame = append(hdr, ipb...)
	default:
		b.err = fmt.Errorf("unsupported link type %s", b.c.Link)
		return
	}
	if h.vlan != 0 && b.c.Link != layers.LinkTypeEthernet {
		b.err = fmt.Errorf("VLAN tags need Ethernet")
		return
	}
	b.c.Packets = append(b.c.Packets, Packet{Time: b.base.Add(at), Key: key, VLAN: h.vlan, TCPFlags: tcpFlags, Data: frame})
}

// ethernet frames an IP packet, with an 802.1Q tag when vlan is set.
func ethernet(vlan uint16, etype layers.EthernetType, payload []byte, aToB bool) []byte {
	src, dst := macA, macB
	if !aToB {
		src, dst = macB, macA
	}
	f := make([]byte, 0, 18+len(payload))
	f = append(f, dst...)
	f = append(f, src...)
	if vlan != 0 {
		f = binary.BigEndian.AppendUint16(f, uint16(layers.EthernetTypeDot1Q))
		f = binary.BigEndian.AppendUint16(f, vlan&0x0fff)
	}
	f = binary.BigEndian.AppendUint16(f, uint16(etype))
	return append(f, payload...)
}

func setNet(l4 []gopacket.SerializableLayer, ip gopacket.NetworkLayer) {
	for _, l := range l4 {
		switch t := l.(type) {
		case *layers.TCP:
			_ = t.SetNetworkLayerForChecksum(ip)
		case *layers.UDP:
			_ = t.SetNetworkLayerForChecksum(ip)
		case *layers.ICMPv6:
			_ = t.SetNetworkLayerForChecksum(ip)
		}
	}
}

// payload returns n deterministic bytes.
func payload(n int, salt byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*31) ^ salt
	}
	return p
}

// endpoint is an address and port.
type endpoint struct {
	addr netip.Addr
	port uint16
}

func ep(s string, port uint16) endpoint { return endpoint{netip.MustParseAddr(s), port} }

// tcpConv writes one TCP connection, keeping sequence numbers right.
type tcpConv struct {
	b          *builder
	cli, srv   endpoint
	vlan       uint16
	cseq, sseq uint32
}

func (b *builder) tcp(cli, srv endpoint, vlan uint16) *tcpConv {
	return &tcpConv{b: b, cli: cli, srv: srv, vlan: vlan, cseq: 1000 + uint32(cli.port), sseq: 5000 + uint32(srv.port)}
}

// send writes one segment from the client (fromCli) or the server.
func (t *tcpConv) send(at time.Duration, fromCli bool, flags uint8, n int) {
	src, dst := t.srv, t.cli
	seq, ack := &t.sseq, t.cseq
	ttl := uint8(57)
	if fromCli {
		src, dst = t.cli, t.srv
		seq, ack = &t.cseq, t.sseq
		ttl = 64
	}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(src.port), DstPort: layers.TCPPort(dst.port),
		Seq: *seq, Window: 64240,
		FIN: flags&FIN != 0, SYN: flags&SYN != 0, RST: flags&RST != 0, PSH: flags&PSH != 0, ACK: flags&ACK != 0,
	}
	if flags&ACK != 0 {
		tcp.Ack = ack
	}
	*seq += uint32(n)
	if flags&(SYN|FIN) != 0 {
		*seq++
	}
	proto := layers.IPProtocolTCP
	key := Key{Src: src.addr, Dst: dst.addr, SrcPort: src.port, DstPort: dst.port, Proto: uint8(proto)}
	h := ipHeader{src: src.addr, dst: dst.addr, vlan: t.vlan, ttl: ttl}
	t.b.emit(at, h, proto, key, flags, tcp, gopacket.Payload(payload(n, byte(src.port))))
}

// exchange writes a full connection starting at `at`: handshake, the
// request, the response in MSS-sized segments acknowledged by the client,
// and a FIN from each side with the final ACK. step separates packets.
func (t *tcpConv) exchange(at, step time.Duration, request, response int) time.Duration {
	next := func() time.Duration { at += step; return at - step }
	t.send(next(), true, SYN, 0)
	t.send(next(), false, SYN|ACK, 0)
	t.send(next(), true, ACK, 0)
	t.send(next(), true, PSH|ACK, request)
	for response > 0 {
		n := min(response, 1448)
		response -= n
		t.send(next(), false, ACK|PSH, n)
		t.send(next(), true, ACK, 0)
	}
	t.send(next(), true, FIN|ACK, 0)
	t.send(next(), false, FIN|ACK, 0)
	t.send(next(), true, ACK, 0)
	return at
}

// udp writes one UDP datagram.
func (b *builder) udp(at time.Duration, src, dst endpoint, vlan uint16, n int) {
	proto := layers.IPProtocolUDP
	key := Key{Src: src.addr, Dst: dst.addr, SrcPort: src.port, DstPort: dst.port, Proto: uint8(proto)}
	h := ipHeader{src: src.addr, dst: dst.addr, vlan: vlan, ttl: 64}
	b.emit(at, h, proto, key, 0, &layers.UDP{SrcPort: layers.UDPPort(src.port), DstPort: layers.UDPPort(dst.port)}, gopacket.Payload(payload(n, byte(src.port))))
}

// udpFragmented writes one UDP datagram of n payload bytes as IP
// fragments carrying at most mtuPayload bytes each (a multiple of 8).
// Only the first carries the UDP header, so only it has ports in its key.
func (b *builder) udpFragmented(at, step time.Duration, src, dst endpoint, n, mtuPayload int, id uint32) {
	// The whole datagram, UDP header and checksum included.
	buf := gopacket.NewSerializeBuffer()
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.port), DstPort: layers.UDPPort(dst.port)}
	if src.addr.Is4() {
		_ = udp.SetNetworkLayerForChecksum(&layers.IPv4{Version: 4, Protocol: layers.IPProtocolUDP, SrcIP: src.addr.AsSlice(), DstIP: dst.addr.AsSlice()})
	} else {
		_ = udp.SetNetworkLayerForChecksum(&layers.IPv6{Version: 6, NextHeader: layers.IPProtocolUDP, SrcIP: src.addr.AsSlice(), DstIP: dst.addr.AsSlice()})
	}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, udp, gopacket.Payload(payload(n, byte(src.port)))); err != nil {
		b.err = err
		return
	}
	dgram := buf.Bytes()
	proto := layers.IPProtocolUDP
	for off := 0; off < len(dgram); off += mtuPayload {
		end := min(off+mtuPayload, len(dgram))
		key := Key{Src: src.addr, Dst: dst.addr, Proto: uint8(proto)}
		if off == 0 {
			key.SrcPort, key.DstPort = src.port, dst.port
		}
		h := ipHeader{src: src.addr, dst: dst.addr, ttl: 64, frag: true, fragOff: uint16(off), moreFrag: end < len(dgram), fragID: id}
		b.emit(at, h, proto, key, 0, gopacket.Payload(slices.Clone(dgram[off:end])))
		at += step
	}
}

// echo writes an ICMP or ICMPv6 echo request and, if reply, its reply.
func (b *builder) echo(at time.Duration, src, dst netip.Addr, id, seq uint16, n int, reply bool) {
	one := func(at time.Duration, s, d netip.Addr, request bool) {
		h := ipHeader{src: s, dst: d, ttl: 64}
		data := gopacket.Payload(payload(n, byte(seq)))
		if s.Is4() {
			typ := uint8(layers.ICMPv4TypeEchoReply)
			if request {
				typ = layers.ICMPv4TypeEchoRequest
			}
			key := Key{Src: s, Dst: d, DstPort: uint16(typ) << 8, Proto: 1}
			icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq}
			b.emit(at, h, layers.IPProtocolICMPv4, key, 0, icmp, data)
			return
		}
		typ := uint8(layers.ICMPv6TypeEchoReply)
		if request {
			typ = layers.ICMPv6TypeEchoRequest
		}
		key := Key{Src: s, Dst: d, DstPort: uint16(typ) << 8, Proto: 58}
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
		b.emit(at, h, layers.IPProtocolICMPv6, key, 0, icmp, &layers.ICMPv6Echo{Identifier: id, SeqNumber: seq}, data)
	}
	one(at, src, dst, true)
	if reply {
		one(at+time.Millisecond+317*time.Microsecond, dst, src, false)
	}
}
