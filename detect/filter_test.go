package detect

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-sensor/vigil/flow"
)

// fltTestEvents are the events every filter case runs on, by name.
var fltTestEvents = map[string]Event{
	"v4": {
		Source: SourceSamples, Time: 1, SrcAddr: netip.MustParseAddr("10.1.2.3"),
		DstAddr: netip.MustParseAddr("192.168.1.10"), SrcPort: 40000, DstPort: 443, Proto: 6,
		TCPFlags: flow.TCPSyn, IPVersion: 4, Direction: flow.Ingress, Ifindex: 3,
		Packets: 1000, Bytes: 64000, Samples: 1, Rate: 1000,
	},
	"synack": {
		Source: SourceSamples, SrcAddr: netip.MustParseAddr("192.168.1.10"),
		DstAddr: netip.MustParseAddr("10.1.2.3"), SrcPort: 443, DstPort: 40000, Proto: 6,
		TCPFlags: flow.TCPSyn | flow.TCPAck, IPVersion: 4, Direction: flow.Egress, Ifindex: 3,
		Packets: 1, Bytes: 60, Samples: 1, Rate: 1,
	},
	"v6": {
		Source: SourceFlows, SrcAddr: netip.MustParseAddr("2001:db8::1"),
		DstAddr: netip.MustParseAddr("fc00::5"), SrcPort: 53, DstPort: 6881, Proto: 17,
		IPVersion: 6, Direction: flow.Egress, Ifindex: 7, VNI: 42, Fragment: true, NonFirst: true,
		Packets: 10, Bytes: 15000, Samples: 5, Rate: 100, Duration: 2_500_000_000,
	},
	"icmp6": {
		Source: SourceSamples, SrcAddr: netip.MustParseAddr("2001:db8::2"),
		DstAddr: netip.MustParseAddr("2001:db8:1::9"), DstPort: 128 << 8, Proto: 58,
		TCPFlags: 0, IPVersion: 6, Direction: flow.Ingress, Packets: 4, Bytes: 400, Samples: 1, Rate: 4,
	},
	"alert": {
		Source: SourceAlerts, DstAddr: netip.MustParseAddr("192.168.1.10"), Rule: "syn_flood",
		Severity: flow.SeverityHigh, State: flow.AlertUpdate, Packets: 5_000_000, Bytes: 1 << 32,
	},
}

// fltTestLists is a tiny ListSet: list name to addresses.
type fltTestLists map[string][]netip.Addr

type fltTestAddrSet []netip.Addr

func (s fltTestAddrSet) Contains(a netip.Addr) bool { return slices.Contains(s, a) }

func (l fltTestLists) List(name string) (AddrSet, bool) {
	s, ok := l[name]
	return fltTestAddrSet(s), ok
}

var fltLists = fltTestLists{
	"intel":  {netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("2001:db8::2")},
	"empty":  nil,
	"server": {netip.MustParseAddr("192.168.1.10")},
}

func TestFilterMatches(t *testing.T) {
	cases := []struct {
		src   string
		match string // names of the matching events, space-separated
	}{
		// Fields.
		{`src_addr == "10.1.2.3"`, "v4"},
		{`dst_addr == "10.1.2.3"`, "synack"},
		{`src_addr != "10.1.2.3"`, "synack v6 icmp6 alert"},
		{`src_addr == "2001:db8:0:0::1"`, "v6"},
		{`"fc00::5" == dst_addr`, "v6"},
		{`dst_addr == "::ffff:10.1.2.3"`, "synack"},
		{`src_addr == dst_addr`, ""},
		{`src_addr != dst_addr`, "v4 synack v6 icmp6 alert"},
		{`src_port == 40000`, "v4"},
		{`dst_port == 443`, "v4"},
		{`dst_port == 128 * 256`, "icmp6"},
		{`proto == 17`, "v6"},
		{`tcp_flags == 18`, "synack"},
		{`ip_version == 6`, "v6 icmp6"},
		{`ifindex == 3`, "v4 synack"},
		{`vni == 42`, "v6"},
		{`packets >= 1000`, "v4 alert"},
		{`bytes > 4294967295`, "alert"},
		{`samples == 5`, "v6"},
		{`rate < 10`, "synack icmp6 alert"},
		{`severity == 4`, "alert"},
		{`severity >= 1`, "alert"},
		{`duration == 2.5`, "v6"},
		{`duration > 2`, "v6"},
		{`syn`, "v4 synack"},
		{`ack`, "synack"},
		{`fin or rst or psh`, ""},
		{`tcp`, "v4 synack"},
		{`udp`, "v6"},
		{`icmp`, "icmp6"},
		{`fragment`, "v6"},
		{`non_first_fragment`, "v6"},
		{`direction == "ingress"`, "v4 icmp6 alert"},
		{`direction != "ingress"`, "synack v6"},
		{`source == "flows"`, "v6"},
		{`"alerts" == source`, "alert"},
		{`rule == "syn_flood"`, "alert"},
		{`rule != ""`, "alert"},
		{`state == "update"`, "alert"},
		{`state != "start"`, "v4 synack v6 icmp6 alert"},
		// Logic, with flag merging.
		{`tcp && syn && !ack`, "v4"},
		{`syn and not ack`, "v4"},
		{`syn && ack`, "synack"},
		{`syn && !syn`, ""},
		{`syn || ack`, "v4 synack"},
		{`ack || udp`, "synack v6"},
		{`!(syn || ack)`, "v6 icmp6 alert"},
		{`not syn and not fragment`, "icmp6 alert"},
		{`syn == true`, "v4 synack"},
		{`syn != true`, "v6 icmp6 alert"},
		{`syn == false`, "v6 icmp6 alert"},
		{`syn == ack`, "synack v6 icmp6 alert"},
		{`syn != ack`, "v4"},
		{`true`, "v4 synack v6 icmp6 alert"},
		{`false or udp`, "v6"},
		{`true and udp`, "v6"},
		{`false and (udp or tcp)`, ""},
		{`udp || tcp || icmp`, "v4 synack v6 icmp6"},
		{`udp && fragment && ip_version == 6 && vni > 0`, "v6"},
		{`(tcp and dst_port == 443) or (udp and src_port == 53)`, "v4 v6"},
		// Comparisons and arithmetic.
		{`1 < src_port < 100`, "v6"},
		{`bytes / packets > 64`, "v6 icmp6 alert"},
		{`bytes / packets == 64`, "v4"},
		{`bytes / 0 > 1e300`, "v4 synack v6 icmp6 alert"},
		{`packets % 2 == 0`, "v4 v6 icmp6 alert"},
		{`packets % (src_port - src_port) == 0`, "v4 synack v6 icmp6 alert"},
		{`packets * 8 - 10 == 70`, "v6"},
		{`-packets < -100`, "v4 alert"},
		{`+packets == 10`, "v6"},
		{`duration > 0 and bytes * 8 / duration >= 48000`, "v6"},
		{`bytes * 8 / (duration + 0.5) > 1e6`, "v4 alert"},
		{`duration * 1000 + src_port == 2553`, "v6"},
		{`2 + 3 == 5 and tcp`, "v4 synack"},
		{`src_port >= 443 and src_port <= 443`, "synack"},
		{`443 >= src_port and 443 < dst_port`, "synack v6 icmp6"},
		// in lists and ranges.
		{`dst_port in [80, 443, 8080]`, "v4"},
		{`dst_port not in [80, 443, 8080]`, "synack v6 icmp6 alert"},
		{`src_port in [53, 123, 65535, 0]`, "v6 icmp6 alert"},
		{`dst_port in 6881..6889`, "v6"},
		{`dst_port not in 6881..6889`, "v4 synack icmp6 alert"},
		{`dst_port in 6889..6881`, ""},
		{`dst_port in 6870..6881`, "v6"},
		{`src_port in 0..53`, "v6 icmp6 alert"},
		{`duration in 2..3`, ""},
		{`duration in 0..1`, "v4 synack icmp6 alert"},
		{`duration in [2.5, 7]`, "v6"},
		{`proto in [1, 58]`, "icmp6"},
		{`proto in [6]`, "v4 synack"},
		{`packets in [1, 10, 5000000]`, "synack v6 alert"},
		{`bytes in [60, 4294967296]`, "synack alert"},
		{`packets - 1 in [999, 9]`, "v4 v6"},
		{`src_port in []`, ""},
		{`direction in ["egress"]`, "synack v6"},
		{`source in ["samples", "alerts"]`, "v4 synack icmp6 alert"},
		{`state not in ["start", "end"]`, "v4 synack v6 icmp6 alert"},
		{`rule in ["x", "syn_flood"]`, "alert"},
		{`src_addr in ["10.1.2.3", "2001:db8::1"]`, "v4 v6"},
		{`dst_addr not in ["10.1.2.3", "2001:db8::1", "fc00::5"]`, "v4 icmp6 alert"},
		{`src_addr in ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4", "1.1.1.5", "1.1.1.6", "1.1.1.7", "1.1.1.8", "2001:db8::2"]`, "icmp6"},
		// in_cidr and in_list.
		{`in_cidr(src_addr, "10.0.0.0/8")`, "v4"},
		{`in_cidr(dst_addr, "10.0.0.0/8", "192.168.0.0/16", "fc00::/7")`, "v4 synack v6 alert"},
		{`in_cidr(src_addr, "2001:db8::/32")`, "v6 icmp6"},
		{`in_cidr(src_addr, "2001:db8::2")`, "icmp6"},
		{`in_cidr(src_addr, "::ffff:10.0.0.0/104")`, "v4"},
		{`in_cidr(src_addr, "::/0")`, "v6 icmp6"},
		{`in_cidr(src_addr, "0.0.0.0/0")`, "v4 synack"},
		{`not in_cidr(dst_addr, "192.168.1.0/24")`, "synack v6 icmp6"},
		{`in_list(src_addr, "intel")`, "v4 icmp6"},
		{`in_list(dst_addr, "intel") or in_list(dst_addr, "server")`, "v4 synack alert"},
		{`in_list(src_addr, "empty")`, ""},
	}
	for _, tc := range cases {
		f, err := CompileFilter(tc.src, fltLists)
		if err != nil {
			t.Errorf("CompileFilter(%q): %v", tc.src, err)
			continue
		}
		want := strings.Fields(tc.match)
		for name, e := range fltTestEvents {
			if got := f(&e); got != slices.Contains(want, name) {
				t.Errorf("%q on %s: got %v", tc.src, name, got)
			}
		}
	}
}

func TestFilterEmpty(t *testing.T) {
	for _, src := range []string{"", "  \n"} {
		f, err := CompileFilter(src, nil)
		if err != nil {
			t.Fatalf("CompileFilter(%q): %v", src, err)
		}
		e := fltTestEvents["v4"]
		if f == nil || !f(&e) {
			t.Errorf("CompileFilter(%q) does not match all", src)
		}
	}
}

func TestFilterErrors(t *testing.T) {
	cases := []struct{ src, want string }{
		{`dst_prot == 6`, `unknown field "dst_prot" (1:1)`},
		{`tcp and foo`, `unknown field "foo" (1:9)`},
		{`in_cidr(src_addr, "10.0.0.0/33")`, `in_cidr: bad prefix "10.0.0.0/33" (1:19)`},
		{`in_cidr(src_addr, "10.0.0.0/8", "nope")`, `in_cidr: bad address "nope"`},
		{`in_cidr(src_addr)`, `in_cidr: want in_cidr(address, prefix, ...)`},
		{`in_cidr(src_port, "10.0.0.0/8")`, `cannot use int as argument`},
		{`in_cidr(src_addr, rule)`, `in_cidr: want a constant string`},
		{`in_list(src_addr, "intel")`, `in_list: unknown list "intel"`},
		{`in_list(src_addr, "nope")`, `in_list: unknown list "nope"`},
		{`src_addr == "10.0.0.300"`, `bad address "10.0.0.300"`},
		{`src_addr == "10.0.0.0/8"`, `"10.0.0.0/8" is a prefix, not an address (use in_cidr)`},
		{`src_addr == "fe80::1%eth0"`, `zones are not supported`},
		{`src_addr in ["10.0.0.1", "x"]`, `bad address "x" (1:26)`},
		{`src_addr < "10.0.0.1"`, `not supported in filters: < on addresses`},
		{`src_addr == rule`, `an address compares with an address or a constant string`},
		{`src_addr + "x" == "y"`, `not supported in filters: + on addresses`},
		{`src_port == "80"`, `mismatched types int and string`},
		{`src_port in [80, "http"]`, `in: a string in a list for a integer (1:18)`},
		{`src_port in [80, dst_port]`, `in needs a list of constants`},
		{`src_port in 1..dst_port`, `a range needs constant integers`},
		{`rule in 1..3`, `cannot use string as type int`},
		{`direction == "inbound"`, `direction is never "inbound" (want one of ["ingress" "egress"])`},
		{`state in ["start", "stop"]`, `state is never "stop"`},
		{`rule < "b"`, `not supported in filters: ordering strings`},
		{`rule + "x" == "y"`, `not supported in filters: + on a string and a string`},
		{`src_port`, `expected bool, but got int`},
		{`src_port % 0 == 1`, `modulo by zero`},
		{`duration % 2 == 1`, `mismatched types float64 and int`},
		{`src_addr.foo == 1`, `not supported in filters: member access src_addr.foo (1:10)`},
		{`{"a": 1}.a == 1`, `not supported in filters: member access`},
		{`src_port in {"a": 1}`, `not supported in filters: map`},
		{`all([1], # > 0)`, `not supported in filters: function all`},
		{`src_addr | in_cidr("10.0.0.0/8")`, `not supported in filters: pipe | (1:10)`},
		{`len(rule) > 0`, `not supported in filters: function len`},
		{`lower(rule) == "x"`, `not supported in filters: function lower`},
		{`foo(src_port)`, `not supported in filters: function foo`},
		{`tcp ? syn : ack`, `not supported in filters: conditional`},
		{`let x = 1; x == 1`, `not supported in filters: let`},
		{`rule matches "^syn"`, `not supported in filters: operator matches`},
		{`rule contains "syn"`, `not supported in filters: operator contains`},
		{`src_port ** 2 > 1`, `not supported in filters: operator **`},
		{`(rule ?? "x") == "x"`, `not supported in filters: operator ??`},
		{`rule == nil`, `not supported in filters: nil`},
		{`src_port in dst_port..65535`, `a range needs constant integers`},
		{`tcp and`, `unexpected token EOF`},
		{`tcp and (udp`, `unexpected token EOF`},
		{`"unterminated`, `literal not terminated`},
		{"tcp and\nfoo", `unknown field "foo" (2:1)`},
	}
	for _, tc := range cases {
		f, err := CompileFilter(tc.src, nil)
		if err == nil {
			t.Errorf("CompileFilter(%q): no error", tc.src)
			continue
		}
		if f != nil {
			t.Errorf("CompileFilter(%q): a filter with an error", tc.src)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CompileFilter(%q): %q, want %q", tc.src, err, tc.want)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("CompileFilter(%q): multi-line error %q", tc.src, err)
		}
	}
}

func TestFilterInListNilLists(t *testing.T) {
	_, err := CompileFilter(`in_list(src_addr, "intel")`, nil)
	if err == nil || !strings.Contains(err.Error(), `in_list: unknown list "intel"`) {
		t.Errorf("got %v", err)
	}
}

func TestFieldNames(t *testing.T) {
	want := []string{"src_addr", "dst_addr", "src_port", "dst_port", "proto", "tcp_flags",
		"ip_version", "ifindex", "vni", "packets", "bytes", "samples", "rate", "severity",
		"duration", "syn", "ack", "fin", "rst", "psh", "tcp", "udp", "icmp", "fragment",
		"non_first_fragment", "amplifier_port", "login_port", "direction", "source", "rule", "state"}
	got := FieldNames()
	if !slices.Equal(got, want) {
		t.Errorf("FieldNames() = %v, want %v", got, want)
	}
	// Every field compiles in an expression of its type.
	for _, name := range got {
		f, _ := fltLookup(name)
		src := map[fltKind]string{
			fltBool: name, fltInt: name + " > 0", fltFloat: name + " > 0.5",
			fltString: name + ` != "x"`, fltAddr: name + ` != "::1"`,
		}[f.v.kind]
		if f.enum != nil {
			src = name + ` != "` + f.enum[len(f.enum)-1] + `"`
		}
		if _, err := CompileFilter(src, nil); err != nil {
			t.Errorf("CompileFilter(%q): %v", src, err)
		}
	}
}

func TestFilterNoAllocs(t *testing.T) {
	f, err := CompileFilter(`tcp && syn && !ack && dst_port in [80, 443, 8080]
		&& in_cidr(dst_addr, "10.0.0.0/8", "192.168.0.0/16", "fc00::/7")
		&& not in_list(src_addr, "intel") && direction == "ingress" && bytes / packets < 100`, fltLists)
	if err != nil {
		t.Fatal(err)
	}
	e := fltTestEvents["v4"]
	e.SrcAddr = netip.MustParseAddr("10.9.9.9")
	if !f(&e) {
		t.Fatal("the filter does not match the event: the test measures too little")
	}
	if n := testing.AllocsPerRun(1000, func() { f(&e) }); n != 0 {
		t.Errorf("%v allocations per event", n)
	}
}

func TestPrefixSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	randAddr := func(v6 bool) netip.Addr {
		if v6 {
			var b [16]byte
			for i := range b {
				b[i] = byte(rng.IntN(4)) // few values: prefixes overlap
			}
			return netip.AddrFrom16(b)
		}
		return netip.AddrFrom4([4]byte{byte(rng.IntN(4)), byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256))})
	}
	for round := range 200 {
		var set fltPrefixSet
		var prefixes []netip.Prefix
		for range 1 + rng.IntN(20) {
			a := randAddr(rng.IntN(2) == 0)
			p := netip.PrefixFrom(a, rng.IntN(a.BitLen()+1)).Masked()
			prefixes = append(prefixes, p)
			set.add(p)
		}
		set.build()
		for range 200 {
			a := randAddr(rng.IntN(2) == 0)
			want := slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
			if got := set.contains(a); got != want {
				t.Fatalf("round %d: %v in %v: got %v", round, a, prefixes, got)
			}
		}
	}
	var set fltPrefixSet
	set.add(netip.MustParsePrefix("::/0"))
	set.add(netip.MustParsePrefix("ffff::/16"))
	set.build()
	if len(set.v6) != 1 || !set.contains(netip.MustParseAddr("ffff::1")) || set.contains(netip.Addr{}) {
		t.Errorf("::/0 merged into %v", set.v6)
	}
}

func TestCondition(t *testing.T) {
	names := []string{"pps", "bps", "ratio"}
	cases := []struct {
		src  string
		vals []float64
		want bool
	}{
		{`pps > 1000`, []float64{1001, 0, 0}, true},
		{`pps > 1000`, []float64{1000, 0, 0}, false},
		{`pps >= 1000 and bps > 1e6`, []float64{1000, 2e6, 0}, true},
		{`pps >= 1000 && bps > 1e6`, []float64{1000, 1e6, 0}, false},
		{`pps > 1000 or bps > 1e6`, []float64{0, 2e6, 0}, true},
		{`pps > 1000 || bps > 1e6`, []float64{0, 0, 0}, false},
		{`not (pps > 1000)`, []float64{0, 0, 0}, true},
		{`!(pps > 1000)`, []float64{2000, 0, 0}, false},
		{`bps / pps > 1000`, []float64{10, 20000, 0}, true},
		{`bps / pps > 1000`, []float64{0, 20000, 0}, true}, // +Inf
		{`bps / pps < 1000`, []float64{0, 0, 0}, false},    // NaN
		{`bps / pps >= 1000`, []float64{0, 0, 0}, false},   // NaN
		{`bps / pps == bps / pps`, []float64{0, 0, 0}, false},
		{`bps / pps != 1`, []float64{0, 0, 0}, true},
		{`ratio < 0.5`, []float64{0, 0, math.NaN()}, false},
		{`(pps + bps) * 2 - 1 == 5`, []float64{1, 2, 0}, true},
		{`-pps < -5`, []float64{6, 0, 0}, true},
		{`+pps == 6`, []float64{6, 0, 0}, true},
		{`10 < pps`, []float64{11, 0, 0}, true},
		{`10 <= pps`, []float64{9, 0, 0}, false},
		{`1 < pps < 3`, []float64{2, 0, 0}, true},
		{`1 < pps < 3`, []float64{3, 0, 0}, false},
		{`min(pps, bps) > 5`, []float64{6, 7, 0}, true},
		{`min(pps, bps) > 5`, []float64{6, 5, 0}, false},
		{`max(pps, bps) > 5`, []float64{6, 5, 0}, true},
		{`max(pps, bps, ratio) == 9`, []float64{6, 5, 9}, true},
		{`min(pps, bps, ratio) == 5`, []float64{6, 5, 9}, true},
		{`abs(ratio - 1) < 0.1`, []float64{0, 0, 0.95}, true},
		{`abs(ratio - 1) < 0.1`, []float64{0, 0, 1.2}, false},
		{`(pps > 1) == (bps > 1)`, []float64{2, 2, 0}, true},
		{`(pps > 1) != (bps > 1)`, []float64{2, 2, 0}, false},
		{`true`, []float64{0, 0, 0}, true},
		{`1 + 1 == 2 and pps == 0`, []float64{0, 0, 0}, true},
		{`pps == 3 / 2`, []float64{1.5, 0, 0}, true},
	}
	for _, tc := range cases {
		c, err := CompileCondition(tc.src, names)
		if err != nil {
			t.Errorf("CompileCondition(%q): %v", tc.src, err)
			continue
		}
		if got := c(tc.vals); got != tc.want {
			t.Errorf("%q on %v: got %v", tc.src, tc.vals, got)
		}
	}
}

func TestConditionErrors(t *testing.T) {
	names := []string{"pps", "bps"}
	cases := []struct{ src, want string }{
		{``, `empty condition`},
		{`ppps > 1`, `unknown measure "ppps" (have pps, bps) (1:1)`},
		{`pps`, `expected bool, but got float64`},
		{`pps % 2 == 1`, `mismatched types float64 and int`},
		{`pps ** 2 > 1`, `not supported in conditions: operator **`},
		{`pps in [1, 2]`, `not supported in conditions: operator in`},
		{`len(pps) > 1`, `not supported in conditions: function len`},
		{`foo(pps) > 1`, `not supported in conditions: function foo`},
		{`min(pps) > 1`, `min takes two or more arguments`},
		{`abs(pps, bps) > 1`, `invalid number of arguments`},
		{`pps > 1 ? true : false`, `not supported in conditions: conditional`},
		{`pps.x > 1`, `not supported in conditions: member access`},
		{`pps == "x"`, `mismatched types float64 and string`},
		{`pps > 1 and`, `unexpected token EOF`},
	}
	for _, tc := range cases {
		_, err := CompileCondition(tc.src, names)
		if err == nil {
			t.Errorf("CompileCondition(%q): no error", tc.src)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CompileCondition(%q): %q, want %q", tc.src, err, tc.want)
		}
	}
}

func TestConditionNoAllocs(t *testing.T) {
	c, err := CompileCondition(`pps > 1000 and bps / pps < 100 or max(pps, bps) > 1e9`, []string{"pps", "bps"})
	if err != nil {
		t.Fatal(err)
	}
	vals := []float64{2000, 100000}
	if !c(vals) {
		t.Fatal("the condition does not hold: the test measures too little")
	}
	if n := testing.AllocsPerRun(1000, func() { c(vals) }); n != 0 {
		t.Errorf("%v allocations per evaluation", n)
	}
}
