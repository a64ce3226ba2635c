package captures

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// The attacks on hosts: scans, brute forces, an intel hit, a host that
// goes silent and a traffic spike.

// scanPorts are the ports the port scan finds open.
var scanPorts = []uint16{22, 80, 443}

// portScan: the attacker SYN-scans ports 1-65535 of the victim in a
// random order at 10k pps from one source port. The victim answers
// SYN-ACK on the open ports (the attacker resets) and RST-ACK on a random
// 10% of the others; the rest is filtered.
func portScan(g *gen, p *plan, start int64) {
	ports := make([]uint16, 65535)
	for i := range ports {
		ports[i] = uint16(i + 1)
	}
	g.rng.Shuffle(len(ports), func(i, j int) { ports[i], ports[j] = ports[j], ports[i] })
	const sport = 61000
	every(start, 10_000, 65535*sec/10_000+1, func(i int, t int64) {
		port := ports[i]
		seq := g.rng.Uint32()
		g.tcp(t, p.attacker, p.victim, sport, port, SYN, seq, 0, 0)
		switch {
		case slices.Contains(scanPorts, port):
			g.tcp(t+300, p.victim, p.attacker, port, sport, SYN|ACK, g.rng.Uint32(), seq+1, 0)
			g.tcp(t+350, p.attacker, p.victim, sport, port, RST, seq+1, 0, 0)
		case g.rng.IntN(10) == 0:
			g.tcp(t+300, p.victim, p.attacker, port, sport, RST|ACK, 0, seq+1, 0)
		}
	})
}

// sweepTargets returns n distinct hosts of the sweep prefix: IPv4 in
// 10.1.0.0/16 but not in the carpet prefix, IPv6 with random interface
// identifiers; never a background client or a host of the plan.
func sweepTargets(g *gen, p *plan, n int) []netip.Addr {
	seen := make(map[netip.Addr]bool, n)
	out := make([]netip.Addr, 0, n)
	base := p.sweep.Addr().As16()
	for len(out) < n {
		b := base
		if p.sweep.Addr().Is4() {
			binary.BigEndian.PutUint16(b[14:], uint16(g.rng.Uint32()))
		} else {
			binary.BigEndian.PutUint64(b[8:], g.rng.Uint64())
		}
		a := netip.AddrFrom16(b)
		if p.sweep.Addr().Is4() {
			a = a.Unmap()
		}
		if seen[a] || p.carpet.Contains(a) || slices.Contains(p.clients, a) || p.special(a) {
			continue
		}
		seen[a] = true
		out = append(out, a)
	}
	return out
}

// special reports whether a is one of the plan's named hosts.
func (p *plan) special(a netip.Addr) bool {
	return a == p.victim || a == p.ssh || a == p.rdp || a == p.intelCli || a == p.watched || a == p.spikeDst
}

// hostSweep: the attacker sends SYN to port 22 of each target at 5000
// pps; 2% answer SYN-ACK and the attacker resets.
func hostSweep(g *gen, p *plan, start int64, targets []netip.Addr) {
	every(start, 5000, int64(len(targets))*sec/5000, func(i int, t int64) {
		dst := targets[i]
		sport := uint16(40000 + i%20000)
		seq := g.rng.Uint32()
		g.tcp(t, p.attacker, dst, sport, 22, SYN, seq, 0, 0)
		if g.rng.IntN(50) == 0 {
			g.tcp(t+1_000, dst, p.attacker, 22, sport, SYN|ACK, g.rng.Uint32(), seq+1, 0)
			g.tcp(t+1_050, p.attacker, dst, sport, 22, RST, seq+1, 0, 0)
		}
	})
}

// Brute force timing: 20 connections per second for 120 s.
const (
	bruteRate  = 20
	bruteLen   = 120 * sec
	bruteConns = int(bruteRate * bruteLen / sec)
	bruteRTT   = 30_000
)

// bruteSizes are the data segments of one failed login, alternating from
// the server (its banner first) and the client.
var bruteSizes = []int{41, 32, 1080, 1024, 48, 500, 96, 64}

// bruteForce: the attacker opens bruteConns connections to server:port,
// 1/bruteRate s apart from source ports counting up from 40000; each one
// has a handshake, eight data segments over about a second and FINs.
// It returns the next source port.
func bruteForce(g *gen, p *plan, server netip.Addr, port uint16, start int64) uint16 {
	for i := range bruteConns {
		c := g.conn(p.attacker, uint16(40000+i), server, port)
		t := c.open(start+int64(i)*sec/bruteRate, bruteRTT)
		for k, n := range bruteSizes {
			t += 100_000 + g.rng.Int64N(40_000)
			c.send(t, k%2 == 1, PSH|ACK, n)
		}
		c.close(t+50_000, 200)
	}
	return uint16(40000 + bruteConns)
}

// Successful session after the brute force: 40 packets/s each way for
// 90 s.
const (
	sessionGap = 10 * sec
	sessionLen = 90 * sec
)

// session adds an interactive session of the attacker to server:22 from
// start: handshake, 3600 data segments each way, FINs.
func session(g *gen, p *plan, server netip.Addr, sport uint16, start int64) {
	c := g.conn(p.attacker, sport, server, 22)
	t := c.open(start, bruteRTT)
	n := int(40 * sessionLen / sec)
	for i := range n {
		at := t + 1_000 + int64(i)*sec/40
		c.send(at, true, PSH|ACK, 36+g.rng.IntN(60))
		c.send(at+12_500, false, PSH|ACK, 36+g.rng.IntN(400))
	}
	c.close(t+1_000+sessionLen, bruteRTT)
}

// intelSession: the internal host holds a TCP session to the intel
// address on port 443 for 60 s, 2000 data segments each way.
func intelSession(g *gen, p *plan, start int64) {
	c := g.conn(p.intelCli, 50123, p.intel, 443)
	t := c.open(start, 40_000)
	for i := range 2000 {
		at := t + 1_000 + int64(i)*60*sec/2000
		c.send(at, true, PSH|ACK, 100+g.rng.IntN(400))
		c.send(at+15_000, false, PSH|ACK, 200+g.rng.IntN(1200))
	}
	c.close(t+61*sec, 40_000)
}

// Silent host timing: 200 pps for 240 s, then 180 s of silence.
const (
	silentLen   = 240 * sec
	silentAfter = 180 * sec
)

// silentHost: the watched host sends 200 pps of TCP data over three
// connections to external servers for silentLen from start, acknowledged
// every fourth segment, then stops dead (no FIN). It returns the time of
// its last packet.
func silentHost(g *gen, p *plan, start int64) int64 {
	var cs [3]*conn
	for i := range cs {
		cs[i] = g.conn(p.watched, uint16(45000+i), p.silentTo[i], 443)
		cs[i].open(start+int64(i)*1_000, 20_000)
	}
	n := int(200 * (silentLen - 100_000) / sec)
	last := int64(0)
	for i := range n {
		last = start + 100_000 + int64(i)*sec/200
		c := cs[i%3]
		c.send(last, true, PSH|ACK, 200+g.rng.IntN(1000))
		if i%12 >= 9 {
			c.send(last+20_000, false, ACK, 0)
		}
	}
	return last
}

// Traffic spike timing: 90 s at 2000 pps, 10 s at 25k pps, 20 s at 2000.
const (
	spikeBefore = 90 * sec
	spikeLen    = 10 * sec
	spikeAfter  = 20 * sec
)

// trafficSpike: a steady download from spikeSrc to spikeDst (2000 pps,
// the rate of each second drawn within ±10%), 25k pps during the spike,
// client ACKs every fourth segment. It returns the time of the spike's
// first packet.
func trafficSpike(g *gen, p *plan, start int64) int64 {
	c := g.conn(p.spikeDst, 52000, p.spikeSrc, 443)
	c.open(start, 20_000)
	c.send(start+20_100, true, PSH|ACK, 300)
	data := start + 50_000
	spikeAt := int64(0)
	k := 0
	for s := int64(0); s < (spikeBefore+spikeLen+spikeAfter)/sec; s++ {
		from := data + s*sec
		rate := int64(2000 * (0.9 + 0.2*g.rng.Float64()))
		if s >= spikeBefore/sec && s < (spikeBefore+spikeLen)/sec {
			rate = 25_000
			if spikeAt == 0 {
				spikeAt = from
			}
		}
		for i := range rate {
			t := from + i*sec/rate
			c.send(t, false, ACK, 1448)
			if k%4 == 3 {
				c.send(t+30, true, ACK, 0)
			}
			k++
		}
	}
	c.close(data+(spikeBefore+spikeLen+spikeAfter)+100_000, 20_000)
	return spikeAt
}
