package flow

import (
	"github.com/vigil-sensor/vigil/internal/config"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// model is a deliberately simple flow table: a map, and slices kept in
// LRU and start order. The real table must agree with it on every
// record it writes.
type model struct {
	cfg     Config
	flows   map[Key]*Record
	lru     []Key // oldest first
	fifo    []Key // oldest start first
	pending []Record
}

func newModel(cfg Config) *model { return &model{cfg: cfg, flows: map[Key]*Record{}} }

func without(ks []Key, k Key) []Key {
	if len(ks) > 0 && ks[0] == k { // the oldest: expiry's case, kept cheap for mass expiries
		return ks[1:]
	}
	i := slices.Index(ks, k)
	return slices.Delete(ks, i, i+1)
}

func (m *model) end(k Key, r EndReason) {
	rec := m.flows[k]
	rec.EndReason = r
	// The widening for unseen packets depends on each shard's rate
	// history; TestUnseenPacketsWidenTheInterval checks it.
	rec.MaxPacketsW, rec.MaxBytesW = 0, 0
	m.pending = append(m.pending, *rec)
	delete(m.flows, k)
	m.lru = without(m.lru, k)
	m.fifo = without(m.fifo, k)
}

func (m *model) add(s *Sample) {
	if s.IPVersion == 0 {
		return
	}
	k := KeyOf(s)
	if rec, ok := m.flows[k]; ok {
		switch {
		case s.Timestamp-rec.Start >= int64(m.cfg.ActiveTimeout.D):
			m.end(k, EndActive)
		case s.Timestamp-rec.End >= int64(m.cfg.IdleTimeout.D):
			m.end(k, EndIdle)
		}
	}
	if rec, ok := m.flows[k]; ok {
		rec.add(s)
		m.lru = append(without(m.lru, k), k)
	} else {
		rec := &Record{}
		rec.start(&k, s)
		m.flows[k] = rec
		m.lru = append(m.lru, k)
		m.fifo = append(m.fifo, k)
	}
	if s.Proto == 6 && s.TCPFlags&(TCPFin|TCPRst) != 0 {
		m.end(k, EndTCP)
	}
}

// trim evicts the least recently seen flows past MaxFlows, as the
// table does after each batch.
func (m *model) trim() {
	for len(m.flows) > m.cfg.MaxFlows {
		m.end(m.lru[0], EndEvicted)
	}
}

func (m *model) expire(now int64) []Record {
	for len(m.lru) > 0 && now-m.flows[m.lru[0]].End >= int64(m.cfg.IdleTimeout.D) {
		m.end(m.lru[0], EndIdle)
	}
	for len(m.fifo) > 0 && now-m.flows[m.fifo[0]].Start >= int64(m.cfg.ActiveTimeout.D) {
		m.end(m.fifo[0], EndActive)
	}
	return m.take()
}

func (m *model) flush() []Record {
	for len(m.fifo) > 0 {
		m.end(m.fifo[0], EndShutdown)
	}
	return m.take()
}

func (m *model) take() []Record {
	out := m.pending
	m.pending = nil
	slices.SortFunc(out, compareRecords)
	return out
}

// TestTableAgreesWithModel drives the table and the model with the same
// random stream of samples, clock steps and expiries. Few keys and a
// small bound make lookups, evictions, slot reuse and index deletion
// collide often.
func TestTableAgreesWithModel(t *testing.T) {
	for _, tc := range []struct {
		name     string
		shards   int
		maxFlows int
		keys     int
	}{
		{"one shard, evicting", 1, 50, 200},
		{"one shard, roomy", 1, 100000, 1000},
		{"sixteen shards, roomy", 16, 100000, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range uint64(5) {
				cfg := Config{IdleTimeout: config.Duration{D: 3 * time.Second}, ActiveTimeout: config.Duration{D: 10 * time.Second}, MaxFlows: tc.maxFlows, Shards: tc.shards}
				tab, clk := newTable(t, cfg)
				m := newModel(cfg)
				f := tab.NewFeeder()
				rng := rand.New(rand.NewPCG(seed, 7))
				now := time.Duration(0)
				var got []Record
				emit := func(rs []Record) {
					for _, r := range rs {
						r.MaxPacketsW, r.MaxBytesW = 0, 0
						got = append(got, r)
					}
				}
				for step := range 400 {
					batch := make([]Sample, rng.IntN(64))
					for i := range batch {
						now += time.Duration(rng.IntN(20)) * time.Millisecond
						n := rng.IntN(tc.keys)
						proto := []uint8{6, 17, 1}[n%3]
						s := pkt(now, byte(n), byte(n>>8), uint16(n), 443, proto, uint32(60+rng.IntN(1400)), uint32(1+rng.IntN(3)))
						if proto == 6 && rng.IntN(50) == 0 {
							s.TCPFlags = TCPFin
						}
						if rng.IntN(100) == 0 {
							s.IPVersion = 0 // not IP
						}
						s.TTL = uint8(rng.IntN(255))
						batch[i] = s
					}
					f.Add(batch)
					for i := range batch {
						m.add(&batch[i])
					}
					m.trim()
					clk.Set(t0.Add(now))
					got = got[:0]
					tab.Expire(emit)
					want := m.expire(t0.Add(now).UnixNano())
					if len(want)+len(got) == 0 || slices.Equal(want, got) {
						// cmp.Diff is slow; it only explains a mismatch.
					} else if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
						t.Fatalf("seed %d step %d: expired records differ (-model +table):\n%s", seed, step, diff)
					}
					if st := tab.Stats(); st.Active != len(m.flows) {
						t.Fatalf("seed %d step %d: %d active flows, model has %d", seed, step, st.Active, len(m.flows))
					}
				}
				got = got[:0]
				tab.Flush(emit)
				if diff := cmp.Diff(m.flush(), got, cmpopts.EquateEmpty()); diff != "" {
					t.Fatalf("seed %d: flushed records differ (-model +table):\n%s", seed, diff)
				}
			}
		})
	}
}
