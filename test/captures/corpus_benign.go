package captures

import (
	"math"
	"net/netip"
)

// CorpusBenign returns the benign backgrounds of the evaluation corpus:
// traffic that looks like an attack to a detector that judges one
// measure alone, each on top of the background of the detection
// captures. No rule may fire on any of them.
//
//   - fast_download: one TCP download at 1 Gbit/s (85k segments/s) for
//     12 s, a UDP flood's rate from one source;
//   - speed_test: 16 TCP streams from 4 servers, 10 s down then 10 s up
//     at 800 Mbit/s in all, latency pings between;
//   - ssh_backup: an SSH upload at 400 Mbit/s for 20 s and 8 short SSH
//     commands to the same server (sessions of different sizes);
//   - busy_resolver: a recursive resolver sending 2500 queries/s to 900
//     authoritative servers, 3% of the answers fragmented: reflection's
//     shape (many sources, port 53, one host, random ports) with the
//     queries that make it benign;
//   - nat_gateway: one public address with thousands of clients behind
//     it: 1200 TCP and QUIC connections/s to 4000 servers on 443 and 80
//     and their answers, DNS to 4 resolvers, NTP: tcp and udp
//     reflection's shape and a sweep's fan-out, all answered;
//   - cdn_edge: a server taking 3000 new HTTPS connections/s from 20k
//     clients;
//   - video_call: a conference relay sending 12 streams (2.4k
//     datagrams/s) from one port to one client, and the client's own;
//   - mail_server: 150 MTAs delivering 12 messages/s to port 25, one of
//     them 20 messages in two minutes (sizes of real mail, not of a
//     login attempt).
func CorpusBenign() []DetectionCase {
	benign := []scenario{
		{name: "fast_download", end: 25 * sec, hint: 1_600_000, build: fastDownload},
		{name: "speed_test", end: 30 * sec, hint: 1_500_000, build: speedTest},
		{name: "ssh_backup", end: 30 * sec, hint: 1_100_000, build: sshBackup},
		{name: "busy_resolver", end: 40 * sec, hint: 200_000, build: busyResolver},
		{name: "nat_gateway", end: 40 * sec, hint: 900_000, build: natGateway},
		{name: "cdn_edge", end: 30 * sec, hint: 900_000, build: cdnEdge},
		{name: "video_call_relay", end: 40 * sec, hint: 110_000, build: conferenceRelay},
		{name: "mail_server", end: 130 * sec, hint: 200_000, build: mailServer},
	}
	return benignCases(benign)
}

// externals returns n random external addresses of the family.
func (g *gen) externals(n int, v6 bool) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = g.external(v6, false)
	}
	return out
}

// popular returns an index below n, the first ones far more often than
// the last (log-uniform: Zipf-like, as queries to servers are).
func (g *gen) popular(n int) int {
	return min(n-1, int(math.Exp(g.rng.Float64()*math.Log(float64(n)))))
}

// bulk adds a bulk transfer on c: rate segments/s of 1448 bytes for dur
// from t, from the server (down) or the client, acknowledged every other
// segment one rtt/2 later.
func bulk(c *conn, t, dur int64, rate int, down bool, rtt int64) {
	n := int64(rate) * dur / sec
	for i := range n {
		at := t + i*sec/int64(rate)
		c.send(at, !down, ACK, 1448)
		if i%2 == 1 {
			c.send(at+rtt/2, down, ACK, 0)
		}
	}
}

// fastDownload: 10.1.0.141 downloads from 198.51.100.81:443 at 85k
// segments/s (1 Gbit/s) from 5 s for 12 s.
func fastDownload(g *gen) {
	c := g.conn(netip.MustParseAddr("10.1.0.141"), 52000, netip.MustParseAddr("198.51.100.81"), 443)
	t := c.open(5*sec, 8_000)
	c.send(t+50, true, PSH|ACK, 500)
	bulk(c, t+8_000, 12*sec, 85_000, true, 8_000)
	c.close(t+12*sec+50_000, 8_000)
}

// speedTest: 2001:db8:1::142 opens 4 streams to each of 4 servers on
// port 8080; 10 s of download at 70k segments/s in all, 2 s of pings,
// 10 s of upload at 70k segments/s.
func speedTest(g *gen) {
	cli := netip.MustParseAddr("2001:db8:1::142")
	servers := hosts("2001:db8:ff:5::/64", 0x80, 4)
	var conns []*conn
	t := 4 * sec
	for i, srv := range servers {
		for k := range 4 {
			c := g.conn(cli, uint16(53000+4*i+k), srv, 8080)
			c.open(t+int64(4*i+k)*3_000, 12_000)
			conns = append(conns, c)
		}
	}
	t = 5 * sec
	for _, c := range conns {
		bulk(c, t+g.rng.Int64N(1_000), 10*sec, 70_000/len(conns), true, 12_000)
	}
	t += 10 * sec
	for i := range 40 {
		at := t + int64(i)*50_000
		srv := servers[i%len(servers)]
		g.udp(at, cli, srv, 53100, 8080, 32)
		g.udp(at+12_000, srv, cli, 8080, 53100, 32)
	}
	t += 2 * sec
	for _, c := range conns {
		bulk(c, t+g.rng.Int64N(1_000), 10*sec, 70_000/len(conns), false, 12_000)
	}
	t += 10*sec + 100_000
	for _, c := range conns {
		c.close(t, 12_000)
		t += 1_000
	}
}

// sshBackup: 10.1.0.143 uploads to 203.0.113.122:22 at 34k segments/s
// (400 Mbit/s) from 5 s for 20 s, and runs 8 short commands over SSH on
// the same server, each a session of its own with different output.
func sshBackup(g *gen) {
	cli, srv := netip.MustParseAddr("10.1.0.143"), netip.MustParseAddr("203.0.113.122")
	c := g.conn(cli, 50600, srv, 22)
	t := c.open(5*sec, 10_000)
	c.send(t+1_000, false, PSH|ACK, 41)
	c.send(t+2_000, true, PSH|ACK, 32)
	bulk(c, t+20_000, 20*sec, 34_000, false, 10_000)
	c.close(t+20*sec+100_000, 10_000)
	ssh := loginServices[0]
	for i := range 8 {
		s := g.conn(cli, uint16(50700+i), srv, 22)
		at := s.open(6*sec+int64(i)*2_500_000, 10_000)
		at = g.exchange(s, at, 10_000, ssh.segs[:6], false)
		// The command's output: from a line to a few hundred kB.
		out := int(math.Exp(5 + g.rng.Float64()*7))
		for out > 0 {
			n := min(out, 1448)
			at += 200
			s.send(at, false, PSH|ACK, n)
			out -= n
		}
		s.send(at+10_000, true, ACK, 0)
		s.close(at+20_000, 10_000)
	}
}

// busyResolver: 10.1.0.153 resolves for the site: 2500 queries/s from 2
// s to 37 s to 900 authoritative servers (a few popular ones most of
// the time), answers of 100-1400 bytes 10-80 ms later, 3% of them
// DNSSEC answers of 1500-3500 bytes in fragments.
func busyResolver(g *gen) {
	res := netip.MustParseAddr("10.1.0.153")
	auth := g.externals(900, false)
	g.poisson(2*sec, 37*sec, 2500, func(t int64) {
		a := auth[g.popular(len(auth))]
		port := g.ephemeral()
		g.udp(t, res, a, port, 53, 40+g.rng.IntN(40))
		at := t + 10_000 + g.rng.Int64N(70_000)
		if g.rng.IntN(100) < 3 {
			g.udpFrags(at, a, res, 53, port, 1500+g.rng.IntN(2001), g.rng.Uint32())
			return
		}
		g.udp(at, a, res, 53, port, 100+g.rng.IntN(1300))
	})
}

// natGateway: 198.51.100.200 is the public address of thousands of
// clients. From 2 s to 37 s it opens 900 HTTPS connections/s (80 on
// port 80) and 300 QUIC ones to 4000 servers; the answers converge on
// it from their port 443, to its random ports. 500 DNS queries/s go to 4
// public resolvers and 20 NTP requests/s to 12 servers.
func natGateway(g *gen) {
	nat := netip.MustParseAddr("198.51.100.200")
	srvs := g.externals(4000, false)
	pick := func() netip.Addr { return srvs[g.popular(len(srvs))] }
	resolvers, ntp := srvs[4000-4:], srvs[4000-16:4000-4]
	g.poisson(2*sec, 37*sec, 900, func(t int64) {
		c := g.conn(nat, uint16(1024+g.rng.IntN(64512)), pick(), 443)
		if g.rng.IntN(12) == 0 {
			c.sport = 80
		}
		rtt := 10_000 + g.rng.Int64N(90_000)
		at := c.open(t, rtt)
		c.send(at+50, true, PSH|ACK, 300+g.rng.IntN(500))
		at += rtt
		segs := int(math.Min(1+g.rng.ExpFloat64()*12, 200))
		for i := range segs {
			c.send(at, false, ACK, 1448)
			if i%2 == 1 || i == segs-1 {
				c.send(at+rtt/2, true, ACK, 0)
			}
			at += 100 + g.rng.Int64N(400)
		}
		if g.rng.IntN(4) == 0 {
			c.send(at+rtt, true, RST|ACK, 0) // an abandoned connection
			return
		}
		c.close(at+rtt+g.rng.Int64N(500_000), rtt)
	})
	g.poisson(2*sec, 37*sec, 300, func(t int64) {
		g.quic(t, nat, uint16(1024+g.rng.IntN(64512)), pick(), 5+g.rng.IntN(40), 10_000+g.rng.Int64N(60_000))
	})
	g.poisson(2*sec, 38*sec, 500, func(t int64) {
		r, port := resolvers[g.rng.IntN(len(resolvers))], uint16(1024+g.rng.IntN(64512))
		g.udp(t, nat, r, port, 53, 30+g.rng.IntN(40))
		g.udp(t+5_000+g.rng.Int64N(40_000), r, nat, 53, port, 60+g.rng.IntN(500))
	})
	g.poisson(2*sec, 38*sec, 20, func(t int64) {
		s, port := ntp[g.rng.IntN(len(ntp))], uint16(1024+g.rng.IntN(64512))
		g.udp(t, nat, s, port, 123, 48)
		g.udp(t+10_000+g.rng.Int64N(40_000), s, nat, 123, port, 48)
	})
}

// cdnEdge: 2001:db8:1::144 serves HTTPS: 3000 new connections/s from 2
// s to 27 s from 20k clients, each a request and 1-40 segments back.
func cdnEdge(g *gen) {
	edge := netip.MustParseAddr("2001:db8:1::144")
	clients := g.externals(20_000, true)
	g.poisson(2*sec, 27*sec, 3000, func(t int64) {
		c := g.conn(clients[g.rng.IntN(len(clients))], uint16(1024+g.rng.IntN(64512)), edge, 443)
		rtt := 5_000 + g.rng.Int64N(150_000)
		// As the sensor in front of the edge sees it.
		c.send(t, true, SYN, 0)
		c.send(t+100, false, SYN|ACK, 0)
		at := t + rtt
		c.send(at, true, ACK, 0)
		c.send(at+50, true, PSH|ACK, 200+g.rng.IntN(600))
		at += 500
		segs := 1 + g.rng.IntN(40)
		for i := range segs {
			c.send(at, false, ACK, 1448)
			if i%2 == 1 || i == segs-1 {
				c.send(at+rtt, true, ACK, 0)
			}
			at += 50 + g.rng.Int64N(200)
		}
		c.send(at+rtt, true, FIN|ACK, 0)
		c.send(at+rtt+100, false, FIN|ACK, 0)
		c.send(at+2*rtt, true, ACK, 0)
	})
}

// conferenceRelay: a conference relay 203.0.113.95:8801 sends 12
// participants' streams to 10.1.0.151:50000 (12 x 200 datagrams/s, 100
// to 1200 bytes) from 5 s for 30 s; the client sends its own video and
// audio back (400 datagrams/s) and reports every second.
func conferenceRelay(g *gen) {
	cli, relay := netip.MustParseAddr("10.1.0.151"), netip.MustParseAddr("203.0.113.95")
	for i := range int64(2400 * 30) {
		t := 5*sec + i*sec/2400
		g.udp(t+g.rng.Int64N(300), relay, cli, 8801, 50000, 100+g.rng.IntN(1100))
		if i%6 == 0 {
			g.udp(t+200+g.rng.Int64N(200), cli, relay, 50000, 8801, 200+g.rng.IntN(1000))
		}
		if i%2400 == 0 {
			g.udp(t+700, cli, relay, 50001, 8802, 120)
		}
	}
}

// mailServer: 10.1.0.25:25 receives 12 messages/s from 150 MTAs from 2
// s to 125 s; one of them (a mailing list's) delivers 20 messages of
// real sizes in those two minutes. Message sizes are log-normal (median
// about 20 kB).
func mailServer(g *gen) {
	srv := netip.MustParseAddr("10.1.0.25")
	mtas := g.externals(150, false)
	deliver := func(t int64, mta netip.Addr) {
		c := g.conn(mta, uint16(1024+g.rng.IntN(64512)), srv, 25)
		rtt := 10_000 + g.rng.Int64N(100_000)
		at := c.open(t, rtt)
		// Banner, EHLO, STARTTLS, MAIL, RCPT, DATA.
		for k, n := range []int{90, 25, 220, 10, 30, 40, 8, 30, 40, 6, 40} {
			at += 300 + g.rng.Int64N(2_000)
			if k%2 == 1 {
				at += rtt
			}
			c.send(at, k%2 == 1, PSH|ACK, n)
		}
		msg := int(math.Exp(math.Log(20_000) + g.rng.NormFloat64()*1.2))
		for i := 0; msg > 0; i++ {
			n := min(msg, 1448)
			at += 100
			c.send(at, true, ACK, n)
			if i%2 == 1 {
				c.send(at+rtt/2, false, ACK, 0)
			}
			msg -= n
		}
		c.send(at+rtt, false, PSH|ACK, 40)
		c.close(at+2*rtt, rtt)
	}
	g.poisson(2*sec, 125*sec, 12, func(t int64) { deliver(t, mtas[g.rng.IntN(len(mtas))]) })
	list := netip.MustParseAddr("203.0.113.96")
	for i := range 20 {
		deliver(3*sec+int64(i)*6*sec+g.rng.Int64N(sec), list)
	}
}
