package captures

import "net/netip"

// The volumetric attacks: floods, reflections, amplifications, carpet
// bombing. Each writes rate packets (or datagrams) per second, evenly
// spaced, for dur microseconds from start.

// every calls f for packet i at start + i/rate seconds, i < rate*dur.
func every(start int64, rate int, dur int64, f func(i int, t int64)) {
	n := int(int64(rate) * dur / sec)
	for i := range n {
		f(i, start+int64(i)*sec/int64(rate))
	}
}

const floodLen = 3 * sec

// synFlood: 100k pps of SYN to victim:80 from the attacker (source ports
// counting up), or from random spoofed sources and ports.
func synFlood(g *gen, p *plan, start int64, spoofed bool) {
	v6 := p.victim.Is6()
	every(start, 100_000, floodLen, func(i int, t int64) {
		src, sport := p.attacker, uint16(1024+i%64000)
		if spoofed {
			src, sport = g.external(v6, true), uint16(1024+g.rng.IntN(64512))
		}
		g.tcp(t, src, p.victim, sport, 80, SYN, g.rng.Uint32(), 0, 0)
	})
}

// reflectors returns n random external addresses.
func reflectors(g *gen, n int, v6 bool) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = g.external(v6, false)
	}
	return out
}

// tcpReflection: 60k pps of SYN-ACK from 500 reflectors' port 443 to
// random ports of the victim.
func tcpReflection(g *gen, p *plan, start int64, refl []netip.Addr) {
	every(start, 60_000, floodLen, func(i int, t int64) {
		r := g.rng.IntN(len(refl))
		g.tcp(t, refl[r], p.victim, 443, uint16(1024+g.rng.IntN(64512)), SYN|ACK, g.rng.Uint32(), g.rng.Uint32(), 0)
	})
}

// udpFlood: 100k pps of 64-512 byte datagrams from the attacker to
// random ports of the victim, from random non-reflector ports.
func udpFlood(g *gen, p *plan, start int64) {
	every(start, 100_000, floodLen, func(i int, t int64) {
		g.udp(t, p.attacker, p.victim, g.randomPort(), uint16(1+g.rng.IntN(65535)), 64+g.rng.IntN(449))
	})
}

// icmpFlood: 50k pps of echo requests (56 data bytes) from the attacker.
func icmpFlood(g *gen, p *plan, start int64) {
	every(start, 50_000, floodLen, func(i int, t int64) {
		g.echo(t, p.attacker, p.victim, true, 0x4242, uint16(i), 56)
	})
}

// amplification: rate responses per second from the reflectors' port to
// random ports of the victim, each a UDP datagram of udpLen bytes (header
// included), fragmented when it does not fit a 1500-byte MTU.
func amplification(g *gen, p *plan, start int64, refl []netip.Addr, port uint16, rate, udpLen int) {
	every(start, rate, floodLen, func(i int, t int64) {
		r := refl[g.rng.IntN(len(refl))]
		dport := uint16(1024 + g.rng.IntN(64512))
		if udpLen+40 > 1500 {
			g.udpFrags(t, r, p.victim, port, dport, udpLen, g.rng.Uint32())
			return
		}
		g.udp(t, r, p.victim, port, dport, udpLen-8)
	})
}

// carpetBombing: 80k pps of UDP from random sources and non-reflector
// ports, round robin over the 256 hosts of the carpet prefix.
func carpetBombing(g *gen, p *plan, start int64) {
	base := p.carpet.Addr().As16()
	every(start, 80_000, floodLen, func(i int, t int64) {
		b := base
		b[15] = byte(i)
		dst := netip.AddrFrom16(b)
		if p.carpet.Addr().Is4() {
			dst = dst.Unmap()
		}
		g.udp(t, g.external(dst.Is6(), false), dst, g.randomPort(), uint16(1+g.rng.IntN(65535)), 64+g.rng.IntN(449))
	})
}
