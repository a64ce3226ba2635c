package captures

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// The evaluation corpus: labelled attacks of nine classes mixed into the
// background of the detection captures, in a spread of burst lengths,
// rates, sizes and families, and benign backgrounds that look like some
// of them (corpus_benign.go). Unlike DetectionCases, whose rule names
// follow the current rule pack, a corpus case is labelled with the class
// of the attack and every rule that counts as detecting it.

// CorpusCase is one labelled capture of the evaluation corpus.
type CorpusCase struct {
	DetectionCase          // Name, Rule (the preferred rule), Key, AttackStart, Attack, Write, Generate, ...
	Class         string   // taxonomy class: syn_flood, udp_flood, icmp_flood, carpet_bombing, udp_reflection, tcp_reflection, reflection_low_rate, brute_force, password_spraying
	Rules         []string // every rule name that counts as a correct detection of this case
	// Burst is the length of the attack burst: 20 ms to 1 s, or 3 s for
	// the sustained variants of the volumetric classes; the length of the
	// whole attack for reflection_low_rate; 0 for the login classes.
	Burst time.Duration
	// PPS is the attack's packet rate during the burst: packets (frames,
	// IP fragments counted one by one) per second, not datagrams; 0 for
	// the login classes.
	PPS int
	// Size is the typical attack packet's payload: bytes after the TCP,
	// UDP or ICMP header (0 for bare SYN, SYN-ACK, RST and ACK), the UDP
	// payload of a whole datagram for the fragmented ones; for the login
	// classes, the bytes of one session's frames (Ethernet headers
	// included).
	Size    int
	Spoofed bool // the attack's source addresses are random (spoofed)
}

// CorpusCases returns the attacks of the corpus, each mixed into the
// background of the detection captures (about 1500 packets/s, IPv4 and
// IPv6), starting 5 s after it (AttackStart, the first attack packet).
// Volumetric classes (syn_flood, udp_flood, icmp_flood, carpet_bombing,
// udp_reflection, tcp_reflection): bursts of 20 ms, 50 ms, 200 ms and
// 1000 ms at 50k, 150k or 400k packets/s and sustained 3 s attacks at
// 50k-100k packets/s, packets evenly spaced with a small jitter, captures
// of the burst plus 12 s; at least 4 cases in each (class, burst) cell,
// of both families. reflection_low_rate: 30-40 s of fragmented DNS
// answers, captures about 50 s. brute_force: 90 s of login sessions,
// captures 100 s. password_spraying: one session on each of 30-60
// servers, captures up to about 130 s.
func CorpusCases() []CorpusCase {
	var out []CorpusCase
	out = append(out, corpusFloods()...)
	out = append(out, corpusReflections()...)
	out = append(out, corpusLowRate()...)
	return append(out, corpusLogins()...)
}

// corpusCell is one burst length of the volumetric classes and the rates
// its cases use.
type corpusCell struct {
	burst int64 // microseconds
	rates []int
}

var corpusCells = []corpusCell{
	{20_000, []int{50_000, 150_000, 400_000}},
	{50_000, []int{50_000, 150_000, 400_000}},
	{200_000, []int{50_000, 150_000, 400_000}},
	{1_000_000, []int{50_000, 150_000, 400_000}},
	{3 * sec, []int{50_000, 75_000, 100_000}},
}

// spread returns the family and rate of case j of cell ci: both
// families in every cell and, with the variants taken in turn, every
// combination of family and variant parity in every four cases.
func spread(ci, j int, rates []int) (v6 bool, pps int) {
	return (j+j/2+ci)%2 == 1, rates[(j+ci)%len(rates)]
}

func burstLabel(us int64) string {
	if us >= 2*sec {
		return strconv.FormatInt(us/sec, 10) + "s"
	}
	return strconv.FormatInt(us/1000, 10) + "ms"
}

func rateLabel(pps int) string {
	if pps%1000 == 0 {
		return strconv.Itoa(pps/1000) + "k"
	}
	return strconv.Itoa(pps)
}

func famOf(v6 bool) int {
	if v6 {
		return 6
	}
	return 4
}

// volCase is one case of a volumetric class.
type volCase struct {
	class, variant string
	rules          []string
	v6             bool
	burst          int64
	pps, size      int
	spoofed        bool
	key            map[string]string
	attack         func(netip.Addr) bool
	hosts          []netip.Addr
	build          func(g *gen, start, dur int64)
}

// name is "<class>/<variant>/burst=<burst>/pps=<rate>/v<family>".
func (v volCase) name() string {
	return fmt.Sprintf("%s/%s/burst=%s/pps=%s/v%d", v.class, v.variant, burstLabel(v.burst), rateLabel(v.pps), famOf(v.v6))
}

func (v volCase) corpusCase() CorpusCase {
	s := scenario{
		name: v.name(), rule: v.rules[0], p: planOf(v.v6), key: v.key, family: famOf(v.v6),
		start: attackAt, end: attackAt + v.burst + 7*sec, bg: 1, hint: int(int64(v.pps)*v.burst/sec) + 1000,
		phases: []Phase{phase("burst", attackAt, attackAt+v.burst)},
		attack: v.attack, hosts: v.hosts,
		build: func(g *gen) { v.build(g, attackAt, v.burst) },
	}
	return CorpusCase{
		DetectionCase: s.detectionCase(), Class: v.class, Rules: v.rules,
		Burst: time.Duration(v.burst) * time.Microsecond, PPS: v.pps, Size: v.size, Spoofed: v.spoofed,
	}
}

// spoofedTo is the Attack predicate of attacks from random sources.
func spoofedTo(victim netip.Addr) func(netip.Addr) bool {
	return func(a netip.Addr) bool { return a == victim || randomExternal(a) }
}

// corpusFloods: syn_flood, udp_flood, icmp_flood and carpet_bombing,
// four cases in each burst cell.
func corpusFloods() []CorpusCase {
	synVariants := []struct {
		spoofed bool
		port    uint16
		size    int
	}{{false, 80, 0}, {true, 80, 0}, {false, 443, 0}, {true, 443, 512}, {false, 80, 512}, {true, 443, 0}}
	udpVariants := [][2]int{{64, 512}, {64, 64}, {512, 512}, {128, 256}}
	icmpVariants := []struct {
		spoofed bool
		size    int
	}{{false, 56}, {true, 56}, {false, 1400}, {true, 512}, {false, 512}, {true, 1400}}
	carpetVariants := []struct {
		syn    bool
		port   uint16
		lo, hi int
	}{{false, 0, 64, 512}, {true, 80, 0, 0}, {false, 0, 1200, 1200}, {true, 443, 0, 0}}

	var out []CorpusCase
	for ci, cell := range corpusCells {
		for j := range 4 {
			v6, pps := spread(ci, j, cell.rates)
			p := planOf(v6)
			k := ci*4 + j

			sv := synVariants[k%len(synVariants)]
			syn := volCase{
				class: "syn_flood", variant: fmt.Sprintf("direct/port=%d/size=%d", sv.port, sv.size), rules: []string{"syn_flood"},
				v6: v6, burst: cell.burst, pps: pps, size: sv.size, key: keyDst(p),
				attack: setOf(p.victim, p.attacker), hosts: []netip.Addr{p.victim, p.attacker},
				build: func(g *gen, start, dur int64) { corpusSYNFlood(g, p, start, dur, pps, sv.port, sv.size, sv.spoofed) },
			}
			if sv.spoofed {
				syn.variant, syn.spoofed = fmt.Sprintf("spoofed/port=%d/size=%d", sv.port, sv.size), true
				syn.attack, syn.hosts = spoofedTo(p.victim), []netip.Addr{p.victim}
			}

			uv := udpVariants[k%len(udpVariants)]
			size := fmt.Sprintf("size=%d-%d", uv[0], uv[1])
			if uv[0] == uv[1] {
				size = fmt.Sprintf("size=%d", uv[0])
			}
			udp := volCase{
				class: "udp_flood", variant: "direct/" + size, rules: []string{"udp_flood"},
				v6: v6, burst: cell.burst, pps: pps, size: (uv[0] + uv[1]) / 2, key: keyDst(p),
				attack: setOf(p.victim, p.attacker), hosts: []netip.Addr{p.victim, p.attacker},
				build: func(g *gen, start, dur int64) { corpusUDPFlood(g, p, start, dur, pps, uv[0], uv[1]) },
			}

			iv := icmpVariants[k%len(icmpVariants)]
			icmp := volCase{
				class: "icmp_flood", variant: fmt.Sprintf("direct/size=%d", iv.size), rules: []string{"icmp_flood"},
				v6: v6, burst: cell.burst, pps: pps, size: iv.size, key: keyDst(p),
				attack: setOf(p.victim, p.attacker), hosts: []netip.Addr{p.victim, p.attacker},
				build: func(g *gen, start, dur int64) { corpusICMPFlood(g, p, start, dur, pps, iv.size, iv.spoofed) },
			}
			if iv.spoofed {
				icmp.variant, icmp.spoofed = fmt.Sprintf("spoofed/size=%d", iv.size), true
				icmp.attack, icmp.hosts = spoofedTo(p.victim), []netip.Addr{p.victim}
			}

			cv := carpetVariants[k%len(carpetVariants)]
			carpet := volCase{
				class: "carpet_bombing", rules: []string{"carpet_bombing"},
				v6: v6, burst: cell.burst, pps: pps, size: (cv.lo + cv.hi) / 2, spoofed: true,
				key:    map[string]string{"dst_prefix": p.carpet.String()},
				attack: func(a netip.Addr) bool { return p.carpet.Contains(a) || randomExternal(a) }, hosts: []netip.Addr{p.carpet.Addr()},
				build: func(g *gen, start, dur int64) { corpusCarpet(g, p, start, dur, pps, cv.syn, cv.port, cv.lo, cv.hi) },
			}
			switch {
			case cv.syn:
				carpet.variant = fmt.Sprintf("syn/port=%d", cv.port)
			case cv.lo == cv.hi:
				carpet.variant = fmt.Sprintf("udp/size=%d", cv.lo)
			default:
				carpet.variant = fmt.Sprintf("udp/size=%d-%d", cv.lo, cv.hi)
			}
			out = append(out, syn.corpusCase(), udp.corpusCase(), icmp.corpusCase(), carpet.corpusCase())
		}
	}
	return out
}

// reflectedService is a UDP service abused for reflection.
type reflectedService struct {
	name  string
	port  uint16
	sizes []int // UDP payloads, taken in turn by the cells
	vary  bool  // the size varies by ±5% from datagram to datagram (unfragmented ones only)
}

// corpusServices are the reflected UDP services: the usual ones and two
// on ports no list of reflector ports has.
var corpusServices = []reflectedService{
	{"dns", 53, []int{1800, 2900, 4000}, false},
	{"ntp", 123, []int{468}, false},
	{"ssdp", 1900, []int{320, 298, 342}, true},
	{"memcached", 11211, []int{4100, 7400}, false},
	{"cldap", 389, []int{1400, 3000}, false},
	{"chargen", 19, []int{1000, 1024}, true},
	{"snmp", 161, []int{1000, 1200}, true},
	{"ws-discovery", 3702, []int{1100, 800}, true},
	{"unlisted-37547", 37547, []int{600}, true},
	{"unlisted-8899", 8899, []int{600, 640}, true},
}

// corpusReflections: udp_reflection (each service in each burst cell)
// and tcp_reflection (six cases in each cell: the three kinds of segment
// twice, from ports 80, 443 and 22 in turn).
func corpusReflections() []CorpusCase {
	udpRefl := []int{100, 250, 500}
	tcpRefl := []int{200, 500, 1000}
	tcpKinds := []struct {
		name  string
		flags uint8
	}{{"syn-ack", SYN | ACK}, {"rst", RST | ACK}, {"ack", ACK}}
	tcpPorts := []uint16{80, 443, 22}

	var out []CorpusCase
	for ci, cell := range corpusCells {
		for j, svc := range corpusServices {
			v6, pps := spread(ci, j, cell.rates)
			p := planOf(v6)
			size := svc.sizes[ci%len(svc.sizes)]
			n := udpRefl[(ci+2*j+1)%len(udpRefl)]
			v := volCase{
				class: "udp_reflection", variant: fmt.Sprintf("%s/size=%d/reflectors=%d", svc.name, size, n),
				rules: []string{"udp_reflection", "fragment_flood"},
				v6:    v6, burst: cell.burst, pps: pps, size: size,
				key:   map[string]string{"dst_addr": p.victim.String(), "src_port": strconv.Itoa(int(svc.port))},
				hosts: []netip.Addr{p.victim},
			}
			refl := reflectors(newGen(v.name()+"/reflectors", 0), n, v6)
			v.attack = setOf(append([]netip.Addr{p.victim}, refl...)...)
			v.build = func(g *gen, start, dur int64) {
				corpusUDPReflection(g, p, start, dur, pps, refl, svc.port, size, svc.vary)
			}
			out = append(out, v.corpusCase())
		}
		for j := range 6 {
			v6, pps := spread(ci, j, cell.rates)
			p := planOf(v6)
			k := (ci*6 + j) % (len(tcpKinds) * len(tcpPorts))
			kind, port := tcpKinds[k%len(tcpKinds)], tcpPorts[k/len(tcpKinds)]
			n := tcpRefl[(ci+2*j+1)%len(tcpRefl)]
			v := volCase{
				class: "tcp_reflection", variant: fmt.Sprintf("%s/port=%d/reflectors=%d", kind.name, port, n),
				rules: []string{"tcp_reflection"},
				v6:    v6, burst: cell.burst, pps: pps,
				key:   map[string]string{"dst_addr": p.victim.String(), "src_port": strconv.Itoa(int(port))},
				hosts: []netip.Addr{p.victim},
			}
			refl := reflectors(newGen(v.name()+"/reflectors", 0), n, v6)
			v.attack = setOf(append([]netip.Addr{p.victim}, refl...)...)
			v.build = func(g *gen, start, dur int64) { corpusTCPReflection(g, p, start, dur, pps, refl, port, kind.flags) }
			out = append(out, v.corpusCase())
		}
	}
	return out
}

// corpusLowRate: reflection_low_rate, large fragmented DNS answers from
// hundreds of resolvers to a host that asked none of them, for 30-40 s.
func corpusLowRate() []CorpusCase {
	var out []CorpusCase
	for _, l := range []struct {
		v6        bool
		resolvers int
		rate      int // datagrams per second
		lo, hi    int // UDP payloads
		secs      int64
	}{
		{false, 200, 100, 2000, 3000, 30},
		{true, 300, 150, 3000, 4000, 35},
		{false, 600, 400, 2000, 4000, 40},
		{true, 450, 250, 2000, 4000, 30},
		{false, 400, 300, 3000, 4000, 35},
		{true, 600, 100, 2000, 3000, 40},
	} {
		p, fam := planOf(l.v6), famOf(l.v6)
		name := fmt.Sprintf("reflection_low_rate/dns/size=%d-%d/resolvers=%d/rate=%d/dur=%ds/v%d", l.lo, l.hi, l.resolvers, l.rate, l.secs, fam)
		refl := reflectors(newGen(name+"/reflectors", 0), l.resolvers, l.v6)
		dur := l.secs * sec
		// Frames per datagram over the uniform size range.
		frames, mtu := 0.0, map[bool]int{false: 1480, true: 1448}[l.v6]
		for n := l.lo; n <= l.hi; n++ {
			frames += float64((n + 8 + mtu - 1) / mtu)
		}
		frames /= float64(l.hi - l.lo + 1)
		s := scenario{
			name: name, rule: "reflection_low_rate", p: p, family: fam,
			key:   map[string]string{"dst_addr": p.victim.String(), "src_port": "53"},
			start: attackAt, end: max(50*sec, attackAt+dur+6*sec), bg: 1, hint: int(float64(int64(l.rate)*l.secs) * frames),
			phases: []Phase{phase("reflection", attackAt, attackAt+dur)},
			attack: setOf(append([]netip.Addr{p.victim}, refl...)...), hosts: []netip.Addr{p.victim},
			build: func(g *gen) { corpusLowRateDNS(g, p, attackAt, dur, l.rate, refl, l.lo, l.hi) },
		}
		out = append(out, CorpusCase{
			DetectionCase: s.detectionCase(), Class: "reflection_low_rate",
			Rules: []string{"reflection_low_rate", "udp_reflection", "fragment_flood"},
			Burst: time.Duration(dur) * time.Microsecond, PPS: int(float64(l.rate)*frames + 0.5), Size: (l.lo + l.hi) / 2,
		})
	}
	return out
}

// corpusLogins: brute_force, one case per login service (every 3-8 s
// for 90 s) and fast variants for ssh and rdp (every second), and
// password_spraying over 30-60 servers.
func corpusLogins() []CorpusCase {
	var out []CorpusCase
	const bruteFor = 90 * sec
	brute := func(svc *loginService, idx int, v6 bool, fast bool) CorpusCase {
		p, fam := planOf(v6), famOf(v6)
		server := hosts("10.1.5.0/24", 1+idx, 1)[0]
		if v6 {
			server = hosts("2001:db8:1:5::/64", 1+idx, 1)[0]
		}
		every := "3-8s"
		if fast {
			every = "1s"
		}
		port := strconv.Itoa(int(svc.port))
		s := scenario{
			name: fmt.Sprintf("brute_force/%s/every=%s/v%d", svc.name, every, fam), rule: "brute_force", p: p, family: fam,
			key:   map[string]string{"src_addr": p.attacker.String(), "dst_addr": server.String(), "dst_port": port},
			start: attackAt, end: attackAt + bruteFor + 5*sec, bg: 1, hint: 100 * len(svc.segs),
			phases: []Phase{phase("brute_force", attackAt, attackAt+bruteFor)},
			attack: setOf(p.attacker, server), hosts: []netip.Addr{p.attacker, server},
			build: func(g *gen) { corpusBruteForce(g, svc, p.attacker, server, attackAt, bruteFor, fast) },
		}
		return CorpusCase{
			DetectionCase: s.detectionCase(), Class: "brute_force", Rules: []string{"brute_force"},
			Size: svc.sessionBytes(v6),
		}
	}
	for i := range loginServices {
		out = append(out, brute(&loginServices[i], i, i%2 == 1, false))
	}
	for i := range loginServices {
		if svc := &loginServices[i]; svc.name == "ssh" || svc.name == "rdp" {
			out = append(out, brute(svc, i, false, true), brute(svc, i, true, true))
		}
	}

	for _, sp := range []struct {
		svc            string
		v6             bool
		servers        int
		minGap, maxGap int64
	}{
		{"ssh", false, 40, 1 * sec, 3 * sec},
		{"ssh", true, 30, 2 * sec, 4 * sec},
		{"rdp", false, 60, 1 * sec, 2 * sec},
		{"rdp", true, 45, 1 * sec, 3 * sec},
		{"smb", false, 30, 2 * sec, 4 * sec},
		{"smb", true, 50, 1 * sec, 2 * sec},
	} {
		svc := loginService{}
		for _, s := range loginServices {
			if s.name == sp.svc {
				svc = s
			}
		}
		p, fam := planOf(sp.v6), famOf(sp.v6)
		servers := hosts("10.1.6.0/24", 1, sp.servers)
		if sp.v6 {
			servers = hosts("2001:db8:1:6::/64", 1, sp.servers)
		}
		name := fmt.Sprintf("password_spraying/%s/servers=%d/every=%d-%ds/v%d", svc.name, sp.servers, sp.minGap/sec, sp.maxGap/sec, fam)
		// The schedule is drawn apart so that the capture's length is
		// known before generating it.
		starts := sprayStarts(newGen(name+"/schedule", 0), attackAt, sp.servers, sp.minGap, sp.maxGap)
		last := starts[len(starts)-1]
		s := scenario{
			name: name, rule: "password_spraying", p: p, family: fam,
			key:   map[string]string{"src_addr": p.attacker.String(), "dst_port": strconv.Itoa(int(svc.port))},
			start: attackAt, end: last + 8*sec, bg: 1, hint: sp.servers * 30,
			phases: []Phase{phase("spraying", attackAt, last+2*sec)},
			attack: setOf(append([]netip.Addr{p.attacker}, servers...)...), hosts: append([]netip.Addr{p.attacker}, servers...),
			build: func(g *gen) { corpusSpraying(g, &svc, p.attacker, servers, starts) },
		}
		out = append(out, CorpusCase{
			DetectionCase: s.detectionCase(), Class: "password_spraying", Rules: []string{"password_spraying"},
			Size: svc.sessionBytes(sp.v6),
		})
	}
	return out
}
