package captures

import "net/netip"

// The attack generators of the evaluation corpus (corpus.go). The
// volumetric ones write pps packets per second for dur microseconds from
// start, evenly spaced with a jitter of up to a quarter of the spacing;
// the first packet is at start exactly.

// burstEvery calls f for packet (or datagram) i < rate*dur of a burst,
// at start + i/rate seconds plus the jitter.
func (g *gen) burstEvery(start int64, rate int, dur int64, f func(i int, t int64)) {
	jitter := sec / int64(rate) / 4
	every(start, rate, dur, func(i int, t int64) {
		if i > 0 && jitter > 0 {
			t += g.rng.Int64N(jitter + 1)
		}
		f(i, t)
	})
}

// corpusSYNFlood: SYN with size payload bytes to victim:port from the
// attacker (source ports counting up from a random one) or from random
// spoofed sources and ports.
func corpusSYNFlood(g *gen, p *plan, start, dur int64, pps int, port uint16, size int, spoofed bool) {
	v6 := p.victim.Is6()
	base := g.rng.IntN(64512)
	g.burstEvery(start, pps, dur, func(i int, t int64) {
		src, sport := p.attacker, uint16(1024+(base+i)%64512)
		if spoofed {
			src, sport = g.external(v6, true), uint16(1024+g.rng.IntN(64512))
		}
		g.tcp(t, src, p.victim, sport, port, SYN, g.rng.Uint32(), 0, size)
	})
}

// corpusUDPFlood: datagrams of lo-hi payload bytes from the attacker's
// random non-reflector ports to random ports of the victim.
func corpusUDPFlood(g *gen, p *plan, start, dur int64, pps, lo, hi int) {
	g.burstEvery(start, pps, dur, func(i int, t int64) {
		g.udp(t, p.attacker, p.victim, g.randomPort(), uint16(1+g.rng.IntN(65535)), lo+g.rng.IntN(hi-lo+1))
	})
}

// corpusICMPFlood: echo requests of size data bytes from the attacker
// (one identifier, sequence numbers counting up) or from random spoofed
// sources (random identifiers).
func corpusICMPFlood(g *gen, p *plan, start, dur int64, pps, size int, spoofed bool) {
	v6 := p.victim.Is6()
	g.burstEvery(start, pps, dur, func(i int, t int64) {
		if spoofed {
			g.echo(t, g.external(v6, true), p.victim, true, uint16(g.rng.Uint32()), uint16(g.rng.IntN(64)), size)
			return
		}
		g.echo(t, p.attacker, p.victim, true, 0x5a5a, uint16(i), size)
	})
}

// corpusCarpet: round robin over the 256 hosts of the carpet prefix,
// UDP of lo-hi bytes from random sources and non-reflector ports to
// random ports, or SYN to port from random spoofed sources.
func corpusCarpet(g *gen, p *plan, start, dur int64, pps int, syn bool, port uint16, lo, hi int) {
	base := p.carpet.Addr().As16()
	v6 := p.carpet.Addr().Is6()
	g.burstEvery(start, pps, dur, func(i int, t int64) {
		b := base
		b[15] = byte(i)
		dst := netip.AddrFrom16(b)
		if !v6 {
			dst = dst.Unmap()
		}
		if syn {
			g.tcp(t, g.external(v6, true), dst, uint16(1024+g.rng.IntN(64512)), port, SYN, g.rng.Uint32(), 0, 0)
			return
		}
		g.udp(t, g.external(v6, false), dst, g.randomPort(), uint16(1+g.rng.IntN(65535)), lo+g.rng.IntN(hi-lo+1))
	})
}

// fragMTU is how many bytes of a datagram one fragment carries (as
// udpFrags cuts them), and the largest UDP length sent whole.
func fragMTU(v6 bool) (frag, whole int) {
	if v6 {
		return 1448, 1460
	}
	return 1480, 1480
}

// framesOf is the number of packets of a UDP datagram of size payload
// bytes.
func framesOf(size int, v6 bool) int {
	frag, whole := fragMTU(v6)
	if size+8 <= whole {
		return 1
	}
	return (size + 8 + frag - 1) / frag
}

// corpusUDPReflection: answers of size payload bytes (±5% if vary and
// not fragmented) from random reflectors' port to random ephemeral ports
// of the victim; pps counts the fragments, so datagrams come at pps
// divided by the fragments of one.
func corpusUDPReflection(g *gen, p *plan, start, dur int64, pps int, refl []netip.Addr, port uint16, size int, vary bool) {
	v6 := p.victim.Is6()
	frames := framesOf(size, v6)
	_, whole := fragMTU(v6)
	g.burstEvery(start, max(1, pps/frames), dur, func(i int, t int64) {
		r := refl[g.rng.IntN(len(refl))]
		dport := uint16(1024 + g.rng.IntN(64512))
		if frames > 1 {
			g.udpFrags(t, r, p.victim, port, dport, size+8, g.rng.Uint32())
			return
		}
		n := size
		if vary {
			n = min(size-size/20+g.rng.IntN(size/10+1), whole-8)
		}
		g.udp(t, r, p.victim, port, dport, n)
	})
}

// corpusTCPReflection: bare segments with the given flags (SYN-ACK,
// RST-ACK or ACK) from random reflectors' port to random ports of the
// victim, which sent no SYN.
func corpusTCPReflection(g *gen, p *plan, start, dur int64, pps int, refl []netip.Addr, port uint16, flags uint8) {
	g.burstEvery(start, pps, dur, func(i int, t int64) {
		r := refl[g.rng.IntN(len(refl))]
		seq := g.rng.Uint32()
		if flags&SYN == 0 && flags&RST != 0 {
			seq = 0 // a RST-ACK answering a SYN carries no sequence number of its own
		}
		g.tcp(t, r, p.victim, port, uint16(1024+g.rng.IntN(64512)), flags, seq, g.rng.Uint32(), 0)
	})
}

// corpusLowRateDNS: rate DNS answers per second of lo-hi payload bytes,
// fragmented, from the resolvers (each one first in turn, then at
// random) to random ephemeral ports of the victim, for dur.
func corpusLowRateDNS(g *gen, p *plan, start, dur int64, rate int, refl []netip.Addr, lo, hi int) {
	g.burstEvery(start, rate, dur, func(i int, t int64) {
		r := refl[g.rng.IntN(len(refl))]
		if i < len(refl) {
			r = refl[i]
		}
		g.udpFrags(t, r, p.victim, 53, uint16(1024+g.rng.IntN(64512)), lo+g.rng.IntN(hi-lo+1)+8, g.rng.Uint32())
	})
}

// loginSeg is one data segment of a login session.
type loginSeg struct {
	cli bool // from the client
	n   int  // payload bytes
}

// loginService is a login protocol and the data segments of one failed
// login session (a few attempts where the protocol allows them).
type loginService struct {
	name string
	port uint16
	segs []loginSeg
}

func loginFlow(first bool, ns ...int) []loginSeg {
	out := make([]loginSeg, len(ns))
	for i, n := range ns {
		out[i] = loginSeg{first, n}
		if n < 0 { // a negative size: same side as the previous one
			out[i] = loginSeg{out[i-1].cli, -n}
			continue
		}
		first = !first
	}
	return out
}

// cliFirst and srvFirst say who sends the first data segment.
const cliFirst, srvFirst = true, false

// loginServices are the services of the brute force cases. A negative
// size is sent by the same side as the segment before it.
var loginServices = []loginService{
	// Banners, key exchange, two password attempts.
	{"ssh", 22, loginFlow(srvFirst, 41, 32, -640, 640, 48, 460, 64, 52, 112, 48, 112, 48)},
	{"ftp", 21, loginFlow(srvFirst, 80, 14, 34, 16, 22, 14, 34, 16, 22, 14, 34, 16, 22, 6, 14)},
	{"telnet", 23, loginFlow(srvFirst, 12, 9, 15, 20, 40, 9, 10, 10, 26, 9, 10, 10, 26, 9, 10, 10, 26)},
	{"smtp", 25, loginFlow(srvFirst, 90, 25, 220, 12, 18, 20, 18, 16, 40, 12, 18, 20, 18, 16, 40, 6, 30)},
	// STARTTLS, the certificate in two segments, AUTH twice.
	{"submission", 587, loginFlow(srvFirst, 80, 22, 180, 10, 30, 517, 1448, -300, 126, 51, 90, 200, 80, 60, 90, 70)},
	{"pop3", 110, loginFlow(srvFirst, 40, 14, 20, 16, 30, 14, 20, 16, 30, 14, 20, 16, 30, 6, 20)},
	{"imap", 143, loginFlow(srvFirst, 120, 40, 40, 40, 40, 40, 40, 12, 60)},
	// SMB2 negotiate, NTLMSSP session setup twice.
	{"smb", 445, loginFlow(cliFirst, 180, 250, 160, 330, 500, 80, 160, 330, 500, 80)},
	// TDS prelogin, TLS, login7 and its error.
	{"mssql", 1433, loginFlow(cliFirst, 60, 50, 300, 900, 130, 60, 250, 200)},
	{"mysql", 3306, loginFlow(srvFirst, 78, 100, 44, 24, 80)},
	{"postgres", 5432, loginFlow(cliFirst, 8, 1, 80, 24, 54, 90, 100, 100)},
	// X.224, TLS, CredSSP with NTLM.
	{"rdp", 3389, loginFlow(cliFirst, 43, 19, 200, 1448, -120, 150, 50, 60, 300, 550, 40)},
	{"vnc", 5900, loginFlow(srvFirst, 12, 12, 3, 1, 16, 16, 4, -30)},
}

// ackAfter reports whether segment k of a flow, the run-th of a run
// from one side, is acknowledged by a bare ACK: every second one of a
// run the other side does not answer yet, and the last one.
func ackAfter(flow []loginSeg, k, run int) bool {
	return k == len(flow)-1 || (flow[k+1].cli == flow[k].cli && run%2 == 1)
}

// sessionBytes is the nominal size of one session's frames.
func (s *loginService) sessionBytes(v6 bool) int {
	hdr := 14 + 20 + 20
	if v6 {
		hdr += 20
	}
	n := 6 * hdr // handshake and FINs
	run := 0
	for k, seg := range s.segs {
		if k > 0 && seg.cli == s.segs[k-1].cli {
			run++
		} else {
			run = 0
		}
		n += hdr + seg.n
		if ackAfter(s.segs, k, run) {
			n += hdr
		}
	}
	return n
}

// exchange adds the data segments of a flow on c from t, as a sensor in
// front of the server sees them: the server answers within a few
// milliseconds, the client one round trip (rtt) and a moment of thought
// later; a run from one side goes back to back. With vary, each
// segment's size varies by up to ±3%. It returns the time of the last
// segment.
func (g *gen) exchange(c *conn, t, rtt int64, flow []loginSeg, vary bool) int64 {
	run := 0
	for k, s := range flow {
		switch {
		case k > 0 && s.cli == flow[k-1].cli:
			t += 50 + g.rng.Int64N(200) // the rest of a flight
			run++
		case k == 0 && s.cli:
			t += 50 + g.rng.Int64N(200)
			run = 0
		case s.cli:
			t += rtt + 500 + g.rng.Int64N(5_000)
			run = 0
		default:
			t += 300 + g.rng.Int64N(2_000)
			run = 0
		}
		n := s.n
		if d := n * 3 / 100; vary {
			n += g.rng.IntN(2*d+1) - d
		}
		c.send(t, s.cli, PSH|ACK, n)
		if ackAfter(flow, k, run) {
			at := t + 200
			if !s.cli {
				at = t + rtt
			}
			c.send(at, !s.cli, ACK, 0)
		}
	}
	return t
}

// handshake adds the handshake of c from its far client at t, as the
// sensor in front of the server sees it, and returns the time of the
// client's ACK.
func (g *gen) handshake(c *conn, t, rtt int64) int64 {
	c.send(t, true, SYN, 0)
	t += 100 + g.rng.Int64N(200)
	c.send(t, false, SYN|ACK, 0)
	t += rtt
	c.send(t, true, ACK, 0)
	return t
}

// finish adds the FINs of c from its far client at t and returns the
// time of the last packet.
func (g *gen) finish(c *conn, t, rtt int64) int64 {
	c.send(t, true, FIN|ACK, 0)
	t += 100 + g.rng.Int64N(200)
	c.send(t, false, FIN|ACK, 0)
	t += rtt
	c.send(t, true, ACK, 0)
	return t
}

// login adds one failed login session from cli:cport to srv's port at t
// (exchange's view and timing), each segment's size varied by up to
// ±3%. It returns the time of the last packet.
func (g *gen) login(svc *loginService, cli netip.Addr, cport uint16, srv netip.Addr, t, rtt int64) int64 {
	c := g.conn(cli, cport, srv, svc.port)
	t = g.handshake(c, t, rtt)
	t = g.exchange(c, t, rtt, svc.segs, true)
	return g.finish(c, t+rtt+1_000+g.rng.Int64N(5_000), rtt)
}

// corpusBruteForce: the attacker logs in to server again and again for
// length from start: a session every 3-8 s, or about every second if
// fast, from source ports counting up by a few.
func corpusBruteForce(g *gen, svc *loginService, attacker, server netip.Addr, start, length int64, fast bool) {
	rtt := 20_000 + g.rng.Int64N(80_000)
	cport := uint16(40000 + g.rng.IntN(20000))
	for t := start; t < start+length-2*sec; {
		g.login(svc, attacker, cport, server, t, rtt)
		cport += uint16(1 + g.rng.IntN(4))
		if fast {
			t += sec - 100_000 + g.rng.Int64N(200_001)
		} else {
			t += 3*sec + g.rng.Int64N(5*sec+1)
		}
	}
}

// sprayStarts returns n session starts from start, minGap-maxGap apart.
func sprayStarts(g *gen, start int64, n int, minGap, maxGap int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = start
		start += minGap + g.rng.Int64N(maxGap-minGap+1)
	}
	return out
}

// corpusSpraying: the attacker tries one login session on each server,
// in order, at the given starts.
func corpusSpraying(g *gen, svc *loginService, attacker netip.Addr, servers []netip.Addr, starts []int64) {
	rtt := 20_000 + g.rng.Int64N(80_000)
	cport := uint16(40000 + g.rng.IntN(20000))
	for i, srv := range servers {
		g.login(svc, attacker, cport, srv, starts[i], rtt)
		cport += uint16(1 + g.rng.IntN(4))
	}
}
