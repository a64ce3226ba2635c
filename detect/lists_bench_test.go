package detect

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

const benchListSize = 150_000

func BenchmarkLoadList(b *testing.B) {
	path, _ := genListFile(b, benchListSize, 1)
	b.ReportAllocs()
	var l *List
	for b.Loop() {
		var err error
		if l, err = LoadList(ListSpec{Name: "big", Path: path}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchListSize)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(l.Len()), "prefixes")
}

var benchSink bool

func BenchmarkListContains(b *testing.B) {
	path, prefixes := genListFile(b, benchListSize, 1)
	l, err := LoadList(ListSpec{Name: "big", Path: path})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(4, 5))
	// pick returns 1024 addresses of the family with the wanted outcome.
	pick := func(v6, hit bool) []netip.Addr {
		var out []netip.Addr
		for len(out) < 1024 {
			var a netip.Addr
			if hit {
				p := prefixes[rng.IntN(len(prefixes))]
				if p.Addr().Is6() != v6 {
					continue
				}
				a = randomIn(rng, p)
			} else {
				a = randomAddr(rng, v6)
			}
			if l.Contains(a) == hit {
				out = append(out, a)
			}
		}
		return out
	}
	for _, c := range []struct {
		name    string
		v6, hit bool
	}{{"v4-hit", false, true}, {"v4-miss", false, false}, {"v6-hit", true, true}, {"v6-miss", true, false}} {
		addrs := pick(c.v6, c.hit)
		b.Run("Contains/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				benchSink = l.Contains(addrs[i&1023])
				i++
			}
		})
		b.Run("Lookup/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				_, benchSink = l.Lookup(addrs[i&1023])
				i++
			}
		})
	}
}
