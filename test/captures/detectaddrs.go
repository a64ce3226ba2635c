package captures

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
)

// plan is the address plan of the detection captures for one family.
type plan struct {
	internal netip.Prefix // the site
	victim   netip.Addr   // of the floods, amplifications and the scan
	attacker netip.Addr   // of the one-source attacks
	ssh, rdp netip.Addr   // servers of the brute forces
	intelCli netip.Addr   // the internal host talking to the intel address
	intel    netip.Addr   // on the intel list
	watched  netip.Addr   // silent_host's watched host
	spikeDst netip.Addr   // traffic_spike's host
	spikeSrc netip.Addr   // and the server it downloads from
	carpet   netip.Prefix // carpet_bombing's prefix
	sweep    netip.Prefix // where host_sweep probes (v4: less 10.1.2.0/24)
	silentTo [3]netip.Addr
	// Background: clients, servers and resolvers.
	clients, servers []netip.Addr
	resolvers        [2]netip.Addr
}

func mustAddrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func hosts(prefix string, from, n int) []netip.Addr {
	p := netip.MustParsePrefix(prefix)
	out := make([]netip.Addr, n)
	for i := range out {
		b := p.Addr().As16()
		binary.BigEndian.PutUint16(b[14:], binary.BigEndian.Uint16(b[14:])+uint16(from+i))
		a := netip.AddrFrom16(b)
		if p.Addr().Is4() {
			a = a.Unmap()
		}
		out[i] = a
	}
	return out
}

var plan4 = plan{
	internal: netip.MustParsePrefix("10.1.0.0/16"),
	victim:   netip.MustParseAddr("10.1.0.10"),
	attacker: netip.MustParseAddr("192.0.2.66"),
	ssh:      netip.MustParseAddr("10.1.0.22"),
	rdp:      netip.MustParseAddr("10.1.0.33"),
	intelCli: netip.MustParseAddr("10.1.0.77"),
	intel:    netip.MustParseAddr("192.0.2.200"),
	watched:  netip.MustParseAddr("10.1.0.50"),
	spikeDst: netip.MustParseAddr("10.1.0.60"),
	spikeSrc: netip.MustParseAddr("198.51.100.60"),
	carpet:   netip.MustParsePrefix("10.1.2.0/24"),
	sweep:    netip.MustParsePrefix("10.1.0.0/16"),
	silentTo: [3]netip.Addr(mustAddrs("203.0.113.150", "203.0.113.151", "203.0.113.152")),
	// 10.1.0.100-115; servers .1-.30 of both external /24s.
	clients:   hosts("10.1.0.0/24", 100, 16),
	servers:   append(hosts("198.51.100.0/24", 1, 30), hosts("203.0.113.0/24", 1, 30)...),
	resolvers: [2]netip.Addr(mustAddrs("198.51.100.53", "203.0.113.53")),
}

var plan6 = plan{
	internal:  netip.MustParsePrefix("2001:db8:1::/48"),
	victim:    netip.MustParseAddr("2001:db8:1::10"),
	attacker:  netip.MustParseAddr("2001:db8:bad::66"),
	ssh:       netip.MustParseAddr("2001:db8:1::22"),
	rdp:       netip.MustParseAddr("2001:db8:1::33"),
	intelCli:  netip.MustParseAddr("2001:db8:1::77"),
	intel:     netip.MustParseAddr("2001:db8:bad:1::200"),
	watched:   netip.MustParseAddr("2001:db8:1::50"),
	spikeDst:  netip.MustParseAddr("2001:db8:1::60"),
	spikeSrc:  netip.MustParseAddr("2001:db8:ff::60"),
	carpet:    netip.MustParsePrefix("2001:db8:1:2::/64"),
	sweep:     netip.MustParsePrefix("2001:db8:1::/64"),
	silentTo:  [3]netip.Addr(mustAddrs("2001:db8:ff::150", "2001:db8:ff::151", "2001:db8:ff::152")),
	clients:   hosts("2001:db8:1::/64", 0x100, 12),
	servers:   append(hosts("2001:db8:ff::/64", 1, 30), hosts("2001:db8:ff:1::/64", 1, 30)...),
	resolvers: [2]netip.Addr(mustAddrs("2001:db8:ff::53", "2001:db8:ff:1::53")),
}

func planOf(v6 bool) *plan {
	if v6 {
		return &plan6
	}
	return &plan4
}

// reserved are the ranges random external addresses and the random
// entries of the intel list stay out of: the internal networks, the
// background's servers, the attackers.
var reserved = []netip.Prefix{
	netip.MustParsePrefix("10.1.0.0/16"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// IntelListed are the addresses of the intel list that the captures use.
var IntelListed = []netip.Addr{plan4.intel, plan6.intel}

// intelList is the intel list: the two listed addresses and random
// prefixes, with the coverage of the random ones as sorted, merged
// ranges (IPv4 addresses, IPv6 upper 64 bits: their prefixes are /48 or
// shorter) so that random addresses can avoid them.
type intelList struct {
	prefixes []netip.Prefix
	v4, v6   [][2]uint64
}

// IntelListSize is the number of random prefixes of the intel list.
const IntelListSize = 150_000

var theIntel = sync.OnceValue(func() *intelList {
	rng := rand.New(rand.NewPCG(5, 0x696e74656c))
	l := &intelList{prefixes: make([]netip.Prefix, 0, IntelListSize+2)}
	l.prefixes = append(l.prefixes, netip.PrefixFrom(plan4.intel, 32), netip.PrefixFrom(plan6.intel, 128))
	for len(l.prefixes) < IntelListSize+2 {
		var p netip.Prefix
		if rng.IntN(5) > 0 { // 80% IPv4, /24 most often, /16../32
			bits := 24
			if rng.IntN(10) < 3 {
				bits = 16 + rng.IntN(17)
			}
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], 1<<24+rng.Uint32N(223<<24)) // 1.0.0.0-223.255.255.255
			p = netip.PrefixFrom(netip.AddrFrom4(b), bits).Masked()
		} else { // in 2000::/3, /32../48
			var b [16]byte
			binary.BigEndian.PutUint64(b[:], 1<<61|rng.Uint64N(1<<61))
			p = netip.PrefixFrom(netip.AddrFrom16(b), 32+rng.IntN(17)).Masked()
		}
		if slices.ContainsFunc(reserved, p.Overlaps) {
			continue
		}
		l.prefixes = append(l.prefixes, p)
		lo, hi := span(p)
		if p.Addr().Is4() {
			l.v4 = append(l.v4, [2]uint64{lo, hi})
		} else {
			l.v6 = append(l.v6, [2]uint64{lo, hi})
		}
	}
	l.v4, l.v6 = merge(l.v4), merge(l.v6)
	return l
})

// span is the range a prefix covers: IPv4 addresses, or the upper 64
// bits of IPv6 ones.
func span(p netip.Prefix) (lo, hi uint64) {
	if p.Addr().Is4() {
		b := p.Addr().As4()
		lo = uint64(binary.BigEndian.Uint32(b[:]))
		return lo, lo + 1<<(32-p.Bits()) - 1
	}
	b := p.Addr().As16()
	lo = binary.BigEndian.Uint64(b[:])
	return lo, lo + 1<<(64-p.Bits()) - 1
}

func merge(r [][2]uint64) [][2]uint64 {
	slices.SortFunc(r, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
	out := r[:0]
	for _, x := range r {
		if n := len(out); n > 0 && x[0] <= out[n-1][1]+1 {
			out[n-1][1] = max(out[n-1][1], x[1])
			continue
		}
		out = append(out, x)
	}
	return out
}

// covers reports whether a random prefix of the list covers a.
func (l *intelList) covers(a netip.Addr) bool {
	r, v := l.v4, uint64(0)
	if a.Is4() {
		b := a.As4()
		v = uint64(binary.BigEndian.Uint32(b[:]))
	} else {
		b := a.As16()
		r, v = l.v6, binary.BigEndian.Uint64(b[:])
	}
	i, _ := slices.BinarySearchFunc(r, v, func(x [2]uint64, v uint64) int {
		if x[1] < v {
			return -1
		}
		if x[0] > v {
			return 1
		}
		return 0
	})
	return i < len(r) && r[i][0] <= v && v <= r[i][1]
}

// WriteIntelList writes the intel list of the detection captures in
// Spamhaus DROP format ("192.0.2.200/32 ; SBL000001", ";" comments):
// IntelListed as /32 and /128, and IntelListSize random IPv4 and IPv6
// prefixes that cover no other address of any detection or benign
// capture (random external addresses avoid them).
func WriteIntelList(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	fmt.Fprintln(bw, "; Spamhaus DROP List 2026/04/01 - (c) 2026 The Spamhaus Project SLTD (Vigil test data, random)")
	fmt.Fprintln(bw, "; Last-Modified: Wed, 01 Apr 2026 00:00:00 GMT")
	for i, p := range theIntel().prefixes {
		fmt.Fprintf(bw, "%s ; SBL%06d\n", p, i+1)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing intel list: %w", err)
	}
	return nil
}

// external returns a random address outside the reserved ranges and the
// intel list: over the whole address space of the family if whole is
// set (spoofed sources), else over 1.0.0.0-223.255.255.255 or 2000::/3.
func (g *gen) external(v6, whole bool) netip.Addr {
	l := theIntel()
	for {
		var a netip.Addr
		switch {
		case !v6 && whole:
			a = netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, g.rng.Uint32())))
		case !v6:
			a = netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, 1<<24+g.rng.Uint32N(223<<24))))
		default:
			var b [16]byte
			hi := g.rng.Uint64()
			if !whole {
				hi = 1<<61 | hi>>3
			}
			binary.BigEndian.PutUint64(b[:], hi)
			binary.BigEndian.PutUint64(b[8:], g.rng.Uint64())
			a = netip.AddrFrom16(b)
		}
		if !slices.ContainsFunc(reserved, func(p netip.Prefix) bool { return p.Contains(a) }) && !l.covers(a) {
			return a
		}
	}
}

// reflectorPorts are the source ports of amplification reflectors, which
// random attack source ports avoid.
var reflectorPorts = []uint16{53, 123, 1900, 11211, 19, 111, 137, 161, 389, 500, 520, 1434, 3283, 3702, 5353, 5683, 10001, 47808}

// randomPort returns a port in 1024..65535 that no reflector uses.
func (g *gen) randomPort() uint16 {
	for {
		p := uint16(1024 + g.rng.IntN(65536-1024))
		if !slices.Contains(reflectorPorts, p) {
			return p
		}
	}
}
