package captures

import (
	"io"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// DetectionCase is one capture for the detection rule pack: an attack
// mixed with background traffic (DetectionCases), or benign traffic only
// (BenignCases: Rule "", Key nil, no attack). Captures are pcap,
// Ethernet, microsecond timestamps, generated deterministically on each
// Write; the first packet is at 2026-04-01T12:00:00Z.
type DetectionCase struct {
	Name   string            // e.g. "syn_flood-v4", "dns_amplification-v6", "web_browsing"
	Rule   string            // the rule that must fire
	Family int               // 4 or 6: of the attack's addresses
	Key    map[string]string // the alert key the rule must report, field -> value
	// AttackStart is when what the rule detects begins: the attack's
	// first packet; for brute_force_success the successful session's
	// SYN, for traffic_spike the spike's first packet, for silent_host
	// the watched host's last packet (its silence begins).
	AttackStart time.Time
	Phases      []Phase       // the attack's timeline (approximate ends)
	Length      time.Duration // from the first packet to the end of the background
	// Attack reports whether an address takes part in the attack
	// (attacker, victim, reflectors, spoofed sources, scanned hosts,
	// servers, watched host...); no background address does. A packet is
	// an attack packet if and only if one of its addresses is.
	Attack func(netip.Addr) bool
	// AttackHosts are the attack's named addresses (not the random ones).
	AttackHosts []netip.Addr
	Write       func(w io.Writer) error
	// Generate writes the capture like Write and returns its summary.
	Generate func(w io.Writer) (*CaptureSummary, error)
}

// Phase is one step of an attack's timeline.
type Phase struct {
	Name       string
	Start, End time.Time
}

// scenario is what a case is made of, times in microseconds.
type scenario struct {
	name, rule string
	p          *plan
	key        map[string]string
	start, end int64 // AttackStart, end of the background
	bg         float64
	hint       int // expected packets
	phases     []Phase
	attack     func(netip.Addr) bool
	hosts      []netip.Addr
	build      func(g *gen)
	family     int
}

func (s scenario) detectionCase() DetectionCase {
	gen := func(w io.Writer) (*CaptureSummary, error) {
		g := newGen(s.name, s.hint+int(float64(s.end/sec)*1700*s.bg))
		g.background(0, s.end, s.bg)
		g.attack = true
		if s.build != nil {
			s.build(g)
		}
		return g.write(w)
	}
	attack := s.attack
	if attack == nil {
		attack = func(netip.Addr) bool { return false }
	}
	return DetectionCase{
		Name: s.name, Rule: s.rule, Family: s.family, Key: s.key,
		AttackStart: at(s.start), Phases: s.phases, Length: time.Duration(s.end) * time.Microsecond,
		Attack: attack, AttackHosts: s.hosts,
		Write:    func(w io.Writer) error { _, err := gen(w); return err },
		Generate: gen,
	}
}

// setOf returns a predicate true for the given addresses.
func setOf(addrs ...netip.Addr) func(netip.Addr) bool {
	m := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		m[a] = true
	}
	return func(a netip.Addr) bool { return m[a] }
}

// randomExternal reports whether a could be a random external address
// (a spoofed source, a carpet bomber): outside the reserved ranges.
func randomExternal(a netip.Addr) bool {
	return !slices.ContainsFunc(reserved, func(p netip.Prefix) bool { return p.Contains(a) })
}

const attackAt = 5 * sec // every attack starts after 5 s of background

func phase(name string, from, to int64) Phase { return Phase{name, at(from), at(to)} }

func keyDst(p *plan) map[string]string { return map[string]string{"dst_addr": p.victim.String()} }

// keyDstPort is the key of the reflection rules: the victim and the
// reflectors' port.
func keyDstPort(p *plan, port uint16) map[string]string {
	return map[string]string{"dst_addr": p.victim.String(), "src_port": strconv.Itoa(int(port))}
}

// DetectionCases returns every attack of the rule pack, in an IPv4 and
// an IPv6 variant ("<attack>-v4", "<attack>-v6"): floods, reflections
// and amplifications 3 s long, 5 s after the start of the background
// and followed by at least 5 s of it; the others as their comments in
// attacks_*.go say.
func DetectionCases() []DetectionCase {
	var out []DetectionCase
	for _, v6 := range []bool{false, true} {
		for _, s := range scenarios(v6) {
			out = append(out, s.detectionCase())
		}
	}
	return out
}

func scenarios(v6 bool) []scenario {
	p, suffix, fam := planOf(v6), "-v4", 4
	if v6 {
		suffix, fam = "-v6", 6
	}
	const floodEnd = attackAt + floodLen + 6*sec
	flood := func(name, rule string, hint int, key map[string]string, attack func(netip.Addr) bool, hosts []netip.Addr, build func(g *gen)) scenario {
		return scenario{
			name: name + suffix, rule: rule, p: p, key: key, start: attackAt, end: floodEnd, bg: 1, hint: hint,
			phases: []Phase{phase("attack", attackAt, attackAt+floodLen)}, attack: attack, hosts: hosts, build: build, family: fam,
		}
	}
	victim := []netip.Addr{p.victim}
	refl := func(name string, n int) ([]netip.Addr, func(netip.Addr) bool) {
		r := reflectors(newGen(name+suffix+"/reflectors", 0), n, v6)
		return r, setOf(append([]netip.Addr{p.victim}, r...)...)
	}
	spoofed := func(a netip.Addr) bool { return a == p.victim || randomExternal(a) }
	var out []scenario
	out = append(out,
		flood("syn_flood", "syn_flood", 300_000, keyDst(p), setOf(p.victim, p.attacker), []netip.Addr{p.victim, p.attacker},
			func(g *gen) { synFlood(g, p, attackAt, false) }),
		flood("syn_flood_spoofed", "syn_flood", 300_000, keyDst(p), spoofed, victim,
			func(g *gen) { synFlood(g, p, attackAt, true) }),
	)
	tcpRefl, tcpReflAttack := refl("tcp_reflection_flood", 500)
	out = append(out,
		flood("tcp_reflection_flood", "tcp_reflection", 180_000, keyDstPort(p, 443), tcpReflAttack, victim,
			func(g *gen) { tcpReflection(g, p, attackAt, tcpRefl) }),
		flood("udp_flood", "udp_flood", 300_000, keyDst(p), setOf(p.victim, p.attacker), []netip.Addr{p.victim, p.attacker},
			func(g *gen) { udpFlood(g, p, attackAt) }),
		flood("icmp_flood", "icmp_flood", 150_000, keyDst(p), setOf(p.victim, p.attacker), []netip.Addr{p.victim, p.attacker},
			func(g *gen) { icmpFlood(g, p, attackAt) }),
	)
	for _, a := range []struct {
		rule                 string
		reflectors           int
		port                 uint16
		rate, udpLen, frames int
	}{
		{"dns_amplification", 300, 53, 5000, 3000, 3},
		{"ntp_amplification", 200, 123, 20_000, 8 + 482, 1},
		{"ssdp_amplification", 200, 1900, 20_000, 8 + 320, 1},
		{"memcached_amplification", 100, 11211, 5000, 4000, 3},
		{"udp_amplification", 100, 389, 10_000, 8 + 1400, 1},
	} {
		r, attack := refl(a.rule, a.reflectors)
		out = append(out, flood(a.rule, "udp_reflection", a.rate*a.frames*3, keyDstPort(p, a.port), attack, victim,
			func(g *gen) { amplification(g, p, attackAt, r, a.port, a.rate, a.udpLen) }))
	}
	out = append(out, flood("carpet_bombing", "carpet_bombing", 240_000, map[string]string{"dst_prefix": p.carpet.String()},
		func(a netip.Addr) bool { return p.carpet.Contains(a) || randomExternal(a) }, []netip.Addr{p.carpet.Addr()},
		func(g *gen) { carpetBombing(g, p, attackAt) }))
	return append(out, hostScenarios(p, suffix, fam)...)
}
