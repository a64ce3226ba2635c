package estimate

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"testing"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/test/captures"
)

// figure is one estimated figure compared with the truth.
type figure struct {
	relErr    float64 // |estimate − truth| / truth; 1 when nothing was reported
	held      bool    // the reported interval holds the truth
	halfWidth float64 // the reported relative half-width (Estimate.RelativeError)
	reported  bool    // some record carried it
}

// figures summarises many figures.
type figures []figure

func (fs *figures) add(e *flow.Estimate, truth uint64) {
	if e == nil {
		*fs = append(*fs, figure{relErr: 1})
		return
	}
	*fs = append(*fs, figure{
		relErr:    math.Abs(e.Value-float64(truth)) / float64(truth),
		held:      holds(e.Interval(), truth),
		halfWidth: e.RelativeError(),
		reported:  true,
	})
}

// report writes the median and 90th percentile relative error over all
// figures, and over the reported ones the share whose interval held the
// truth and the mean reported half-width; and the share not reported.
func (fs figures) report(b *testing.B, name string) {
	errs := make([]float64, len(fs))
	var held, reported int
	var width float64
	for i, f := range fs {
		errs[i] = f.relErr
		if f.reported {
			reported++
			width += f.halfWidth
			if f.held {
				held++
			}
		}
	}
	slices.Sort(errs)
	quantile := func(q float64) float64 { return errs[min(len(errs)-1, int(q*float64(len(errs))))] }
	b.ReportMetric(quantile(0.5), name+"-p50-err")
	b.ReportMetric(quantile(0.9), name+"-p90-err")
	b.ReportMetric(float64(held)/float64(max(reported, 1)), name+"-held")
	b.ReportMetric(width/float64(max(reported, 1)), name+"-halfwidth")
	b.ReportMetric(1-float64(reported)/float64(len(fs)), name+"-unreported")
}

// BenchmarkAccuracy replays one heavy-tailed capture (20,000 flows, about
// a million packets over 60 s) at a fixed 1-in-N, with 16 sampling seeds
// per iteration, into a flow table with the default timeouts, records of
// a key summed. It reports, pooled over the seeds:
//
//   - flow-bytes: the bytes of the 100 flows with the most bytes;
//   - dst-pps: the packet rates (packets per second over the capture) of
//     the destinations with at least 1000 packets. The capture's length
//     is known, so a rate's relative error and interval are those of the
//     destination's packet count.
//
// For each: the median and 90th percentile relative error (a figure no
// record carried counts as an error of 1), the share of reported
// figures whose 95% interval held the truth, their mean relative
// half-width, and the share not reported at all.
func BenchmarkAccuracy(b *testing.B) {
	path, stats := writeCapture(b, captures.HeavyTailedConfig{Seed: 1, Flows: 20_000})
	keys := make([]captures.Key, 0, len(stats.Keys))
	for k := range stats.Keys {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y captures.Key) int {
		return cmp.Or(cmp.Compare(stats.Keys[y].Bytes, stats.Keys[x].Bytes), cmp.Compare(x.String(), y.String()))
	})
	top := keys[:100]
	var busy []netip.Addr
	for d, c := range stats.Dsts {
		if c.Packets >= 1000 {
			busy = append(busy, d)
		}
	}
	b.Logf("%d packets, %d flows; top 100 flows: %d to %d packets; %d destinations of %d with at least 1000 packets",
		stats.Packets, stats.Flows, stats.Keys[top[0]].Packets, stats.Keys[top[99]].Packets, len(busy), len(stats.Dsts))
	const seeds = 16
	for _, rate := range []uint32{10, 100, 1000} {
		b.Run(fmt.Sprintf("1-in-%d", rate), func(b *testing.B) {
			var flowBytes, dstRates figures
			for b.Loop() {
				flowBytes, dstRates = flowBytes[:0], dstRates[:0]
				for seed := range uint64(seeds) {
					res, err := replay(path, seed, rate, stats.Start, nil, flow.DefaultConfig())
					if err != nil {
						b.Fatal(err)
					}
					perKey, perDst := byKey(res.records[0]), byDst(res.records[0])
					for _, k := range top {
						var e *flow.Estimate
						if t := perKey[k]; t != nil {
							e = &t.bytes
						}
						flowBytes.add(e, stats.Keys[k].Bytes)
					}
					for _, d := range busy {
						var e *flow.Estimate
						if t := perDst[d]; t != nil {
							e = &t.packets
						}
						dstRates.add(e, stats.Dsts[d].Packets)
					}
				}
			}
			flowBytes.report(b, "flow-bytes")
			dstRates.report(b, "dst-pps")
		})
	}
}
