package captures

import (
	"math"
	"net/netip"
)

// background adds ordinary traffic between from and to (microseconds) at
// about 1500*scale packets/s: HTTPS connections of internal clients to
// external servers (handshake, request, a response of a few to a few
// hundred segments acknowledged every other segment, FINs), DNS queries to
// two resolvers, QUIC exchanges on UDP 443 and a ping now and then; 60%
// IPv4, 40% IPv6 whatever the attack's family. Nothing in it is near any
// rule's threshold: a client talks to at most 60 servers, on one port.
// Everything it starts ends by `to`.
func (g *gen) background(from, to int64, scale float64) {
	if scale <= 0 {
		return
	}
	g.poisson(from, to-2*sec, 25*scale, func(t int64) {
		cli, srv := g.pair()
		segs := int(math.Min(1+g.rng.ExpFloat64()*30, 300))
		g.https(t, cli, g.ephemeral(), srv, segs, 10_000+g.rng.Int64N(70_000))
	})
	g.poisson(from, to-sec, 30*scale, func(t int64) {
		p := g.fam()
		cli := p.clients[g.rng.IntN(len(p.clients))]
		res := p.resolvers[g.rng.IntN(2)]
		port := g.ephemeral()
		g.udp(t, cli, res, port, 53, 30+g.rng.IntN(30))
		g.udp(t+2_000+g.rng.Int64N(30_000), res, cli, 53, port, 60+g.rng.IntN(440))
	})
	g.poisson(from, to-2*sec, 2*scale, func(t int64) {
		cli, srv := g.pair()
		g.quic(t, cli, g.ephemeral(), srv, 40+g.rng.IntN(40), 10_000+g.rng.Int64N(60_000))
	})
	g.poisson(from, to-sec, 0.5*scale, func(t int64) {
		cli, srv := g.pair()
		id := uint16(g.rng.Uint32())
		g.echo(t, cli, srv, true, id, 1, 56)
		g.echo(t+20_000+g.rng.Int64N(40_000), srv, cli, false, id, 1, 56)
	})
}

// poisson calls f at the times of a Poisson process of the given rate
// (per second) between from and to.
func (g *gen) poisson(from, to int64, rate float64, f func(t int64)) {
	if rate <= 0 {
		return
	}
	for t := from + int64(g.rng.ExpFloat64()/rate*float64(sec)); t < to; t += 1 + int64(g.rng.ExpFloat64()/rate*float64(sec)) {
		f(t)
	}
}

// fam picks the background's family: IPv6 40% of the time.
func (g *gen) fam() *plan { return planOf(g.rng.IntN(5) < 2) }

// pair picks a background client and server of one family.
func (g *gen) pair() (netip.Addr, netip.Addr) {
	p := g.fam()
	return p.clients[g.rng.IntN(len(p.clients))], p.servers[g.rng.IntN(len(p.servers))]
}

// ephemeral returns a client port.
func (g *gen) ephemeral() uint16 { return uint16(32768 + g.rng.IntN(28232)) }

// https adds one HTTPS connection: handshake, a request, segs response
// segments 100-600 µs apart acknowledged every other one, FINs.
func (g *gen) https(t int64, cli netip.Addr, cport uint16, srv netip.Addr, segs int, rtt int64) int64 {
	c := g.conn(cli, cport, srv, 443)
	t = c.open(t, rtt)
	c.send(t+60, true, PSH|ACK, 200+g.rng.IntN(600))
	t += rtt
	gap := 100 + g.rng.Int64N(500)
	for i := range segs {
		n := 1448
		if i == segs-1 {
			n = 100 + g.rng.IntN(1348)
		}
		c.send(t, false, ACK, n)
		if i%2 == 1 || i == segs-1 {
			c.send(t+30, true, ACK, 0)
		}
		t += gap
	}
	return c.close(t+20_000+g.rng.Int64N(200_000), rtt)
}

// quic adds one QUIC exchange on UDP 443: an Initial, the server's
// first flight, then n packets mostly from the server with client
// acknowledgements.
func (g *gen) quic(t int64, cli netip.Addr, cport uint16, srv netip.Addr, n int, rtt int64) {
	g.udp(t, cli, srv, cport, 443, 1200)
	t += rtt
	for range 3 {
		g.udp(t, srv, cli, 443, cport, 1200)
		t += 50
	}
	g.udp(t+100, cli, srv, cport, 443, 1200)
	t += rtt
	for i := range n {
		g.udp(t, srv, cli, 443, cport, 1100+g.rng.IntN(150))
		if i%3 == 2 {
			g.udp(t+40, cli, srv, cport, 443, 40+g.rng.IntN(20))
		}
		t += 200 + g.rng.Int64N(2_000)
	}
}
