package captures

import (
	"net/netip"
	"strconv"
)

// hostScenarios are the scans, brute forces, intel hit, silent host and
// traffic spike of one family.
func hostScenarios(p *plan, suffix string, fam int) []scenario {
	srcDst := func(src, dst netip.Addr) map[string]string {
		return map[string]string{"src_addr": src.String(), "dst_addr": dst.String()}
	}
	var out []scenario

	const scanLen = 65535 * sec / 10_000
	out = append(out, scenario{
		name: "port_scan" + suffix, rule: "port_scan", p: p, family: fam, key: srcDst(p.attacker, p.victim),
		start: attackAt, end: attackAt + scanLen + 6*sec, bg: 1, hint: 75_000,
		phases: []Phase{phase("scan", attackAt, attackAt+scanLen)},
		attack: setOf(p.attacker, p.victim), hosts: []netip.Addr{p.attacker, p.victim},
		build: func(g *gen) { portScan(g, p, attackAt) },
	})

	const sweepHosts = 20_000
	targets := sweepTargets(newGen("host_sweep"+suffix+"/targets", 0), p, sweepHosts)
	const sweepLen = sweepHosts * sec / 5000
	out = append(out, scenario{
		name: "host_sweep" + suffix, rule: "host_sweep", p: p, family: fam,
		key:   map[string]string{"src_addr": p.attacker.String(), "dst_port": strconv.Itoa(22)},
		start: attackAt, end: attackAt + sweepLen + 6*sec, bg: 1, hint: 21_000,
		phases: []Phase{phase("sweep", attackAt, attackAt+sweepLen)},
		attack: setOf(append([]netip.Addr{p.attacker}, targets...)...), hosts: []netip.Addr{p.attacker},
		build: func(g *gen) { hostSweep(g, p, attackAt, targets) },
	})

	const bruteEnd = attackAt + bruteLen + 2*sec // the last connection closes about 1.1 s after its SYN
	for _, b := range []struct {
		rule   string
		server netip.Addr
		port   uint16
	}{{"ssh_brute_force", p.ssh, 22}, {"rdp_brute_force", p.rdp, 3389}} {
		key := srcDst(p.attacker, b.server)
		key["dst_port"] = strconv.Itoa(int(b.port))
		out = append(out, scenario{
			name: b.rule + suffix, rule: "brute_force_attempts", p: p, family: fam, key: key,
			start: attackAt, end: bruteEnd + 5*sec, bg: 1, hint: bruteConns * 14,
			phases: []Phase{phase("brute_force", attackAt, bruteEnd)},
			attack: setOf(p.attacker, b.server), hosts: []netip.Addr{p.attacker, b.server},
			build: func(g *gen) { bruteForce(g, p, b.server, b.port, attackAt) },
		})
	}

	const sessionAt = attackAt + bruteLen + sessionGap
	const sessionEnd = sessionAt + sessionLen + 2*sec
	out = append(out, scenario{
		name: "brute_force_success" + suffix, rule: "brute_force_success", p: p, family: fam, key: srcDst(p.attacker, p.ssh),
		start: sessionAt, end: sessionEnd + 22*sec, bg: 1, hint: bruteConns*14 + 7300,
		phases: []Phase{phase("brute_force", attackAt, bruteEnd), phase("session", sessionAt, sessionEnd)},
		attack: setOf(p.attacker, p.ssh), hosts: []netip.Addr{p.attacker, p.ssh},
		build: func(g *gen) {
			sport := bruteForce(g, p, p.ssh, 22, attackAt)
			session(g, p, p.ssh, sport, sessionAt)
		},
	})

	out = append(out, scenario{
		name: "intel_hit" + suffix, rule: "intel_hit", p: p, family: fam, key: srcDst(p.intelCli, p.intel),
		start: attackAt, end: attackAt + 62*sec + 6*sec, bg: 1, hint: 4006,
		phases: []Phase{phase("session", attackAt, attackAt+62*sec)},
		attack: setOf(p.intelCli, p.intel), hosts: []netip.Addr{p.intelCli, p.intel},
		build: func(g *gen) { intelSession(g, p, attackAt) },
	})

	// The watched host's packets: handshakes at attackAt, data from
	// attackAt+100 ms every 5 ms; the last one starts the silence.
	silenceAt := attackAt + 100_000 + (200*(silentLen-100_000)/sec-1)*sec/200
	out = append(out, scenario{
		name: "silent_host" + suffix, rule: "silent_host", p: p, family: fam,
		key:   map[string]string{"src_addr": p.watched.String()},
		start: silenceAt, end: attackAt + silentLen + silentAfter, bg: 200.0 / 1500, hint: 60_000,
		phases: []Phase{phase("active", attackAt, silenceAt), phase("silent", silenceAt, attackAt+silentLen+silentAfter)},
		attack: setOf(append([]netip.Addr{p.watched}, p.silentTo[:]...)...), hosts: []netip.Addr{p.watched},
		build: func(g *gen) { silentHost(g, p, attackAt) },
	})

	// The download's data starts 50 ms after its SYN.
	spikeAt := attackAt + 50_000 + spikeBefore
	out = append(out, scenario{
		name: "traffic_spike" + suffix, rule: "traffic_spike", p: p, family: fam,
		key:   map[string]string{"dst_addr": p.spikeDst.String()},
		start: spikeAt, end: spikeAt + spikeLen + spikeAfter + 6*sec, bg: 1, hint: 590_000,
		phases: []Phase{
			phase("baseline", attackAt, spikeAt), phase("spike", spikeAt, spikeAt+spikeLen),
			phase("after", spikeAt+spikeLen, spikeAt+spikeLen+spikeAfter),
		},
		attack: setOf(p.spikeDst, p.spikeSrc), hosts: []netip.Addr{p.spikeDst, p.spikeSrc},
		build: func(g *gen) { trafficSpike(g, p, attackAt) },
	})
	return out
}
