package detect

import (
	"bufio"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// randomAddr returns a random IPv4 or IPv6 address.
func randomAddr(rng *rand.Rand, v6 bool) netip.Addr {
	if !v6 {
		var b [4]byte
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return netip.AddrFrom16(b)
}

// randomIn returns a random address of p.
func randomIn(rng *rand.Rand, p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	r := randomAddr(rng, len(b) == 16).AsSlice()
	for i := range b {
		covered := min(max(p.Bits()-8*i, 0), 8)
		mask := byte(uint(0xff00) >> covered)
		b[i] = b[i]&mask | r[i]&^mask
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// genPrefixes returns n random masked prefixes, about half IPv4 (/16 to
// /32) and half IPv6 (/24 to /128); a tenth are nested in an earlier one,
// so longest-prefix match has work to do.
func genPrefixes(n int, seed uint64) []netip.Prefix {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	out := make([]netip.Prefix, 0, n)
	for len(out) < n {
		var p netip.Prefix
		switch {
		case len(out) > 0 && rng.IntN(10) == 0:
			parent := out[rng.IntN(len(out))]
			maxBits := parent.Addr().BitLen()
			if parent.Bits() == maxBits {
				continue
			}
			bits := parent.Bits() + 1 + rng.IntN(maxBits-parent.Bits())
			p = netip.PrefixFrom(randomIn(rng, parent), bits).Masked()
		case rng.IntN(2) == 0:
			p = netip.PrefixFrom(randomAddr(rng, false), 16+rng.IntN(17)).Masked()
		default:
			p = netip.PrefixFrom(randomAddr(rng, true), 24+rng.IntN(105)).Masked()
		}
		out = append(out, p)
	}
	return out
}

// genListFile writes n random prefixes as a plain list (host routes as bare
// addresses, some entries with a comment).
func genListFile(tb testing.TB, n int, seed uint64) (string, []netip.Prefix) {
	tb.Helper()
	prefixes := genPrefixes(n, seed)
	path := filepath.Join(tb.TempDir(), "big.txt")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriter(f)
	_, _ = w.WriteString("# generated threat-intel list\n")
	for i, p := range prefixes {
		if p.IsSingleIP() {
			_, _ = w.WriteString(p.Addr().String())
		} else {
			_, _ = w.WriteString(p.String())
		}
		if i%7 == 0 {
			_, _ = w.WriteString(" # generated")
		}
		_ = w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return path, prefixes
}

// TestListLarge loads 150k random prefixes and checks lookups against a
// linear scan.
func TestListLarge(t *testing.T) {
	const n = 150_000
	path, prefixes := genListFile(t, n, 1)
	l := mustLoad(t, ListSpec{Name: "big", Path: path})
	distinct := map[netip.Prefix]bool{}
	for _, p := range prefixes {
		distinct[p] = true
	}
	if l.Len() != len(distinct) {
		t.Errorf("Len() = %d, want %d distinct prefixes", l.Len(), len(distinct))
	}

	rng := rand.New(rand.NewPCG(2, 3))
	samples := 1000
	if testing.Short() {
		samples = 200
	}
	var addrs []netip.Addr
	for range samples / 2 {
		addrs = append(addrs, randomIn(rng, prefixes[rng.IntN(len(prefixes))]))
	}
	for i := range samples / 2 {
		addrs = append(addrs, randomAddr(rng, i%4 == 0))
	}
	hits := 0
	for _, a := range addrs {
		var want netip.Prefix
		for _, p := range prefixes {
			if p.Contains(a) && (!want.IsValid() || p.Bits() > want.Bits()) {
				want = p
			}
		}
		got, ok := l.Lookup(a)
		if ok != want.IsValid() || got != want || l.Contains(a) != ok {
			t.Errorf("%s: Lookup = %s %v, Contains = %v; want %s", a, got, ok, l.Contains(a), want)
		}
		if ok {
			hits++
		}
	}
	// Both outcomes must be exercised for the check to mean anything.
	if hits < samples/2 || hits == samples {
		t.Errorf("%d hits of %d samples: the sample does not test both hits and misses", hits, samples)
	}
	t.Logf("%d prefixes (%d distinct), %d hits of %d samples", n, len(distinct), hits, samples)
}

func TestListLookupNoAllocs(t *testing.T) {
	l := mustLoad(t, ListSpec{Name: "n", Entries: []string{"10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32", "2001:db8:1::/48"}})
	for _, s := range []string{"10.1.2.3", "11.0.0.1", "2001:db8:1::1", "2001:db9::1", "::ffff:10.1.2.3"} {
		a := netip.MustParseAddr(s)
		if n := testing.AllocsPerRun(100, func() { l.Contains(a) }); n != 0 {
			t.Errorf("Contains(%s) allocates %v times", s, n)
		}
		if n := testing.AllocsPerRun(100, func() { l.LookupLabel(a) }); n != 0 {
			t.Errorf("LookupLabel(%s) allocates %v times", s, n)
		}
	}
}
