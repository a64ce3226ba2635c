// Package estimate checks Vigil's estimates against the truth: heavy-tailed
// captures (captures.HeavyTailed) are replayed through the pcap source at
// 1-in-N, with N changing mid-stream, into the flow table, and every
// reported interval is compared with the exact totals the generator wrote.
package estimate

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/sampler"
	"github.com/vigil-sensor/vigil/test/captures"
)

// writeCapture writes a heavy-tailed capture into a temporary directory.
func writeCapture(tb testing.TB, cfg captures.HeavyTailedConfig) (string, *captures.HeavyTailedStats) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), fmt.Sprintf("heavy-%d.pcap", cfg.Seed))
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	stats, err := captures.HeavyTailed(w, cfg)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tb.Fatalf("writing %s: %v", path, err)
	}
	return path, stats
}

// rateStep is a sampling rate in force from a point of capture time.
type rateStep struct {
	from time.Duration
	rate uint32
}

// schedule is a cycle of rates over capture time, as an adaptive
// controller facing changing traffic would set them.
type schedule struct {
	steps  []rateStep // from 0, increasing
	period time.Duration
	phase  time.Duration // where in the cycle the capture starts
}

// at returns the rate in force d after the capture's start.
func (s schedule) at(d time.Duration) uint32 {
	d = (d + s.phase) % s.period
	rate := s.steps[0].rate
	for _, st := range s.steps {
		if st.from > d {
			break
		}
		rate = st.rate
	}
	return rate
}

// attackSchedule steps through 1-in-10, 100, 1000, 30 and 3, five
// seconds each, then jumps a hundredfold (3 to 300) as a flood would make
// a controller do, and drops back to 10.
func attackSchedule(phase time.Duration) schedule {
	return schedule{
		steps: []rateStep{
			{0, 10}, {5 * time.Second, 100}, {10 * time.Second, 1000}, {15 * time.Second, 30},
			{20 * time.Second, 3}, {25 * time.Second, 300}, {28 * time.Second, 10},
		},
		period: 30 * time.Second,
		phase:  phase,
	}
}

// replayResult is what one replay produced.
type replayResult struct {
	records [][]flow.Record   // per table configuration
	samples uint64            // samples the source produced
	packets uint64            // packets the source counted
	rates   map[uint32]uint64 // samples by the rate they were taken at
}

// replay reads the capture at path through a pcap source sampling with
// seed into one flow table per configuration (all fed the same samples),
// as the daemon's replay does: each table's clock follows capture time
// and the table expires flows every second of it; what is open at the
// end is flushed. With sched, the source's rate follows sched in capture time
// from start; the source hands over each sample as it is taken, so a new
// rate takes effect from the first sample after its step (as a live
// controller reacts to the samples it sees). Without sched the rate is
// fixed.
func replay(path string, seed uint64, rate uint32, start time.Time, sched *schedule, cfgs ...flow.Config) (replayResult, error) {
	pcfg := sampler.PcapConfig{SampleRate: rate, Seed: seed}
	if sched != nil {
		pcfg.SampleRate = sched.at(0)
		pcfg.BatchSize = 1
	}
	src, err := sampler.NewPcapSource(pcfg)
	if err != nil {
		return replayResult{}, err
	}
	type meter struct {
		clock  *flow.ManualClock
		table  *flow.Table
		feeder *flow.Feeder
	}
	res := replayResult{records: make([][]flow.Record, len(cfgs)), rates: make(map[uint32]uint64)}
	meters := make([]meter, len(cfgs))
	for i, cfg := range cfgs {
		clock := flow.NewManualClock(start)
		table, err := flow.NewTable(cfg, clock)
		if err != nil {
			return replayResult{}, err
		}
		meters[i] = meter{clock, table, table.NewFeeder()}
	}
	collect := func(i int) func([]flow.Record) {
		return func(recs []flow.Record) { res.records[i] = append(res.records[i], recs...) }
	}
	sec := start.Unix()
	err = src.ReadFileFunc(context.Background(), path, func(batch []flow.Sample) error {
		for i := range batch {
			res.rates[batch[i].SamplingRate]++
		}
		// The tables see at most a second of capture time at once, and
		// expire flows as each second passes.
		for len(batch) > 0 {
			n := 1
			for n < len(batch) && batch[n].Timestamp/1e9 == batch[0].Timestamp/1e9 {
				n++
			}
			latest := batch[n-1].Timestamp
			for i, m := range meters {
				m.feeder.Add(batch[:n])
				m.clock.SetNano(latest)
				if latest/1e9 != sec {
					m.table.Expire(collect(i))
				}
			}
			sec = latest / 1e9
			if sched != nil {
				src.SetSampleRate(sched.at(time.Duration(latest - start.UnixNano())))
			}
			batch = batch[n:]
		}
		return nil
	})
	if err != nil {
		return replayResult{}, err
	}
	for i, m := range meters {
		m.table.Flush(collect(i))
	}
	st, ifs := src.Stats()
	res.samples, res.packets = st.Samples, ifs.Packets
	return res, nil
}

// tally is the sum of the records of one flow key or one host.
type tally struct {
	packets, bytes flow.Estimate
	samples        uint64
	records        int
}

func (t *tally) add(r *flow.Record) {
	t.packets.Add(r.PacketsEstimate())
	t.bytes.Add(r.BytesEstimate())
	t.samples += r.Samples
	t.records++
}

// byKey sums records per unidirectional flow key. A flow no sample
// caught has no record and so no tally.
func byKey(recs []flow.Record) map[captures.Key]*tally {
	m := make(map[captures.Key]*tally)
	for i := range recs {
		r := &recs[i]
		k := captures.Key{Src: r.Key.Src(), Dst: r.Key.Dst(), SrcPort: r.Key.SrcPort, DstPort: r.Key.DstPort, Proto: r.Key.Proto}
		t := m[k]
		if t == nil {
			t = &tally{}
			m[k] = t
		}
		t.add(r)
	}
	return m
}

// byDst sums records per destination address.
func byDst(recs []flow.Record) map[netip.Addr]*tally {
	m := make(map[netip.Addr]*tally)
	for i := range recs {
		r := &recs[i]
		d := r.Key.Dst()
		t := m[d]
		if t == nil {
			t = &tally{}
			m[d] = t
		}
		t.add(r)
	}
	return m
}

// holds says whether the interval holds the truth.
func holds(iv flow.Interval, truth uint64) bool { return iv.Lo <= truth && truth <= iv.Hi }
