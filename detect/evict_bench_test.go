package detect

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// evictBenchKeys are the keys of evictRule for count distinct sources
// from the nth on.
func evictBenchKeys(r *rule, from, count int) []keyBuf {
	keys := make([]keyBuf, count)
	for i := range keys {
		n := uint32(from + i)
		ev := evictSSH(0, netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}))
		keys[i], _ = makeKey(&ev, r.group)
	}
	return keys
}

// evictBenchRule compiles evictRule with max_keys n.
func evictBenchRule(b *testing.B, n int) (*rule, *RuleSet) {
	set := engLoad(b, fmt.Sprintf(evictRule, n), Options{})
	return set.rules[0], set
}

// BenchmarkEvictNewKey is a new key (a spoofed source) into a full rule
// state: the eviction of a victim and the new key's state. The state's
// keys have 1 to 8 events; the new keys come at 100,000 a second of
// event time.
func BenchmarkEvictNewKey(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		b.Run(fmt.Sprintf("max_keys=%d", n), func(b *testing.B) {
			r, set := evictBenchRule(b, n)
			rs := newRuleState(r, set, 20)
			t := engT0
			for i, k := range evictBenchKeys(r, 0, n) {
				for range 1 + i%8 {
					rs.key(k, t)
				}
			}
			const batch = 1 << 16
			b.ReportAllocs()
			from := n
			keys := evictBenchKeys(r, from, batch)
			i := 0
			for b.Loop() {
				if i == batch {
					b.StopTimer()
					from += batch
					keys = evictBenchKeys(r, from, batch)
					i = 0
					b.StartTimer()
				}
				t += int64(10 * time.Microsecond)
				if rs.key(keys[i], t) == nil {
					b.Fatal("state full")
				}
				i++
			}
			if len(rs.keys) != n {
				b.Fatalf("%d keys, want %d", len(rs.keys), n)
			}
		})
	}
}

// BenchmarkEvictSeenKey is an event of a key the state holds, and its
// last time updated as every kind of rule does: the cost the eviction's
// bookkeeping adds to every event.
func BenchmarkEvictSeenKey(b *testing.B) {
	const n = 100_000
	r, set := evictBenchRule(b, n)
	rs := newRuleState(r, set, 20)
	keys := evictBenchKeys(r, 0, n)
	t := engT0
	for _, k := range keys {
		rs.key(k, t)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		t += int64(10 * time.Microsecond)
		ks := rs.key(keys[i], t)
		ks.last = max(ks.last, t)
		if i++; i == n {
			i = 0
		}
	}
}

// BenchmarkEvictFill fills an empty rule state with 10,000 keys; B/key
// is the memory allocated per key (the key's window, its bookkeeping and
// its share of the map).
func BenchmarkEvictFill(b *testing.B) {
	const n = 10_000
	r, set := evictBenchRule(b, n)
	keys := evictBenchKeys(r, 0, n)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	for b.Loop() {
		rs := newRuleState(r, set, 20)
		for _, k := range keys {
			rs.key(k, engT0)
		}
	}
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N*n), "B/key")
}
