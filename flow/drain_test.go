package flow

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vigil-sensor/vigil/internal/config"
)

// TestMassExpiryAgreesWithModel ends tens of thousands of flows at once,
// more than one emit batch and more than a few chunks a shard, so that
// the drain merges shards across many batches and the shards compact
// under the survivors; then a second wave fills the table again. The
// table must write what the model writes, in the same order, and give
// the memory of the first wave back once it is not reused.
func TestMassExpiryAgreesWithModel(t *testing.T) {
	for _, shards := range []int{1, 4} {
		cfg := Config{IdleTimeout: config.Duration{D: 3 * time.Second}, ActiveTimeout: config.Duration{D: 20 * time.Second}, MaxFlows: 1 << 20, Shards: shards}
		tab, clk := newTable(t, cfg)
		m := newModel(cfg)
		f := tab.NewFeeder()
		var got []Record
		batches := 0
		emit := func(rs []Record) {
			if len(rs) > EmitBatch {
				t.Fatalf("emit got %d records, more than %d", len(rs), EmitBatch)
			}
			batches++
			for _, r := range rs {
				r.MaxPacketsW, r.MaxBytesW = 0, 0
				got = append(got, r)
			}
		}
		now := time.Duration(0)
		check := func(what string) {
			t.Helper()
			clk.Set(t0.Add(now))
			got = got[:0]
			tab.Expire(emit)
			want := m.expire(t0.Add(now).UnixNano())
			if !slices.Equal(want, got) {
				t.Fatalf("%d shards, %s: expired records differ (-model +table):\n%s", shards, what, cmp.Diff(want, got, cmpopts.EquateEmpty()))
			}
			if st := tab.Stats(); st.Active != len(m.flows) {
				t.Fatalf("%d shards, %s: %d active flows, model has %d", shards, what, st.Active, len(m.flows))
			}
		}
		// wave feeds keys [from, to) with dport, once each, then the
		// last survivors of them again; the clock moves 50 µs a sample.
		wave := func(from, to int, dport uint16, survivors int) {
			var batch []Sample
			add := func(n int) {
				now += 50 * time.Microsecond
				proto := []uint8{6, 17, 1}[n%3]
				batch = append(batch, pkt(now, byte(n), byte(n>>8), uint16(n), dport, proto, uint32(60+n%1400), 1))
				if len(batch) == 512 {
					f.Add(batch)
					for i := range batch {
						m.add(&batch[i])
					}
					m.trim()
					batch = batch[:0]
				}
			}
			for n := from; n < to; n++ {
				add(n)
			}
			for n := to - survivors; n < to; n++ {
				add(n)
			}
			f.Add(batch)
			for i := range batch {
				m.add(&batch[i])
			}
			m.trim()
		}
		const flows = 40_000
		wave(0, flows, 443, 0)
		check("wave 1")
		before := tab.Stats().Capacity
		now += 2 * time.Second
		wave(flows-500, flows, 443, 0) // 500 survivors, seen again later
		now += 1500 * time.Millisecond
		batches = 0
		check("mass expiry")
		if batches < flows/EmitBatch {
			t.Fatalf("%d shards: the mass expiry took %d emit batches", shards, batches)
		}
		// The shards keep their entries for a wave soon after, and give
		// them back once mostly empty for an idle timeout.
		for i := range 2 {
			if st := tab.Stats(); st.Capacity != before {
				t.Fatalf("%d shards: %d slots %d s after the mass expiry, %d before", shards, st.Capacity, 2*i, before)
			}
			now += 2 * time.Second
			wave(flows-500, flows, 443, 0)
			check("survivors")
		}
		if st := tab.Stats(); st.Active != 500 || st.Capacity != shards*chunkSize {
			t.Fatalf("%d shards: after the mass expiry %d active flows in %d slots (%d before): the shards did not compact", shards, st.Active, st.Capacity, before)
		}
		wave(0, flows, 80, 1000) // the survivors ended; a new wave
		now += 100 * time.Millisecond
		check("wave 2")
		wave(0, 2000, 443, 0)
		now += 4 * time.Second
		check("wave 2 idle")
		got = got[:0]
		tab.Flush(emit)
		if diff := cmp.Diff(m.flush(), got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("%d shards: flushed records differ (-model +table):\n%s", shards, diff)
		}
		if st := tab.Stats(); st.Active != 0 {
			t.Fatalf("%d shards: after the flush %d active flows", shards, st.Active)
		}
	}
}

// TestDrainOrdersFlowsFarFromTheClock flushes flows that ended hours
// before and after the table's clock, where the drain's sort keys clamp
// (refKey): the records must still come out in record order.
func TestDrainOrdersFlowsFarFromTheClock(t *testing.T) {
	cfg := Config{IdleTimeout: config.Duration{D: 100 * time.Hour}, ActiveTimeout: config.Duration{D: 200 * time.Hour}, MaxFlows: 1000, Shards: 4}
	tab, clk := newTable(t, cfg)
	f := tab.NewFeeder()
	var c collector
	var want []Record
	for i, at := range []time.Duration{-5 * time.Hour, -3 * time.Hour, -3 * time.Hour, -time.Hour, -time.Minute, 0, time.Minute, time.Hour, 3 * time.Hour, 3 * time.Hour, 5 * time.Hour} {
		for j := range 3 { // three flows at each time: ties on End
			s := pkt(10*time.Hour+at, byte(i), byte(j), uint16(1000+i), 53, 17, 100, 1)
			f.Add([]Sample{s})
		}
	}
	clk.Set(t0.Add(10 * time.Hour))
	tab.Flush(c.emit)
	got := c.take()
	want = slices.Clone(got)
	slices.SortFunc(want, compareRecords)
	if len(got) != 33 || !slices.Equal(got, want) {
		t.Fatalf("flushed %d records out of order:\n%s", len(got), cmp.Diff(want, got))
	}
}
