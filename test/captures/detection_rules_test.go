package captures

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// ruleChecks check the attack packets of a case against the brief of
// its rule.
var ruleChecks = map[string]func(t *testing.T, c DetectionCase, a []rec){
	"syn_flood":               checkSynFlood,
	"syn_flood_spoofed":       checkSynFlood,
	"tcp_reflection_flood":    checkTCPReflection,
	"udp_flood":               checkUDPFlood,
	"icmp_flood":              checkICMPFlood,
	"dns_amplification":       checkAmplification,
	"ntp_amplification":       checkAmplification,
	"ssdp_amplification":      checkAmplification,
	"memcached_amplification": checkAmplification,
	"udp_amplification":       checkAmplification,
	"carpet_bombing":          checkCarpet,
	"port_scan":               checkPortScan,
	"host_sweep":              checkHostSweep,
	"ssh_brute_force":         checkBruteForce,
	"rdp_brute_force":         checkBruteForce,
	"brute_force_success":     checkBruteForce,
	"intel_hit":               checkIntelHit,
	"silent_host":             checkSilentHost,
	"traffic_spike":           checkTrafficSpike,
}

func planFor(c DetectionCase) *plan { return planOf(c.Family == 6) }

// caseKind is a case's name without its family: "dns_amplification".
func caseKind(c DetectionCase) string {
	return strings.TrimSuffix(strings.TrimSuffix(c.Name, "-v4"), "-v6")
}

// perSecond counts the packets matching f in each second since the start.
func perSecond(a []rec, f func(r rec) bool) map[int64]int {
	m := map[int64]int{}
	for _, r := range a {
		if f(r) {
			m[r.t/sec]++
		}
	}
	return m
}

// wantRate checks that each second in [from, to) holds want packets, to
// within tol.
func wantRate(t *testing.T, what string, counts map[int64]int, from, to int64, want, tol int) {
	t.Helper()
	for s := from; s < to; s++ {
		if n := counts[s]; n < want-tol || n > want+tol {
			t.Errorf("%s: %d packets in second %d, want %d±%d", what, n, s, want, tol)
		}
	}
	for s, n := range counts {
		if (s < from || s >= to) && n > 0 {
			t.Errorf("%s: %d packets in second %d, outside [%d, %d)", what, n, s, from, to)
		}
	}
}

func all(r rec) bool { return true }

// mustAll fails unless every attack packet satisfies f.
func mustAll(t *testing.T, what string, a []rec, f func(r rec) bool) {
	t.Helper()
	for _, r := range a {
		if !f(r) {
			t.Fatalf("attack packet %+v is not %s", r, what)
		}
	}
}

func count(a []rec, f func(r rec) bool) int {
	n := 0
	for _, r := range a {
		if f(r) {
			n++
		}
	}
	return n
}

func distinct[K comparable](a []rec, f func(r rec) (K, bool)) map[K]int {
	m := map[K]int{}
	for _, r := range a {
		if k, ok := f(r); ok {
			m[k]++
		}
	}
	return m
}

func checkSynFlood(t *testing.T, c DetectionCase, a []rec) {
	p := planFor(c)
	mustAll(t, "a SYN to victim:80 from outside", a, func(r rec) bool {
		return r.proto == 6 && r.flags == SYN && r.dst == p.victim && r.dport == 80 && !p.internal.Contains(r.src)
	})
	wantRate(t, "SYN", perSecond(a, all), 5, 8, 100_000, 0)
	srcs := distinct(a, func(r rec) (netip.Addr, bool) { return r.src, true })
	if !strings.HasPrefix(c.Name, "syn_flood_spoofed") {
		if len(srcs) != 1 || srcs[p.attacker] == 0 {
			t.Errorf("sources %v, want only the attacker", srcs)
		}
		return
	}
	// Spoofed: nearly all distinct, spread over the whole space.
	top := distinct(a, func(r rec) (byte, bool) { return r.src.AsSlice()[0], true })
	ports := distinct(a, func(r rec) (uint16, bool) { return r.sport, true })
	if len(srcs) < 299_000 || len(top) < 250 || len(ports) < 60_000 {
		t.Errorf("%d distinct sources, %d distinct first bytes, %d source ports: not spread", len(srcs), len(top), len(ports))
	}
}

func checkTCPReflection(t *testing.T, c DetectionCase, a []rec) {
	p := planFor(c)
	mustAll(t, "a SYN-ACK from port 80 or 443 to the victim", a, func(r rec) bool {
		return r.proto == 6 && r.flags == SYN|ACK && r.dst == p.victim && (r.sport == 80 || r.sport == 443) && r.dport >= 1024
	})
	wantRate(t, "SYN-ACK", perSecond(a, all), 5, 8, 60_000, 0)
	if n := len(distinct(a, func(r rec) (netip.Addr, bool) { return r.src, true })); n != 500 {
		t.Errorf("%d reflectors, want 500", n)
	}
}

func checkUDPFlood(t *testing.T, c DetectionCase, a []rec) {
	p := planFor(c)
	mustAll(t, "64-512 bytes of UDP from a non-reflector port of the attacker to the victim", a, func(r rec) bool {
		return r.proto == 17 && !r.frag && r.src == p.attacker && r.dst == p.victim && r.sport >= 1024 &&
			!slices.Contains(reflectorPorts, r.sport) && r.l4 >= 64 && r.l4 <= 512
	})
	wantRate(t, "UDP", perSecond(a, all), 5, 8, 100_000, 0)
	if n := len(distinct(a, func(r rec) (uint16, bool) { return r.dport, true })); n < 60_000 {
		t.Errorf("%d destination ports, want random ones", n)
	}
}

func checkICMPFlood(t *testing.T, c DetectionCase, a []rec) {
	p := planFor(c)
	mustAll(t, "an echo request from the attacker to the victim", a, func(r rec) bool {
		return r.src == p.attacker && r.dst == p.victim &&
			((r.proto == 1 && r.dport == 8<<8) || (r.proto == 58 && r.dport == 128<<8))
	})
	wantRate(t, "echo requests", perSecond(a, all), 5, 8, 50_000, 0)
}

// amplifications: reflector port, reflectors, datagrams/s, UDP length,
// IP packets per datagram, minimum bits/s.
var amplifications = map[string]struct {
	port                 uint16
	reflectors           int
	rate, udpLen, frames int
	bps                  float64
}{
	"dns_amplification":       {53, 300, 5000, 3000, 3, 50e6},
	"ntp_amplification":       {123, 200, 20_000, 490, 1, 20e6},
	"ssdp_amplification":      {1900, 200, 20_000, 328, 1, 20e6},
	"memcached_amplification": {11211, 100, 5000, 4000, 3, 20e6},
	"udp_amplification":       {389, 100, 10_000, 1408, 1, 20e6},
}

func checkAmplification(t *testing.T, c DetectionCase, a []rec) {
	p := planFor(c)
	want := amplifications[caseKind(c)]
	mustAll(t, "UDP from the reflector port to the victim", a, func(r rec) bool {
		return r.proto == 17 && r.dst == p.victim && !p.internal.Contains(r.src) &&
			(r.nonFirst || (r.sport == want.port && r.dport >= 1024 && r.l4 == want.udpLen-8)) &&
			r.frag == (want.frames > 1)
	})
	first := func(r rec) bool { return !r.nonFirst }
	wantRate(t, "datagrams", perSecond(a, first), 5, 8, want.rate, 0)
	if n, nf := count(a, first), count(a, func(r rec) bool { return r.nonFirst }); nf != (want.frames-1)*n {
		t.Errorf("%d datagrams, %d non-first fragments, want %d fragments each", n, nf, want.frames)
	}
	if n := len(distinct(a, func(r rec) (netip.Addr, bool) { return r.src, true })); n > want.reflectors || n < want.reflectors*9/10 {
		t.Errorf("%d reflectors, want %d", n, want.reflectors)
	}
	var bits float64
	for _, r := range a {
		bits += float64(8 * r.length)
	}
	if bps := bits / 3; bps < 1.5*want.bps {
		t.Errorf("%.1f Mbit/s, want at least 1.5 × %.0f", bps/1e6, want.bps/1e6)
	}
}

func checkCarpet(t *testing.T, c DetectionCase, a []rec) {
	p := planFor(c)
	mustAll(t, "UDP from a random outside non-reflector port to the carpet prefix", a, func(r rec) bool {
		return r.proto == 17 && p.carpet.Contains(r.dst) && !p.internal.Contains(r.src) && r.sport >= 1024 &&
			!slices.Contains(reflectorPorts, r.sport)
	})
	wantRate(t, "UDP", perSecond(a, all), 5, 8, 80_000, 0)
	dsts := distinct(a, func(r rec) (netip.Addr, bool) { return r.dst, true })
	for d, n := range dsts {
		if n < 937 || n > 938 {
			t.Errorf("%s: %d packets, want 240000/256", d, n)
		}
	}
	if len(dsts) != 256 {
		t.Errorf("%d destinations, want 256", len(dsts))
	}
	if n := len(distinct(a, func(r rec) (netip.Addr, bool) { return r.src, true })); n < 230_000 {
		t.Errorf("%d sources, want random ones", n)
	}
}

func checkPortScan(t *testing.T, c DetectionCase, a []rec) {
	p := planFor(c)
	syn := func(r rec) bool { return r.flags == SYN && r.src == p.attacker && r.dst == p.victim }
	counts := perSecond(a, syn)
	if counts[11] != 5535 {
		t.Errorf("%d SYN in the last second, want 5535", counts[11])
	}
	delete(counts, 11)
	wantRate(t, "SYN", counts, 5, 11, 10_000, 0)
	if n := len(distinct(a, func(r rec) (uint16, bool) { return r.dport, syn(r) })); n != 65535 || count(a, syn) != 65535 {
		t.Errorf("%d SYN to %d ports, want each of the 65535 once", count(a, syn), n)
	}
	open := distinct(a, func(r rec) (uint16, bool) { return r.sport, r.flags == SYN|ACK && r.src == p.victim })
	resets := distinct(a, func(r rec) (uint16, bool) { return r.dport, r.flags == RST && r.src == p.attacker })
	if len(open) != 3 || len(resets) != 3 || open[22]+open[80]+open[443] != 3 || resets[22]+resets[80]+resets[443] != 3 {
		t.Errorf("SYN-ACK from %v, RST to %v: want 22, 80, 443 once", open, resets)
	}
	closed := count(a, func(r rec) bool { return r.flags == RST|ACK && r.src == p.victim })
	if closed < 5900 || closed > 7200 {
		t.Errorf("%d RST-ACK, want about 10%% of the ports", closed)
	}
	if n := len(a) - 65535 - 6 - closed; n != 0 {
		t.Errorf("%d other packets", n)
	}
}

func checkHostSweep(t *testing.T, c DetectionCase, a []rec) {
	p := planFor(c)
	syn := func(r rec) bool { return r.flags == SYN && r.src == p.attacker && r.dport == 22 }
	wantRate(t, "SYN", perSecond(a, syn), 5, 9, 5000, 0)
	dsts := distinct(a, func(r rec) (netip.Addr, bool) { return r.dst, syn(r) })
	if len(dsts) != 20_000 || count(a, syn) != 20_000 {
		t.Errorf("%d SYN to %d hosts, want 20000 distinct", count(a, syn), len(dsts))
	}
	for d := range dsts {
		if !p.sweep.Contains(d) || p.carpet.Contains(d) || slices.Contains(p.clients, d) {
			t.Fatalf("swept %s", d)
		}
	}
	up := count(a, func(r rec) bool { return r.flags == SYN|ACK && r.sport == 22 && r.dst == p.attacker })
	rst := count(a, func(r rec) bool { return r.flags == RST && r.src == p.attacker })
	if up < 300 || up > 500 || rst != up || len(a) != 20_000+2*up {
		t.Errorf("%d SYN-ACK and %d RST in %d packets, want 2%% of 20000 each", up, rst, len(a))
	}
}

func checkBruteForce(t *testing.T, c DetectionCase, a []rec) {
	p := planFor(c)
	server, port := p.ssh, uint16(22)
	if caseKind(c) == "rdp_brute_force" {
		server, port = p.rdp, 3389
	}
	mustAll(t, "between the attacker and the server's port", a, func(r rec) bool {
		return (r.src == p.attacker && r.dst == server && r.dport == port) || (r.src == server && r.dst == p.attacker && r.sport == port)
	})
	conns := map[uint16][]rec{}
	for _, r := range a {
		cp := r.sport
		if r.src == server {
			cp = r.dport
		}
		conns[cp] = append(conns[cp], r)
	}
	syn := func(r rec) bool { return r.flags == SYN }
	wantRate(t, "SYN", perSecond(a, func(r rec) bool { return syn(r) && r.t < 130*sec }), 5, 125, 20, 0)
	var lastSYN int64
	for i := range 2400 {
		cs := conns[uint16(40000+i)]
		if len(cs) != 14 || cs[0].flags != SYN || cs[len(cs)-1].t-cs[0].t > 1500_000 ||
			count(cs, func(r rec) bool { return r.flags&FIN != 0 }) != 2 || count(cs, func(r rec) bool { return r.l4 > 0 }) != 8 {
			t.Fatalf("connection from port %d: %d packets over %s, want 14 over about a second with 8 data and 2 FIN", 40000+i, len(cs), time.Duration(cs[len(cs)-1].t-cs[0].t)*time.Microsecond)
		}
		if cs[0].t < lastSYN {
			t.Fatalf("source ports do not count up with time at %d", 40000+i)
		}
		lastSYN = cs[0].t
	}
	if c.Rule != "brute_force_success" {
		if len(conns) != 2400 {
			t.Errorf("%d connections, want 2400", len(conns))
		}
		return
	}
	s := conns[42400]
	if len(conns) != 2401 || len(s) == 0 || s[0].flags != SYN {
		t.Fatalf("%d connections, want 2400 and the session", len(conns))
	}
	if !at(s[0].t).Equal(c.AttackStart) || s[0].t != 5*sec+130*sec {
		t.Errorf("session SYN at %s, AttackStart %s: want 10 s after the 120 s of brute force", at(s[0].t), c.AttackStart)
	}
	up := count(s, func(r rec) bool { return r.l4 > 0 && r.src == p.attacker })
	down := count(s, func(r rec) bool { return r.l4 > 0 && r.src == server })
	span := s[len(s)-1].t - s[0].t
	if up != 3600 || down != 3600 || span < 90*sec || span > 91*sec {
		t.Errorf("session: %d data segments up, %d down over %s, want 3600 each over 90 s", up, down, time.Duration(span)*time.Microsecond)
	}
	if after := c.Length - time.Duration(s[len(s)-1].t)*time.Microsecond; after < 20*time.Second {
		t.Errorf("%s of background after the session, want 20 s", after)
	}
}

func checkIntelHit(t *testing.T, c DetectionCase, a []rec) {
	p := planFor(c)
	mustAll(t, "between the internal host and the intel address's port 443", a, func(r rec) bool {
		return (r.src == p.intelCli && r.dst == p.intel && r.dport == 443) || (r.src == p.intel && r.dst == p.intelCli && r.sport == 443)
	})
	up := count(a, func(r rec) bool { return r.l4 > 0 && r.src == p.intelCli })
	down := count(a, func(r rec) bool { return r.l4 > 0 && r.src == p.intel })
	synFromIntel := count(a, func(r rec) bool { return r.src == p.intel && r.flags == SYN })
	span := a[len(a)-1].t - a[0].t
	if up != 2000 || down != 2000 || synFromIntel != 0 || span < 60*sec || span > 62*sec {
		t.Errorf("%d data segments up, %d down, %d SYN from the intel address over %s; want 2000, 2000, 0 over 60 s",
			up, down, synFromIntel, time.Duration(span)*time.Microsecond)
	}
}

func checkSilentHost(t *testing.T, c DetectionCase, a []rec) {
	p := planFor(c)
	from := func(r rec) bool { return r.src == p.watched }
	counts := perSecond(a, from)
	delete(counts, 5) // handshakes, then data from 5.1 s
	wantRate(t, "from the watched host", counts, 6, 245, 200, 0)
	var last int64
	for _, r := range a {
		if from(r) {
			last = r.t
		}
		if !slices.Contains(p.silentTo[:], r.src) && !slices.Contains(p.silentTo[:], r.dst) {
			t.Fatalf("watched host talks to %s", r.dst)
		}
	}
	if !at(last).Equal(c.AttackStart) {
		t.Errorf("last packet of the watched host at %s, AttackStart %s", at(last), c.AttackStart)
	}
	if silence := c.Length - time.Duration(last)*time.Microsecond; silence < 179*time.Second {
		t.Errorf("%s of silence, want 180 s", silence)
	}
}

func checkTrafficSpike(t *testing.T, c DetectionCase, a []rec) {
	p := planFor(c)
	data := func(r rec) bool { return r.src == p.spikeSrc && r.l4 > 0 }
	var start int64 = -1
	counts := map[int64]int{}
	for _, r := range a {
		if data(r) {
			if start < 0 {
				start = r.t
			}
			counts[(r.t-start)/sec]++
		}
	}
	for s := range int64(120) {
		n, lo, hi := counts[s], 1800, 2200
		if s >= 90 && s < 100 {
			lo, hi = 25_000, 25_000
		}
		if n < lo || n > hi {
			t.Errorf("second %d of the download: %d segments, want %d..%d", s, n, lo, hi)
		}
	}
	if len(counts) != 120 {
		t.Errorf("download over %d seconds, want 120", len(counts))
	}
	spike := start + 90*sec
	if !at(spike).Equal(c.AttackStart) || count(a, func(r rec) bool { return data(r) && r.t == spike }) != 1 {
		t.Errorf("spike's first packet at %s, AttackStart %s", at(spike), c.AttackStart)
	}
	acks := count(a, func(r rec) bool { return r.src == p.spikeDst && r.l4 == 0 })
	if n := count(a, data); acks < n/4 || acks > n/4+5 {
		t.Errorf("%d ACKs for %d segments, want a quarter", acks, n)
	}
}
