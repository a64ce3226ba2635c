package captures

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBenignCases reads the benign captures back: each holds its
// activity as described, and stays under half of every threshold of the
// rule pack's brief.
func TestBenignCases(t *testing.T) {
	checks := map[string]func(t *testing.T, recs []rec){
		"web_browsing":   checkWebBrowsing,
		"dns_lookups":    checkDNSLookups,
		"large_download": checkLargeDownload,
		"video_call":     checkVideoCall,
		"backup_upload":  checkBackupUpload,
	}
	cases := BenignCases()
	if len(cases) != len(checks) {
		t.Fatalf("%d benign cases, want %d", len(cases), len(checks))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			if c.Rule != "" || c.Key != nil {
				t.Errorf("rule %q key %v, want none", c.Rule, c.Key)
			}
			recs, sum := readBack(t, c)
			if sum.AttackPackets != 0 || uint64(len(recs)) != sum.Packets {
				t.Errorf("read %d packets; generator says %d, %d of an attack", len(recs), sum.Packets, sum.AttackPackets)
			}
			if d := time.Duration(recs[len(recs)-1].t) * time.Microsecond; d < 30*time.Second || d > 90*time.Second {
				t.Errorf("capture lasts %s, want 30-90 s", d)
			}
			v6 := count(recs, func(r rec) bool { return r.src.Is6() })
			if v6 < len(recs)/20 || v6 > len(recs)*19/20 {
				t.Errorf("%d of %d packets IPv6: not mixed", v6, len(recs))
			}
			checkAddresses(t, c, recs)
			checkQuiet(t, recs)
			checks[c.Name](t, recs)
		})
	}
}

// checkAddresses checks that no address of the capture is on the intel
// list but the intel addresses of intel_hit, and that the watched host
// only appears in silent_host.
func checkAddresses(t *testing.T, c DetectionCase, recs []rec) {
	t.Helper()
	l := theIntel()
	for _, r := range recs {
		for _, a := range []netip.Addr{r.src, r.dst} {
			if l.covers(a) || (slices.Contains(IntelListed, a) && !strings.HasPrefix(c.Name, "intel_hit")) {
				t.Fatalf("%s is on the intel list", a)
			}
			if (a == plan4.watched || a == plan6.watched) && !strings.HasPrefix(c.Name, "silent_host") {
				t.Fatalf("the watched host %s talks", a)
			}
		}
	}
}

// checkBackground checks the background of an attack capture: its rate
// over the whole capture, both families, and quiet.
func checkBackground(t *testing.T, c DetectionCase, bg []rec) {
	t.Helper()
	want := 1500.0
	if c.Rule == "silent_host" {
		want = 200
	}
	secs := c.Length.Seconds()
	if rate := float64(len(bg)) / secs; rate < want*2/3 || rate > want*4/3 {
		t.Errorf("background at %.0f packets/s, want about %.0f", rate, want)
	}
	per10 := map[int64]int{}
	for _, r := range bg {
		per10[r.t/(10*sec)]++
	}
	for s := int64(0); s < int64(secs)/10; s++ {
		if float64(per10[s]) < want*10*0.4 {
			t.Errorf("%d background packets from %d s to %d s", per10[s], 10*s, 10*s+10)
		}
	}
	if last := time.Duration(bg[len(bg)-1].t) * time.Microsecond; last < c.Length-3*time.Second || last > c.Length {
		t.Errorf("background ends at %s, capture length %s", last, c.Length)
	}
	if v6 := count(bg, func(r rec) bool { return r.src.Is6() }); v6 < len(bg)/4 || v6 > len(bg)*3/4 {
		t.Errorf("%d of %d background packets IPv6", v6, len(bg))
	}
	checkQuiet(t, bg)
}

// checkQuiet checks traffic that no rule may fire on against half the
// thresholds of the rule pack's brief: packets per destination in any
// 1-second window (SYN only, SYN-ACK or RST, UDP, ICMP, from port 53, per
// reflector port, per /24 or /64), distinct destination ports of SYN per
// source and destination, distinct destinations per source and
// destination port, SYN to 22 or 3389 per source and destination, and
// packets per destination in any 5-second window.
func checkQuiet(t *testing.T, recs []rec) {
	t.Helper()
	type key struct {
		what string
		a    netip.Addr
		p    netip.Prefix
		port uint16
	}
	limits := map[string]int{
		"SYN-only": 5000 / 2, "SYN-ACK or RST": 10_000 / 2, "UDP": 50_000 / 2, "ICMP": 5000 / 2,
		"from port 53": 1000 / 2, "from a reflector port": 2000 / 2, "UDP per prefix": 50_000 / 2,
	}
	per := map[key]map[int64]int{}
	inc := func(k key, s int64) {
		m := per[k]
		if m == nil {
			m = map[int64]int{}
			per[k] = m
		}
		m[s]++
	}
	type pair struct{ a, b netip.Addr }
	type srcPort struct {
		a    netip.Addr
		port uint16
	}
	scan := map[pair]map[uint16]bool{}
	sweep := map[srcPort]map[netip.Addr]bool{}
	brute := map[pair]int{}
	per5 := map[netip.Addr]map[int64]int{}
	for _, r := range recs {
		s := r.t / sec
		switch {
		case r.proto == 6 && r.flags == SYN:
			inc(key{what: "SYN-only", a: r.dst}, s)
			if scan[pair{r.src, r.dst}] == nil {
				scan[pair{r.src, r.dst}] = map[uint16]bool{}
			}
			scan[pair{r.src, r.dst}][r.dport] = true
			if r.dport == 22 || r.dport == 3389 {
				brute[pair{r.src, r.dst}]++
			}
		case r.proto == 6 && (r.flags&(SYN|ACK) == SYN|ACK || r.flags&RST != 0):
			inc(key{what: "SYN-ACK or RST", a: r.dst}, s)
		case r.proto == 17:
			inc(key{what: "UDP", a: r.dst}, s)
			bits := 24
			if r.dst.Is6() {
				bits = 64
			}
			inc(key{what: "UDP per prefix", p: netip.PrefixFrom(r.dst, bits).Masked()}, s)
			if r.sport == 53 || r.nonFirst {
				inc(key{what: "from port 53", a: r.dst}, s)
			}
			if r.sport < 1024 || slices.Contains(reflectorPorts, r.sport) {
				inc(key{what: "from a reflector port", a: r.dst, port: r.sport}, s)
			}
		case r.proto == 1 || r.proto == 58:
			inc(key{what: "ICMP", a: r.dst}, s)
		}
		if !r.nonFirst {
			k := srcPort{r.src, r.dport}
			if sweep[k] == nil {
				sweep[k] = map[netip.Addr]bool{}
			}
			sweep[k][r.dst] = true
		}
		if per5[r.dst] == nil {
			per5[r.dst] = map[int64]int{}
		}
		per5[r.dst][r.t/(5*sec)]++
	}
	for k, m := range per {
		for s, n := range m {
			if n+m[s+1] > limits[k.what] {
				t.Errorf("%s to %s%s (port %d): %d packets from second %d to %d", k.what, k.a, k.p, k.port, n+m[s+1], s, s+2)
			}
		}
	}
	for k, ports := range scan {
		if len(ports) > 500/2 {
			t.Errorf("SYN from %s to %d ports of %s", k.a, len(ports), k.b)
		}
	}
	for k, dsts := range sweep {
		if len(dsts) > 256/2 {
			t.Errorf("%s to port %d of %d hosts", k.a, k.port, len(dsts))
		}
	}
	for k, n := range brute {
		if n > 60/2 {
			t.Errorf("%d SYN from %s to %s port 22 or 3389", n, k.a, k.b)
		}
	}
	for d, m := range per5 {
		for s, n := range m {
			if n/5 > 20_000/2 {
				t.Errorf("%d packets/s to %s from second %d to %d", n/5, d, 5*s, 5*s+5)
			}
		}
	}
}

func checkWebBrowsing(t *testing.T, recs []rec) {
	browsers := append(hosts("10.1.0.0/24", 130, 4), hosts("2001:db8:1::/64", 0x130, 2)...)
	from := func(r rec) bool { return slices.Contains(browsers, r.src) && r.dport == 443 }
	sites := distinct(recs, func(r rec) (netip.Addr, bool) { return r.dst, from(r) })
	conns := count(recs, func(r rec) bool { return from(r) && r.flags == SYN })
	quic := count(recs, func(r rec) bool { return from(r) && r.proto == 17 && r.l4 == 1200 })
	// Parallel connections: SYNs of one client to one site within 10 ms.
	parallel := 0
	last := map[[2]netip.Addr]int64{}
	for _, r := range recs {
		if from(r) && r.flags == SYN {
			k := [2]netip.Addr{r.src, r.dst}
			if l, ok := last[k]; ok && r.t-l < 10_000 {
				parallel++
			}
			last[k] = r.t
		}
	}
	if len(sites) < 50 || len(sites) > 60 || conns < 300 || quic < 30 || parallel < conns/2 {
		t.Errorf("%d sites, %d connections (%d parallel), %d QUIC exchanges", len(sites), conns, parallel, quic)
	}
}

func checkDNSLookups(t *testing.T, recs []rec) {
	clients := append(hosts("10.1.1.0/24", 1, 35), hosts("2001:db8:1:1::/64", 1, 15)...)
	q := func(r rec) bool { return slices.Contains(clients, r.src) && r.dport == 53 }
	udp := count(recs, func(r rec) bool { return q(r) && r.proto == 17 })
	tcp := count(recs, func(r rec) bool { return q(r) && r.flags == SYN })
	biggest := 0
	for _, r := range recs {
		if r.sport == 53 && slices.Contains(clients, r.dst) {
			biggest = max(biggest, r.l4)
		}
	}
	who := distinct(recs, func(r rec) (netip.Addr, bool) { return r.src, q(r) })
	if rate := float64(udp+tcp) / 60; rate < 270 || rate > 330 || tcp < 300 || tcp > 800 || biggest < 1100 || biggest > 1200 || len(who) != 50 {
		t.Errorf("%.0f queries/s (%d over TCP) from %d clients, biggest answer %d bytes", rate, tcp, len(who), biggest)
	}
}

// mbps returns the Mbit/s (frames) and packets/s of the packets matching
// f in each full second between from and to.
func checkThroughput(t *testing.T, what string, recs []rec, f func(r rec) bool, from, to int64, pps int, mbps float64) {
	t.Helper()
	packets, bytes := map[int64]int{}, map[int64]int{}
	for _, r := range recs {
		if f(r) {
			packets[r.t/sec]++
			bytes[r.t/sec] += r.length
		}
	}
	for s := from; s < to; s++ {
		got := float64(bytes[s]*8) / 1e6
		if packets[s] < pps*95/100 || packets[s] > pps*105/100 || got < mbps*0.9 || got > mbps*1.1 {
			t.Errorf("%s in second %d: %d packets, %.1f Mbit/s; want %d and %.1f", what, s, packets[s], got, pps, mbps)
		}
	}
}

func checkLargeDownload(t *testing.T, recs []rec) {
	cli := netip.MustParseAddr("10.1.0.140")
	checkThroughput(t, "download", recs, func(r rec) bool { return r.dst == cli && r.l4 == 1448 }, 6, 35, 8500, 100)
}

func checkVideoCall(t *testing.T, recs []rec) {
	a, b := netip.MustParseAddr("10.1.0.150"), netip.MustParseAddr("203.0.113.90")
	checkThroughput(t, "video up", recs, func(r rec) bool { return r.src == a && r.dst == b && r.l4 > 500 }, 6, 64, 300, 2.5)
	checkThroughput(t, "video down", recs, func(r rec) bool { return r.src == b && r.dst == a && r.l4 > 500 }, 6, 64, 300, 2.5)
}

func checkBackupUpload(t *testing.T, recs []rec) {
	cli := netip.MustParseAddr("2001:db8:1::140")
	checkThroughput(t, "upload", recs, func(r rec) bool { return r.src == cli && r.l4 == 1448 }, 6, 64, 4300, 52)
	if n := count(recs, func(r rec) bool { return r.dport == 22 && r.flags == SYN }); n != 1 {
		t.Errorf("%d SYN to port 22, want one connection", n)
	}
}
