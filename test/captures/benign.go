package captures

import (
	"net/netip"
)

// BenignCases returns captures no rule may fire on, each the background
// of the attack captures (IPv4 and IPv6 mixed) plus one activity:
// web_browsing (6 clients, 60 HTTPS sites, parallel connections and
// QUIC, 60 s), dns_lookups (50 clients, ~300 queries/s to 2 resolvers per
// family, 3% over TCP, answers up to 1200 bytes, 60 s), large_download
// (one 100 Mbit/s TCP download, 30 s), video_call (RTP-like UDP both
// ways, 2.5 Mbit/s, 300 pps each way, 60 s) and backup_upload (one SSH
// session to an external host, 50 Mbit/s upload, 60 s).
func BenignCases() []DetectionCase {
	benign := []scenario{
		{name: "web_browsing", end: 62 * sec, hint: 150_000, build: webBrowsing},
		{name: "dns_lookups", end: 62 * sec, hint: 40_000, build: dnsLookups},
		{name: "large_download", end: 42 * sec, hint: 390_000, build: largeDownload},
		{name: "video_call", end: 72 * sec, hint: 40_000, build: videoCall},
		{name: "backup_upload", end: 72 * sec, hint: 400_000, build: backupUpload},
	}
	return benignCases(benign)
}

// benignCases makes cases of benign scenarios: the background plus the
// scenario's traffic, none of it counted as an attack.
func benignCases(benign []scenario) []DetectionCase {
	out := make([]DetectionCase, len(benign))
	for i, s := range benign {
		s.bg = 1
		build := s.build
		s.build = func(g *gen) {
			g.attack = false
			build(g)
		}
		out[i] = s.detectionCase()
	}
	return out
}

// webBrowsing: 6 clients (4 IPv4, 2 IPv6) load pages from 60 sites (30
// per family) from 1 s to 58 s: a DNS query, then 4-6 parallel HTTPS
// connections to the site, or a QUIC exchange one time in three.
func webBrowsing(g *gen) {
	sites4 := hosts("203.0.113.0/24", 160, 30)
	sites6 := hosts("2001:db8:ff:2::/64", 0x160, 30)
	clients := append(hosts("10.1.0.0/24", 130, 4), hosts("2001:db8:1::/64", 0x130, 2)...)
	for ci, cli := range clients {
		sites, res := sites4, plan4.resolvers
		if cli.Is6() {
			sites, res = sites6, plan6.resolvers
		}
		g.poisson(1*sec+int64(ci)*100_000, 58*sec, 0.4, func(t int64) {
			site := sites[g.rng.IntN(len(sites))]
			port := g.ephemeral()
			g.udp(t, cli, res[0], port, 53, 40)
			t += 15_000
			g.udp(t, res[0], cli, 53, port, 120)
			t += 1_000
			if g.rng.IntN(3) == 0 {
				g.quic(t, cli, g.ephemeral(), site, 50+g.rng.IntN(150), 20_000+g.rng.Int64N(40_000))
				return
			}
			for range 4 + g.rng.IntN(3) {
				segs := int(min(1+g.rng.ExpFloat64()*60, 400))
				g.https(t+g.rng.Int64N(5_000), cli, g.ephemeral(), site, segs, 20_000+g.rng.Int64N(40_000))
			}
		})
	}
}

// dnsLookups: 50 clients (35 IPv4, 15 IPv6) send about 300 queries/s in
// all from 1 s to 61 s; answers are 60-1200 bytes; 3% go over TCP.
func dnsLookups(g *gen) {
	clients := append(hosts("10.1.1.0/24", 1, 35), hosts("2001:db8:1:1::/64", 1, 15)...)
	g.poisson(1*sec, 61*sec, 300, func(t int64) {
		cli := clients[g.rng.IntN(len(clients))]
		res := planOf(cli.Is6()).resolvers[g.rng.IntN(2)]
		port := g.ephemeral()
		answer := 60 + g.rng.IntN(400)
		if g.rng.IntN(10) == 0 {
			answer = 500 + g.rng.IntN(701)
		}
		if g.rng.IntN(100) < 3 {
			c := g.conn(cli, port, res, 53)
			t = c.open(t, 5_000)
			c.send(t+50, true, PSH|ACK, 40)
			c.send(t+5_000, false, PSH|ACK, answer)
			c.close(t+5_100, 5_000)
			return
		}
		g.udp(t, cli, res, port, 53, 30+g.rng.IntN(30))
		g.udp(t+1_000+g.rng.Int64N(40_000), res, cli, 53, port, answer)
	})
}

// largeDownload: 10.1.0.140 downloads from 198.51.100.80:443 at 8.5k
// segments/s (1448 bytes: 103 Mbit/s of frames) from 5 s for 30 s,
// acknowledging every other segment.
func largeDownload(g *gen) {
	c := g.conn(netip.MustParseAddr("10.1.0.140"), 51000, netip.MustParseAddr("198.51.100.80"), 443)
	t := c.open(5*sec, 15_000)
	c.send(t+50, true, PSH|ACK, 400)
	t += 15_000
	const n = 8500 * 30
	for i := range int64(n) {
		at := t + i*sec/8500
		c.send(at, false, ACK, 1448)
		if i%2 == 1 {
			c.send(at+40, true, ACK, 0)
		}
	}
	c.close(t+30*sec+100_000, 15_000)
}

// videoCall: 10.1.0.150:16400 and 203.0.113.90:17800 exchange 300
// datagrams/s each way (about 1040 bytes: 2.5 Mbit/s) from 5 s for 60 s,
// with an RTCP-like report on the next ports every second.
func videoCall(g *gen) {
	a, b := netip.MustParseAddr("10.1.0.150"), netip.MustParseAddr("203.0.113.90")
	const ap, bp = 16400, 17800
	for i := range int64(300 * 60) {
		t := 5*sec + i*sec/300
		g.udp(t+g.rng.Int64N(500), a, b, ap, bp, 940+g.rng.IntN(200))
		g.udp(t+1_700+g.rng.Int64N(500), b, a, bp, ap, 940+g.rng.IntN(200))
		if i%300 == 0 {
			g.udp(t+900, a, b, ap+1, bp+1, 80)
			g.udp(t+2_900, b, a, bp+1, ap+1, 80)
		}
	}
}

// backupUpload: 2001:db8:1::140 uploads over SSH to 2001:db8:ff::22 port
// 22 at 4.3k segments/s (1448 bytes: 52 Mbit/s of frames) from 5 s for
// 60 s; the server acknowledges every other segment.
func backupUpload(g *gen) {
	c := g.conn(netip.MustParseAddr("2001:db8:1::140"), 50500, netip.MustParseAddr("2001:db8:ff::22"), 22)
	t := c.open(5*sec, 25_000)
	c.send(t+1_000, false, PSH|ACK, 41)
	c.send(t+2_000, true, PSH|ACK, 32)
	t += 30_000
	const rate = 4300
	for i := range int64(rate * 60) {
		at := t + i*sec/rate
		c.send(at, true, ACK, 1448)
		if i%2 == 1 {
			c.send(at+25_000, false, ACK, 0)
		}
	}
	c.close(t+60*sec+100_000, 25_000)
}
