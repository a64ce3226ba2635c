package detect

import (
	"fmt"
	"github.com/vigil-sensor/vigil/internal/config"
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/flow"
)

// ivRule alerts on a SYN flood to one address: pps packets a second
// over a 1s window.
const ivRule = `
rules:
  - name: flood
    description: test flood
    severity: high
    filter: tcp && syn && !ack
    group_by: [dst_addr]
    window: 1s
    slots: 10
    update_every: 1s
    quiet: 2s
    measures:
      pps: {rate: packets}
    thresholds:
      pps: %d
`

// ivAttack is a synthetic SYN flood of known size, sampled packet by
// packet as the kernel does.
type ivAttack struct {
	name     string
	packets  int                // the true total
	duration time.Duration      // spread evenly over
	minLen   int                // wire lengths drawn uniformly in minLen..maxLen
	maxLen   int                //
	rate     func(i int) uint32 // the 1-in-N rate in force for packet i
	pps      int                // the rule's threshold
	batch    time.Duration      // events are fed in batches this long
}

// sample draws the attack with seed: the events of the sampled packets
// and the true byte counts, cumulative: cum[i] is the bytes of packets
// 0..i-1, so cum[at.packets] is the total.
func (at *ivAttack) sample(seed uint64) (evs []Event, cum []uint64) {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	src, dst := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("203.0.113.9")
	gap := at.gap()
	cum = make([]uint64, at.packets+1)
	for i := range at.packets {
		n := at.rate(i)
		l := uint64(at.minLen + r.IntN(at.maxLen-at.minLen+1))
		cum[i+1] = cum[i] + l
		if n > 1 && r.Uint32N(n) != 0 {
			continue
		}
		evs = append(evs, Event{
			Source: SourceSamples, Time: engT0 + int64(i)*gap, SrcAddr: src, DstAddr: dst,
			SrcPort: 40000, DstPort: 80, Proto: 6, TCPFlags: flow.TCPSyn, IPVersion: 4,
			Packets: uint64(n), Bytes: l * uint64(n), Samples: 1, Rate: n,
		})
	}
	return evs, cum
}

// gap is the time between the attack's packets: packet i is sent at
// engT0 + i·gap.
func (at *ivAttack) gap() int64 { return int64(at.duration) / int64(at.packets) }

// feed feeds the attack's events to a fresh engine in batches and
// returns every report.
func (at *ivAttack) feed(set *RuleSet, evs []Event) *engRecorder {
	rec := &engRecorder{}
	e := NewEngine(set, EngineConfig{}, rec.emit)
	step := int64(at.batch)
	for lo := 0; lo < len(evs); {
		hi := lo
		for hi < len(evs) && evs[hi].Time < evs[lo].Time+step {
			hi++
		}
		e.Events(SourceSamples, evs[lo:hi])
		lo = hi
	}
	e.Close(engT0 + int64(at.duration) + int64(time.Second))
	return rec
}

// run feeds the attack's events to a fresh engine in batches and returns
// the alert's end report.
func (at *ivAttack) run(t *testing.T, set *RuleSet, evs []Event) (flow.Alert, bool) {
	t.Helper()
	ends := at.feed(set, evs).of("flood", flow.AlertEnd)
	if len(ends) != 1 {
		return flow.Alert{}, false
	}
	return ends[0], true
}

// TestAlertIntervalCoverage samples attacks of known size at 1-in-100
// with many seeds: the alert's 95% intervals must hold the true packet
// and byte totals at least 95% of the time, and be no wider than twice
// the normal interval of the estimator's own standard deviation.
//
// An exact 95% interval misses in 5% of draws, so the misses over the
// seeds are Binomial(alerts, 0.05): more than its 99.9th percentile
// rejects coverage of 95% (an interval that holds the truth 93% of the
// time fails with 1,000 seeds).
func TestAlertIntervalCoverage(t *testing.T) {
	const seeds = 1000
	at100 := func(int) uint32 { return 100 }
	attacks := []ivAttack{
		// 50k pps for a second: the alert starts after 100 ms, and
		// every sampled packet after that is accounted one by one.
		{name: "flood", packets: 50_000, duration: time.Second, minLen: 60, maxLen: 1514, rate: at100,
			pps: 5000, batch: 10 * time.Millisecond},
		// 3,000 packets over 1.5s: about 30 samples, a third of them
		// from the window the alert starts with.
		{name: "small", packets: 3000, duration: 1500 * time.Millisecond, minLen: 60, maxLen: 60, rate: at100,
			pps: 1000, batch: 10 * time.Millisecond},
		// The sampler drops from 1-in-100 to 1-in-10 in the window the
		// alert starts with: a few heavy samples, then many light ones.
		{name: "rate drop in the first window", packets: 50_000, duration: time.Second, minLen: 60, maxLen: 1514,
			rate: func(i int) uint32 {
				if i < 2500 {
					return 100
				}
				return 10
			}, pps: 5000, batch: 10 * time.Millisecond},
		// The sampler moves from 1-in-10 to 1-in-100 half way.
		{name: "rate change", packets: 50_000, duration: time.Second, minLen: 60, maxLen: 1514,
			rate: func(i int) uint32 {
				if i < 25_000 {
					return 10
				}
				return 100
			}, pps: 5000, batch: 10 * time.Millisecond},
	}
	for _, at := range attacks {
		t.Run(at.name, func(t *testing.T) {
			set := engLoad(t, fmt.Sprintf(ivRule, at.pps), Options{})
			var inP, inB, alerts int
			var widthP, widthB, sdP, sdB float64
			for seed := range uint64(seeds) {
				evs, cum := at.sample(seed + 1)
				packets, bytes := uint64(at.packets), cum[at.packets]
				a, ok := at.run(t, set, evs)
				if !ok {
					continue
				}
				alerts++
				if a.PacketsCI.Lo <= packets && packets <= a.PacketsCI.Hi {
					inP++
				}
				if a.BytesCI.Lo <= bytes && bytes <= a.BytesCI.Hi {
					inB++
				}
				if a.PacketsCI.Lo > a.Packets || a.Packets > a.PacketsCI.Hi || a.BytesCI.Lo > a.Bytes || a.Bytes > a.BytesCI.Hi {
					t.Errorf("seed %d: estimates outside their intervals: packets %d %v, bytes %d %v",
						seed+1, a.Packets, a.PacketsCI, a.Bytes, a.BytesCI)
				}
				widthP += float64(a.PacketsCI.Hi - a.PacketsCI.Lo)
				widthB += float64(a.BytesCI.Hi - a.BytesCI.Lo)
				p, b := ivStdDev(evs)
				sdP += p
				sdB += b
			}
			if alerts < seeds*9/10 {
				t.Fatalf("%d alerts out of %d attacks", alerts, seeds)
			}
			t.Logf("%d alerts: packets in %.1f%%, bytes in %.1f%%; mean width packets %.0f (normal %.0f), bytes %.0f (normal %.0f)",
				alerts, 100*float64(inP)/float64(alerts), 100*float64(inB)/float64(alerts),
				widthP/float64(alerts), 2*1.96*sdP/float64(alerts), widthB/float64(alerts), 2*1.96*sdB/float64(alerts))
			limit := binomialQuantile(alerts, 1-flow.Level, 0.999)
			if miss := alerts - inP; miss > limit {
				t.Errorf("packets: the interval missed the truth in %d of %d alerts; at 95%% coverage at most %d would", miss, alerts, limit)
			}
			if miss := alerts - inB; miss > limit {
				t.Errorf("bytes: the interval missed the truth in %d of %d alerts; at 95%% coverage at most %d would", miss, alerts, limit)
			}
			if widthP > 2*2*1.96*sdP {
				t.Errorf("packets: mean width %.0f, over twice the normal interval's %.0f", widthP/float64(alerts), 2*1.96*sdP/float64(alerts))
			}
			if widthB > 2*2*1.96*sdB {
				t.Errorf("bytes: mean width %.0f, over twice the normal interval's %.0f", widthB/float64(alerts), 2*1.96*sdB/float64(alerts))
			}
		})
	}
}

// ivStdDev is the estimator's standard deviation as the samples
// estimate it, summed over every sample however the engine saw it.
func ivStdDev(evs []Event) (packets, bytes float64) {
	var p, b flow.Estimate
	for i := range evs {
		n := evs[i].Rate
		p.Observe(n, float64(evs[i].Packets)/float64(n))
		b.Observe(n, float64(evs[i].Bytes)/float64(n))
	}
	return math.Sqrt(p.Var), math.Sqrt(b.Var)
}

// binomialQuantile is the smallest k with P(X <= k) >= q for X ~
// Binomial(n, p).
func binomialQuantile(n int, p, q float64) int {
	pmf := math.Pow(1-p, float64(n))
	cdf := pmf
	k := 0
	for cdf < q && k < n {
		pmf *= float64(n-k) / float64(k+1) * p / (1 - p)
		k++
		cdf += pmf
	}
	return k
}

// ivFlowRule alerts on traffic to one address from flow records.
const ivFlowRule = `
rules:
  - name: flood
    description: test flood from flow records
    severity: high
    source: flows
    filter: tcp
    group_by: [dst_addr]
    window: 10s
    slots: 10
    quiet: 2s
    measures:
      pps: {rate: packets}
    thresholds:
      pps: 1000
`

// TestAlertIntervalCoverageFlows samples many flows of known size to one
// address at 1-in-100 through the flow table, and feeds the records to a
// rule reading flows. Each flow carries up to 400 packets, half of them
// 64 bytes long and half 1,514: the byte intervals hold only with the
// records' own variances (with an even spread assumed they held 90.5%).
func TestAlertIntervalCoverageFlows(t *testing.T) {
	const seeds = 1000
	set := engLoad(t, ivFlowRule, Options{})
	dst := netip.MustParseAddr("203.0.113.9")
	var in [2]int
	alerts := 0
	for seed := range uint64(seeds) {
		r := rand.New(rand.NewPCG(seed+1, 0xf10))
		clock := flow.NewManualClock(time.Unix(0, engT0))
		tab, err := flow.NewTable(flow.Config{IdleTimeout: config.Duration{D: time.Minute}, ActiveTimeout: config.Duration{D: time.Minute}, MaxFlows: 1024, Shards: 1}, clock)
		if err != nil {
			t.Fatal(err)
		}
		feed := tab.NewFeeder()
		var packets, bytes uint64
		var batch []flow.Sample
		for f := range 200 {
			src := netip.AddrFrom4([4]byte{198, 51, byte(f >> 8), byte(f)})
			n := 1 + r.IntN(400)
			packets += uint64(n)
			for i := range n {
				l := uint32(64)
				if r.IntN(2) == 0 {
					l = 1514
				}
				bytes += uint64(l)
				if r.IntN(100) != 0 {
					continue
				}
				batch = append(batch, flow.Sample{
					Timestamp: engT0 + int64(f)*int64(time.Millisecond) + int64(i)*int64(time.Microsecond),
					SrcAddr:   src, DstAddr: dst, SrcPort: 40000, DstPort: 80, Proto: 6, IPVersion: 4,
					TCPFlags: flow.TCPAck, WireLen: l, SamplingRate: 100, Segments: 1,
				})
			}
		}
		feed.Add(batch)
		rec := &engRecorder{}
		e := NewEngine(set, EngineConfig{}, rec.emit)
		tab.Flush(e.Records)
		e.Close(engT0 + int64(10*time.Second))
		ends := rec.of("flood", flow.AlertEnd)
		if len(ends) != 1 {
			continue
		}
		a := ends[0]
		alerts++
		if a.PacketsCI.Lo <= packets && packets <= a.PacketsCI.Hi {
			in[0]++
		}
		if a.BytesCI.Lo <= bytes && bytes <= a.BytesCI.Hi {
			in[1]++
		}
	}
	if alerts < seeds*9/10 {
		t.Fatalf("%d alerts out of %d draws", alerts, seeds)
	}
	t.Logf("%d alerts: packets in %.1f%%, bytes in %.1f%%", alerts, 100*float64(in[0])/float64(alerts), 100*float64(in[1])/float64(alerts))
	limit := binomialQuantile(alerts, 1-flow.Level, 0.999)
	for i, what := range []string{"packets", "bytes"} {
		if miss := alerts - in[i]; miss > limit {
			t.Errorf("%s: the interval missed the truth in %d of %d alerts; at 95%% coverage at most %d would", what, miss, alerts, limit)
		}
	}
}
