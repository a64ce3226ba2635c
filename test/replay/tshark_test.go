package replay

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/captures"
)

// requireTshark returns tshark's path, or skips the test when tshark is
// missing, unless VIGIL_PRIVILEGED_TESTS=1 (CI), where it fails.
func requireTshark(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("tshark")
	if err != nil {
		if os.Getenv(testutil.PrivilegedEnv) == "1" {
			t.Fatalf("tshark is missing but %s=1: install the tshark package", testutil.PrivilegedEnv)
		}
		t.Skipf("tshark is missing (apt-get install tshark); set %s=1 to make this a failure", testutil.PrivilegedEnv)
	}
	return path
}

// tsharkOpts makes tshark dissect each frame on its own: no IP
// reassembly, so that a first fragment shows its UDP header and the others
// none, as Vigil sees them; no name resolution.
var tsharkOpts = []string{"-n", "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"}

func runTshark(t *testing.T, tshark, file string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(tshark, append(append([]string{"-r", file}, tsharkOpts...), args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, stderr.Bytes())
	}
	return out
}

// tsharkPacket is what tshark says about one frame.
type tsharkPacket struct {
	key      captures.Key
	len      uint64
	vlan     uint16
	tcpFlags uint8
	nonFirst bool // a fragment other than the first
}

// tsharkFields lists the fields tsharkPackets asks for, in order.
var tsharkFields = []string{
	"frame.len", "vlan.id",
	"ip.src", "ip.dst", "ip.proto", "ip.frag_offset",
	"ipv6.src", "ipv6.dst", "ipv6.nxt", "ipv6.fraghdr.nxt", "ipv6.fraghdr.offset",
	"tcp.srcport", "tcp.dstport", "tcp.flags", "udp.srcport", "udp.dstport",
	"icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code",
}

// tsharkPackets dissects every frame with tshark and derives its flow key
// by Vigil's rules (docs/FLOWS.md): ports for TCP and UDP, type*256+code
// in the destination port for ICMP and ICMPv6, no ports for a non-first
// fragment.
func tsharkPackets(t *testing.T, tshark, file string) []tsharkPacket {
	t.Helper()
	args := []string{"-T", "fields", "-E", "separator=/t", "-E", "occurrence=f"}
	for _, f := range tsharkFields {
		args = append(args, "-e", f)
	}
	out := runTshark(t, tshark, file, args...)
	var pkts []tsharkPacket
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) != len(tsharkFields) {
			t.Fatalf("tshark line %q: %d fields, want %d", sc.Text(), len(cols), len(tsharkFields))
		}
		f := make(map[string]string, len(cols))
		for i, name := range tsharkFields {
			f[name] = cols[i]
		}
		num := func(name string) uint64 {
			v := f[name]
			if v == "" {
				return 0
			}
			n, err := strconv.ParseUint(v, 0, 32) // tcp.flags is hex: 0x0012
			if err != nil {
				t.Fatalf("tshark field %s=%q: %v", name, v, err)
			}
			return n
		}
		ip := func(name string) netip.Addr {
			a, err := netip.ParseAddr(f[name])
			if err != nil {
				t.Fatalf("tshark field %s=%q: %v", name, f[name], err)
			}
			return a
		}
		p := tsharkPacket{len: num("frame.len"), vlan: uint16(num("vlan.id"))}
		nonFirst := false
		switch {
		case f["ip.src"] != "":
			p.key.Src, p.key.Dst, p.key.Proto = ip("ip.src"), ip("ip.dst"), uint8(num("ip.proto"))
			nonFirst = num("ip.frag_offset") != 0
		case f["ipv6.src"] != "":
			p.key.Src, p.key.Dst, p.key.Proto = ip("ipv6.src"), ip("ipv6.dst"), uint8(num("ipv6.nxt"))
			if f["ipv6.fraghdr.nxt"] != "" {
				p.key.Proto = uint8(num("ipv6.fraghdr.nxt"))
				nonFirst = num("ipv6.fraghdr.offset") != 0
			}
		default:
			t.Fatalf("tshark line %q: not IP", sc.Text())
		}
		p.nonFirst = nonFirst
		if !nonFirst {
			switch p.key.Proto {
			case 6:
				p.key.SrcPort, p.key.DstPort = uint16(num("tcp.srcport")), uint16(num("tcp.dstport"))
				p.tcpFlags = uint8(num("tcp.flags"))
			case 17:
				p.key.SrcPort, p.key.DstPort = uint16(num("udp.srcport")), uint16(num("udp.dstport"))
			case 1:
				p.key.DstPort = uint16(num("icmp.type")<<8 | num("icmp.code"))
			case 58:
				p.key.DstPort = uint16(num("icmpv6.type")<<8 | num("icmpv6.code"))
			}
		}
		pkts = append(pkts, p)
	}
	if len(pkts) == 0 {
		t.Fatalf("tshark found no packet in %s", file)
	}
	return pkts
}

// convRow is one line of a tshark conversation table: A and B with
// frames and bytes each way. Bytes are exact only when tshark printed
// them in bytes; past 9999 it rounds to kB or MB, and exact is false.
type convRow struct {
	a, b     string // address, or address:port
	framesAB uint64
	framesBA uint64
	bytesAB  uint64
	bytesBA  uint64
	exactAB  bool
	exactBA  bool
}

// tsharkConvs runs tshark's conversation statistics and returns the rows
// of each table by name ("TCP", "UDP", "IPv4", "IPv6"), and the total
// frames and bytes from io,stat.
func tsharkConvs(t *testing.T, tshark, file string) (map[string][]convRow, captures.Counts) {
	t.Helper()
	out := runTshark(t, tshark, file, "-q", "-z", "conv,tcp", "-z", "conv,udp", "-z", "conv,ip", "-z", "conv,ipv6", "-z", "io,stat,0")
	tables := make(map[string][]convRow)
	var total captures.Counts
	var table string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutSuffix(line, " Conversations"); ok {
			table = name
			tables[table] = nil
			continue
		}
		if strings.HasPrefix(line, "=====") {
			table = ""
			continue
		}
		fs := strings.Fields(line)
		if table != "" && len(fs) == 14 && fs[1] == "<->" {
			// A <-> B  framesBA bytesBA unit  framesAB bytesAB unit  total ...
			var r convRow
			r.a, r.b = fs[0], fs[2]
			r.framesBA, r.bytesBA, r.exactBA = convNumbers(t, line, fs[3], fs[4], fs[5])
			r.framesAB, r.bytesAB, r.exactAB = convNumbers(t, line, fs[6], fs[7], fs[8])
			tables[table] = append(tables[table], r)
			continue
		}
		// io,stat: "| 0.000 <> 5.902 |     49 | 13328 |"
		if len(fs) == 9 && fs[0] == "|" && fs[2] == "<>" {
			f, err1 := strconv.ParseUint(fs[5], 10, 64)
			b, err2 := strconv.ParseUint(fs[7], 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("tshark io,stat line %q", line)
			}
			total.Packets += f
			total.Bytes += b
		}
	}
	for _, name := range []string{"TCP", "UDP", "IPv4", "IPv6"} {
		if _, ok := tables[name]; !ok {
			t.Fatalf("tshark printed no %s conversation table:\n%s", name, out)
		}
	}
	if total.Packets == 0 {
		t.Fatalf("tshark printed no io,stat total:\n%s", out)
	}
	return tables, total
}

// convNumbers parses "frames bytes unit" of a conversation row.
func convNumbers(t *testing.T, line, frames, num, unit string) (uint64, uint64, bool) {
	t.Helper()
	f, err1 := strconv.ParseUint(frames, 10, 64)
	n, err2 := strconv.ParseUint(num, 10, 64)
	mult := map[string]uint64{"bytes": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit]
	if err1 != nil || err2 != nil || mult == 0 {
		t.Fatalf("tshark conversation line %q: cannot read %q %q %q", line, frames, num, unit)
	}
	return f, n * mult, mult == 1
}

// splitHostPort splits tshark's unbracketed "address:port".
func splitHostPort(t *testing.T, s string) (netip.Addr, uint16) {
	t.Helper()
	i := strings.LastIndexByte(s, ':')
	a, err1 := netip.ParseAddr(s[:max(i, 0)])
	p, err2 := strconv.ParseUint(s[i+1:], 10, 16)
	if i < 0 || err1 != nil || err2 != nil {
		t.Fatalf("tshark endpoint %q: want address:port", s)
	}
	return a, uint16(p)
}

// checkConvs checks tshark's conversation tables against the per-frame
// dissection: TCP and UDP rows against the keys of each direction, IPv4
// and IPv6 rows against all packets between two addresses (ICMP and
// fragments included), io,stat against the total. Frames must agree
// exactly, bytes exactly where tshark printed them exactly and within
// its rounding otherwise.
func checkConvs(t *testing.T, pkts []tsharkPacket, tables map[string][]convRow, total captures.Counts) {
	t.Helper()
	byKey := make(map[captures.Key]captures.Counts)
	type pair struct{ src, dst netip.Addr }
	byPair := make(map[pair]captures.Counts)
	var sum captures.Counts
	add := func(c *captures.Counts, n uint64) { c.Packets++; c.Bytes += n }
	for _, p := range pkts {
		c := byKey[p.key]
		add(&c, p.len)
		byKey[p.key] = c
		// tshark 4.0's IPv6 conversations leave out non-first fragments
		// when it does not reassemble (its IPv4 ones count them).
		if !(p.nonFirst && p.key.Src.Is6()) {
			pc := byPair[pair{p.key.Src, p.key.Dst}]
			add(&pc, p.len)
			byPair[pair{p.key.Src, p.key.Dst}] = pc
		}
		add(&sum, p.len)
	}
	if sum != total {
		t.Errorf("tshark io,stat says %+v in all, its per-frame dissection %+v", total, sum)
	}
	check := func(what string, r convRow, ab, ba captures.Counts) {
		t.Helper()
		near := func(got, want uint64, exact bool) bool {
			if exact {
				return got == want
			}
			return max(got, want)-min(got, want) < got/100+1000 // rounded to the unit
		}
		if r.framesAB != ab.Packets || r.framesBA != ba.Packets || !near(r.bytesAB, ab.Bytes, r.exactAB) || !near(r.bytesBA, ba.Bytes, r.exactBA) {
			t.Errorf("tshark %s conversation %s <-> %s: %d frames %d bytes ->, %d frames %d bytes <-; per frame: %+v ->, %+v <-",
				what, r.a, r.b, r.framesAB, r.bytesAB, r.framesBA, r.bytesBA, ab, ba)
		}
	}
	seen := make(map[captures.Key]bool)
	for name, proto := range map[string]uint8{"TCP": 6, "UDP": 17} {
		// One 5-tuple may be several conversations (tshark splits a TCP
		// stream reused after it closed): add them up, A to B being the
		// direction of the key.
		sums := make(map[captures.Key]*convRow)
		var order []captures.Key
		for _, r := range tables[name] {
			sa, pa := splitHostPort(t, r.a)
			sb, pb := splitHostPort(t, r.b)
			k := captures.Key{Src: sa, Dst: sb, SrcPort: pa, DstPort: pb, Proto: proto}
			if s, ok := sums[k.Reverse()]; ok {
				s.framesAB += r.framesBA
				s.bytesAB += r.bytesBA
				s.framesBA += r.framesAB
				s.bytesBA += r.bytesAB
				s.exactAB = s.exactAB && r.exactBA
				s.exactBA = s.exactBA && r.exactAB
				continue
			}
			if s, ok := sums[k]; ok {
				s.framesAB += r.framesAB
				s.bytesAB += r.bytesAB
				s.framesBA += r.framesBA
				s.bytesBA += r.bytesBA
				s.exactAB = s.exactAB && r.exactAB
				s.exactBA = s.exactBA && r.exactBA
				continue
			}
			r := r
			sums[k] = &r
			order = append(order, k)
		}
		for _, k := range order {
			check(name, *sums[k], byKey[k], byKey[k.Reverse()])
			seen[k], seen[k.Reverse()] = true, true
		}
	}
	for k, c := range byKey {
		if (k.Proto == 6 || k.Proto == 17) && k.SrcPort|k.DstPort != 0 && !seen[k] {
			t.Errorf("%s: %+v in tshark's dissection but in no tshark conversation", k, c)
		}
	}
	for _, name := range []string{"IPv4", "IPv6"} {
		for _, r := range tables[name] {
			a, err1 := netip.ParseAddr(r.a)
			b, err2 := netip.ParseAddr(r.b)
			if err1 != nil || err2 != nil {
				t.Fatalf("tshark %s conversation %s <-> %s", name, r.a, r.b)
			}
			check(name, r, byPair[pair{a, b}], byPair[pair{b, a}])
			delete(byPair, pair{a, b})
			delete(byPair, pair{b, a})
		}
	}
	if len(byPair) != 0 {
		t.Errorf("address pairs in tshark's dissection but in no IP conversation: %v", byPair)
	}
}
