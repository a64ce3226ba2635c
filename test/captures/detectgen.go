package captures

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"
)

// The detection captures (DetectionCases, BenignCases) are too large for
// the gopacket builder of the hand-made captures: their packets are kept
// as compact, pointer-free descriptions, sorted by time, and framed by
// hand into a buffered pcap writer. Payloads are zeros, so checksums only
// cover headers.

// sec is one second in the generators' time unit, microseconds (what
// pcap keeps).
const sec = int64(1_000_000)

// detectBase is the time of the first packet of every detection capture.
var detectBase = time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)

// at returns the absolute time of an offset in microseconds.
func at(us int64) time.Time { return detectBase.Add(time.Duration(us) * time.Microsecond) }

// pkt is one packet to write.
type pkt struct {
	t            int64    // microseconds since detectBase
	src, dst     [16]byte // As16 forms
	seq, ack     uint32   // TCP
	fragID       uint32   // fragments
	ord          uint32   // generation order, breaks ties in time
	sport, dport uint16   // ICMP echo: identifier and sequence number
	size         uint16   // bytes after the L4 header; for fragments, the fragment's IP payload
	udpLen       uint16   // first fragment: the UDP length of the whole datagram
	fragOff      uint16   // bytes, a multiple of 8
	proto        uint8
	flags        uint8 // TCP flags; ICMP: the type
	v6           bool
	frag, more   bool
	attack       bool
}

// gen accumulates the packets of one detection capture.
type gen struct {
	rng    *rand.Rand
	pkts   []pkt
	attack bool // marks the packets added while set as attack packets
}

func newGen(name string, sizeHint int) *gen {
	h := fnv.New64a()
	h.Write([]byte(name))
	return &gen{rng: rand.New(rand.NewPCG(h.Sum64(), 0x646574656374)), pkts: make([]pkt, 0, sizeHint)}
}

func (g *gen) add(p pkt) {
	p.ord = uint32(len(g.pkts))
	p.attack = g.attack
	g.pkts = append(g.pkts, p)
}

func hdr(t int64, src, dst netip.Addr, proto uint8) pkt {
	return pkt{t: t, src: src.As16(), dst: dst.As16(), v6: src.Is6(), proto: proto}
}

// tcp adds one TCP segment with n payload bytes.
func (g *gen) tcp(t int64, src, dst netip.Addr, sport, dport uint16, flags uint8, seq, ack uint32, n int) {
	p := hdr(t, src, dst, 6)
	p.sport, p.dport, p.flags, p.seq, p.ack, p.size = sport, dport, flags, seq, ack, uint16(n)
	g.add(p)
}

// udp adds one unfragmented UDP datagram with n payload bytes.
func (g *gen) udp(t int64, src, dst netip.Addr, sport, dport uint16, n int) {
	p := hdr(t, src, dst, 17)
	p.sport, p.dport, p.size = sport, dport, uint16(n)
	g.add(p)
}

// udpFrags adds one UDP datagram of udpLen bytes (header included) as IP
// fragments one microsecond apart, each carrying at most 1480 (IPv4) or
// 1448 (IPv6) bytes of it, as on a 1500-byte MTU. It returns the count.
func (g *gen) udpFrags(t int64, src, dst netip.Addr, sport, dport uint16, udpLen int, id uint32) int {
	mtu := 1480
	if src.Is6() {
		mtu = 1448
	}
	n := 0
	for off := 0; off < udpLen; off += mtu {
		end := min(off+mtu, udpLen)
		p := hdr(t+int64(n), src, dst, 17)
		p.frag, p.more, p.fragOff, p.fragID, p.size = true, end < udpLen, uint16(off), id, uint16(end-off)
		if off == 0 {
			p.sport, p.dport, p.udpLen = sport, dport, uint16(udpLen)
		}
		g.add(p)
		n++
	}
	return n
}

// echo adds an ICMP or ICMPv6 echo request (or reply) with n data bytes.
func (g *gen) echo(t int64, src, dst netip.Addr, request bool, id, seq uint16, n int) {
	var p pkt
	switch {
	case src.Is4() && request:
		p = hdr(t, src, dst, 1)
		p.flags = 8
	case src.Is4():
		p = hdr(t, src, dst, 1)
		p.flags = 0
	case request:
		p = hdr(t, src, dst, 58)
		p.flags = 128
	default:
		p = hdr(t, src, dst, 58)
		p.flags = 129
	}
	p.sport, p.dport, p.size = id, seq, uint16(n)
	g.add(p)
}

// conn is one TCP connection, keeping sequence numbers right.
type conn struct {
	g            *gen
	cli, srv     netip.Addr
	cport, sport uint16
	cseq, sseq   uint32
}

func (g *gen) conn(cli netip.Addr, cport uint16, srv netip.Addr, sport uint16) *conn {
	return &conn{g: g, cli: cli, srv: srv, cport: cport, sport: sport, cseq: g.rng.Uint32(), sseq: g.rng.Uint32()}
}

// send adds a segment from the client (fromCli) or from the server.
func (c *conn) send(t int64, fromCli bool, flags uint8, n int) {
	src, dst, sp, dp := c.srv, c.cli, c.sport, c.cport
	seq, ack := &c.sseq, c.cseq
	if fromCli {
		src, dst, sp, dp = c.cli, c.srv, c.cport, c.sport
		seq, ack = &c.cseq, c.sseq
	}
	if flags&ACK == 0 {
		ack = 0
	}
	c.g.tcp(t, src, dst, sp, dp, flags, *seq, ack, n)
	*seq += uint32(n)
	if flags&(SYN|FIN) != 0 {
		*seq++
	}
}

// open adds a handshake started by the client at t with the given round
// trip time, and returns the time of the client's ACK.
func (c *conn) open(t, rtt int64) int64 {
	c.send(t, true, SYN, 0)
	c.send(t+rtt, false, SYN|ACK, 0)
	c.send(t+rtt+40, true, ACK, 0)
	return t + rtt + 40
}

// close adds a FIN from the client at t, the server's FIN after rtt and
// the client's last ACK, and returns the time of the last packet.
func (c *conn) close(t, rtt int64) int64 {
	c.send(t, true, FIN|ACK, 0)
	c.send(t+rtt, false, FIN|ACK, 0)
	c.send(t+rtt+40, true, ACK, 0)
	return t + rtt + 40
}

// CaptureSummary is what a detection or benign capture holds, as its
// generator wrote it.
type CaptureSummary struct {
	Packets, Bytes             uint64 // bytes: frame lengths, Ethernet header included
	AttackPackets, AttackBytes uint64 // the packets of the attack (all of them for benign captures: none)
	Start, End                 time.Time
	FirstAttack, LastAttack    time.Time // zero without attack packets
}

// write sorts the packets by time and writes them as a pcap (Ethernet,
// microsecond timestamps).
func (g *gen) write(w io.Writer) (*CaptureSummary, error) {
	slices.SortFunc(g.pkts, func(a, b pkt) int {
		if a.t != b.t {
			return int(a.t - b.t)
		}
		return int(a.ord) - int(b.ord)
	})
	bw := bufio.NewWriterSize(w, 1<<20)
	var fh [24]byte
	binary.LittleEndian.PutUint32(fh[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(fh[4:], 2)
	binary.LittleEndian.PutUint16(fh[6:], 4)
	binary.LittleEndian.PutUint32(fh[16:], 65535)
	binary.LittleEndian.PutUint32(fh[20:], 1) // Ethernet
	if _, err := bw.Write(fh[:]); err != nil {
		return nil, fmt.Errorf("writing pcap header: %w", err)
	}
	s := &CaptureSummary{}
	buf := make([]byte, 0, 2048)
	baseSec := detectBase.Unix()
	for i := range g.pkts {
		p := &g.pkts[i]
		buf = frame(buf[:0], p)
		var rh [16]byte
		binary.LittleEndian.PutUint32(rh[0:], uint32(baseSec+p.t/sec))
		binary.LittleEndian.PutUint32(rh[4:], uint32(p.t%sec))
		binary.LittleEndian.PutUint32(rh[8:], uint32(len(buf)))
		binary.LittleEndian.PutUint32(rh[12:], uint32(len(buf)))
		if _, err := bw.Write(rh[:]); err != nil {
			return nil, fmt.Errorf("writing packet %d: %w", i, err)
		}
		if _, err := bw.Write(buf); err != nil {
			return nil, fmt.Errorf("writing packet %d: %w", i, err)
		}
		s.Packets++
		s.Bytes += uint64(len(buf))
		if p.attack {
			if s.AttackPackets == 0 {
				s.FirstAttack = at(p.t)
			}
			s.LastAttack = at(p.t)
			s.AttackPackets++
			s.AttackBytes += uint64(len(buf))
		}
	}
	if len(g.pkts) > 0 {
		s.Start, s.End = at(g.pkts[0].t), at(g.pkts[len(g.pkts)-1].t)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("writing pcap: %w", err)
	}
	return s, nil
}

var zeros [65536]byte

// inside reports whether an As16 address is one of the internal
// networks (10.1.0.0/16, 2001:db8:1::/48); it decides the MAC addresses
// and the TTL, as on a sensor between the site and its uplink.
func inside(a *[16]byte, v6 bool) bool {
	if v6 {
		return a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8 && a[4] == 0 && a[5] == 1
	}
	return a[12] == 10 && a[13] == 1
}

// frame appends the Ethernet frame of p to b.
func frame(b []byte, p *pkt) []byte {
	out := inside(&p.src, p.v6)
	if out {
		b = append(b, macB...)
		b = append(b, macA...)
	} else {
		b = append(b, macA...)
		b = append(b, macB...)
	}
	ttl := byte(52)
	if out {
		ttl = 64
	}
	l4 := l4Len(p)
	if !p.v6 {
		b = append(b, 0x08, 0x00)
		ip := len(b)
		var id, fragField uint16 = 0, 0x4000 // don't fragment
		if p.frag {
			id, fragField = uint16(p.fragID), p.fragOff/8
			if p.more {
				fragField |= 0x2000
			}
		}
		b = append(b, 0x45, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(20+l4))
		b = binary.BigEndian.AppendUint16(b, id)
		b = binary.BigEndian.AppendUint16(b, fragField)
		b = append(b, ttl, p.proto, 0, 0)
		b = append(b, p.src[12:]...)
		b = append(b, p.dst[12:]...)
		binary.BigEndian.PutUint16(b[ip+10:], fold(sum(0, b[ip:ip+20])))
	} else {
		b = append(b, 0x86, 0xdd)
		next := p.proto
		plen := l4
		if p.frag {
			next, plen = 44, l4+8
		}
		b = append(b, 0x60, 0, 0, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(plen))
		b = append(b, next, ttl)
		b = append(b, p.src[:]...)
		b = append(b, p.dst[:]...)
		if p.frag {
			off := p.fragOff
			if p.more {
				off |= 1
			}
			b = append(b, p.proto, 0)
			b = binary.BigEndian.AppendUint16(b, off)
			b = binary.BigEndian.AppendUint32(b, p.fragID)
		}
	}
	if p.frag && p.fragOff != 0 {
		return append(b, zeros[:p.size]...)
	}
	// Pseudo-header sum (ICMPv4 has none).
	var ps uint32
	length := l4
	if p.frag {
		length = int(p.udpLen)
	}
	if p.proto != 1 {
		if p.v6 {
			ps = sum(sum(0, p.src[:]), p.dst[:])
		} else {
			ps = sum(sum(0, p.src[12:]), p.dst[12:])
		}
		ps += uint32(p.proto) + uint32(length)
	}
	h := len(b)
	switch p.proto {
	case 6:
		b = binary.BigEndian.AppendUint16(b, p.sport)
		b = binary.BigEndian.AppendUint16(b, p.dport)
		b = binary.BigEndian.AppendUint32(b, p.seq)
		b = binary.BigEndian.AppendUint32(b, p.ack)
		b = append(b, 5<<4, p.flags, 0xfa, 0xf0, 0, 0, 0, 0)
		binary.BigEndian.PutUint16(b[h+16:], fold(sum(ps, b[h:h+20])))
	case 17:
		b = binary.BigEndian.AppendUint16(b, p.sport)
		b = binary.BigEndian.AppendUint16(b, p.dport)
		b = binary.BigEndian.AppendUint16(b, uint16(length))
		b = append(b, 0, 0)
		c := fold(sum(ps, b[h:h+8]))
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(b[h+6:], c)
	default: // ICMP, ICMPv6 echo
		b = append(b, p.flags, 0, 0, 0)
		b = binary.BigEndian.AppendUint16(b, p.sport)
		b = binary.BigEndian.AppendUint16(b, p.dport)
		binary.BigEndian.PutUint16(b[h+2:], fold(sum(ps, b[h:h+8])))
	}
	if p.frag {
		return append(b, zeros[:int(p.size)-(len(b)-h)]...)
	}
	return append(b, zeros[:p.size]...)
}

// l4Len is the length of what follows the IP header(s) of p.
func l4Len(p *pkt) int {
	if p.frag {
		return int(p.size)
	}
	switch p.proto {
	case 6:
		return 20 + int(p.size)
	default:
		return 8 + int(p.size)
	}
}

func sum(s uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
