package flow

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// pkt builds a TCP/UDP sample from 10.0.0.src:sport to 10.0.1.dst:dport.
func pkt(at time.Duration, src, dst byte, sport, dport uint16, proto uint8, wireLen, rate uint32) Sample {
	return Sample{
		Timestamp:    t0.Add(at).UnixNano(),
		SrcAddr:      netip.AddrFrom4([4]byte{10, 0, 0, src}),
		DstAddr:      netip.AddrFrom4([4]byte{10, 0, 1, dst}),
		SrcPort:      sport,
		DstPort:      dport,
		Proto:        proto,
		IPVersion:    4,
		EtherType:    0x0800,
		WireLen:      wireLen,
		SamplingRate: rate,
		Segments:     1,
		TTL:          64,
		Ifindex:      2,
	}
}

type collector struct {
	mu   sync.Mutex
	recs []Record
}

func (c *collector) emit(rs []Record) {
	c.mu.Lock()
	c.recs = append(c.recs, rs...)
	c.mu.Unlock()
}

func (c *collector) take() []Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.recs
	c.recs = nil
	return r
}

func newTable(t testing.TB, cfg Config) (*Table, *ManualClock) {
	t.Helper()
	clk := NewManualClock(t0)
	tab, err := NewTable(cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	return tab, clk
}

func TestEstimatesWeighEachSampleByItsRate(t *testing.T) {
	tab, _ := newTable(t, DefaultConfig())
	f := tab.NewFeeder()
	// The rate changes twice in the middle of the flow: 1, then 10, then
	// 100. Each sample must count for the rate it was taken at.
	var batch []Sample
	for i, rate := range []uint32{1, 1, 1, 10, 10, 100} {
		batch = append(batch, pkt(time.Duration(i)*time.Second, 1, 1, 1000, 53, 17, 100, rate))
	}
	gso := pkt(6*time.Second, 1, 1, 1000, 53, 17, 3000, 10)
	gso.Segments = 3 // a GSO frame standing for 3 wire packets
	batch = append(batch, gso)
	f.Add(batch)

	var c collector
	tab.Flush(c.emit)
	got := c.take()
	if len(got) != 1 {
		t.Fatalf("got %d records, want 1: %+v", len(got), got)
	}
	r := got[0]
	want := Record{
		Key:            KeyOf(&batch[0]),
		Start:          t0.UnixNano(),
		End:            t0.Add(6 * time.Second).UnixNano(),
		SampledPackets: 6 + 3,
		SampledBytes:   6*100 + 3000,
		Packets:        1 + 1 + 1 + 10 + 10 + 100 + 3*10,
		Bytes:          100*(1+1+1+10+10+100) + 3000*10,
		Samples:        7,
		RateSum:        1 + 1 + 1 + 10 + 10 + 100 + 10,
		PacketsVar:     10*9*2 + 100*99 + 10*9*3*3,
		BytesVar:       10*9*100*100*2 + 100*99*100*100 + 10*9*3000*3000,
		MaxPacketsW:    99,       // the 1-in-100 sample
		MaxBytesW:      99 * 400, // one unseen packet of the mean size at 1-in-100
		MinTTL:         64,
		MaxTTL:         64,
		EndReason:      EndShutdown,
	}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	if got, want := r.SamplingRate(), uint32((133+3)/7); got != want {
		t.Errorf("effective rate %d, want %d", got, want)
	}
}

func TestIdleTimeout(t *testing.T) {
	cfg := DefaultConfig()
	cfg.IdleTimeout.D = 15 * time.Second
	tab, clk := newTable(t, cfg)
	f := tab.NewFeeder()
	f.Add([]Sample{pkt(0, 1, 1, 1000, 80, 6, 60, 1), pkt(2*time.Second, 1, 1, 1000, 80, 6, 60, 1)})
	f.Add([]Sample{pkt(5*time.Second, 2, 2, 2000, 80, 6, 60, 1)})

	var c collector
	clk.Set(t0.Add(17*time.Second - 1))
	tab.Expire(c.emit)
	if got := c.take(); len(got) != 0 {
		t.Fatalf("expired %d flows 1 ns before the idle timeout", len(got))
	}
	clk.Set(t0.Add(17 * time.Second))
	tab.Expire(c.emit)
	got := c.take()
	if len(got) != 1 || got[0].Key.Src() != netip.MustParseAddr("10.0.0.1") || got[0].EndReason != EndIdle {
		t.Fatalf("at 17s got %+v, want flow 1 idle", got)
	}
	if got[0].Packets != 2 {
		t.Errorf("packets %d, want 2", got[0].Packets)
	}
	clk.Set(t0.Add(20 * time.Second))
	tab.Expire(c.emit)
	if got := c.take(); len(got) != 1 || got[0].Key.Src() != netip.MustParseAddr("10.0.0.2") {
		t.Fatalf("at 20s got %+v, want flow 2", got)
	}
	st := tab.Stats()
	if st.Active != 0 || st.ExpiredBy(EndIdle) != 2 || st.Created != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestActiveTimeoutSlicesLongFlows(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ActiveTimeout.D = 60 * time.Second
	tab, clk := newTable(t, cfg)
	f := tab.NewFeeder()
	var c collector
	// One packet a second for 150 s, expiring every second as the
	// daemon does.
	for i := range 150 {
		at := time.Duration(i) * time.Second
		clk.Set(t0.Add(at))
		f.Add([]Sample{pkt(at, 1, 1, 1000, 443, 6, 1500, 1)})
		tab.Expire(c.emit)
	}
	tab.Flush(c.emit)
	got := c.take()
	var reasons []EndReason
	var total uint64
	for _, r := range got {
		reasons = append(reasons, r.EndReason)
		total += r.Packets
		if d := r.End - r.Start; d >= int64(60*time.Second) {
			t.Errorf("slice lasts %v, longer than the active timeout", time.Duration(d))
		}
	}
	if diff := cmp.Diff([]EndReason{EndActive, EndActive, EndShutdown}, reasons); diff != "" {
		t.Errorf("end reasons (-want +got):\n%s", diff)
	}
	if total != 150 {
		t.Errorf("slices sum to %d packets, want 150", total)
	}
	if got[0].Packets != 60 || got[1].Packets != 60 || got[2].Packets != 30 {
		t.Errorf("slice sizes %d %d %d, want 60 60 30", got[0].Packets, got[1].Packets, got[2].Packets)
	}
}

func TestTCPEndsOnFinAndRst(t *testing.T) {
	tab, _ := newTable(t, DefaultConfig())
	f := tab.NewFeeder()
	syn := pkt(0, 1, 1, 1000, 22, 6, 74, 1)
	syn.TCPFlags = TCPSyn
	data := pkt(time.Second, 1, 1, 1000, 22, 6, 1000, 1)
	data.TCPFlags = TCPAck | TCPPsh
	fin := pkt(2*time.Second, 1, 1, 1000, 22, 6, 66, 1)
	fin.TCPFlags = TCPFin | TCPAck
	ack := pkt(3*time.Second, 1, 1, 1000, 22, 6, 66, 1)
	ack.TCPFlags = TCPAck
	rst := pkt(time.Second, 2, 2, 1001, 22, 6, 60, 1)
	rst.TCPFlags = TCPRst // a flow whose only packet is a reset
	udp := pkt(0, 3, 3, 1002, 22, 17, 60, 1)
	udp.TCPFlags = TCPFin // not TCP: flags mean nothing
	f.Add([]Sample{syn, data, fin, ack, rst, udp})

	var c collector
	tab.Expire(c.emit) // clock at t0: no timeout is due
	got := c.take()
	if len(got) != 2 {
		t.Fatalf("got %d records, want the FIN flow and the RST flow: %+v", len(got), got)
	}
	for _, r := range got {
		if r.EndReason != EndTCP {
			t.Errorf("%v: end reason %v, want tcp_end", r.Key.Src(), r.EndReason)
		}
	}
	if fl := got[1]; fl.Packets != 3 || fl.TCPFlags != TCPSyn|TCPAck|TCPPsh|TCPFin {
		t.Errorf("FIN flow: %d packets flags %#x, want 3 packets SYN|ACK|PSH|FIN", fl.Packets, fl.TCPFlags)
	}
	// The ACK after the FIN starts a new record of the same key.
	tab.Flush(c.emit)
	rest := c.take()
	if len(rest) != 2 || rest[0].Key != KeyOf(&udp) || rest[1].Key != KeyOf(&ack) || rest[1].Packets != 1 {
		t.Errorf("after flush got %+v, want the UDP flow and the lone ACK", rest)
	}
}

func TestMaxFlowsEvictsLeastRecentlySeen(t *testing.T) {
	for _, shards := range []int{1, 16} {
		cfg := DefaultConfig()
		cfg.MaxFlows = 3
		cfg.Shards = shards
		tab, _ := newTable(t, cfg)
		f := tab.NewFeeder()
		// One sample per batch, as a slow trickle of new flows arrives.
		for i, s := range []Sample{
			pkt(0, 1, 1, 1, 1, 17, 100, 1),
			pkt(1, 2, 2, 1, 1, 17, 100, 1),
			pkt(2, 3, 3, 1, 1, 17, 100, 1),
			pkt(3, 1, 1, 1, 1, 17, 100, 1), // flow 1 is seen again: flow 2 is now the oldest
			pkt(4, 4, 4, 1, 1, 17, 100, 1), // evicts flow 2
			pkt(5, 5, 5, 1, 1, 17, 100, 1), // evicts flow 3
			pkt(6, 6, 6, 1, 1, 17, 100, 1), // evicts flow 1
		} {
			f.Add([]Sample{s})
			if st := tab.Stats(); st.Active > 3 {
				t.Fatalf("%d shards: %d active flows after sample %d, bound is 3", shards, st.Active, i)
			}
		}
		// A whole batch of new flows: the bound holds when Add returns.
		var batch []Sample
		for i := range 40 {
			batch = append(batch, pkt(time.Duration(10+i), byte(10+i), 1, 1, 1, 17, 100, 1))
		}
		f.Add(batch)
		var c collector
		tab.Expire(c.emit)
		got := c.take()
		var srcs []string
		for _, r := range got {
			if r.EndReason != EndEvicted {
				t.Errorf("%d shards: %v: end reason %v, want evicted", shards, r.Key.Src(), r.EndReason)
			}
			srcs = append(srcs, r.Key.Src().String())
		}
		want := []string{"10.0.0.2", "10.0.0.3", "10.0.0.1", "10.0.0.4", "10.0.0.5", "10.0.0.6"}
		for i := range 37 {
			want = append(want, fmt.Sprintf("10.0.0.%d", 10+i))
		}
		if diff := cmp.Diff(want, srcs); diff != "" {
			t.Errorf("%d shards: evicted (-want +got):\n%s", shards, diff)
		}
		st := tab.Stats()
		if st.Active != 3 || st.Evictions != uint64(len(want)) {
			t.Errorf("%d shards: active %d evictions %d, want 3 and %d", shards, st.Active, st.Evictions, len(want))
		}
	}
}

func TestNonIPSamplesAreIgnored(t *testing.T) {
	tab, _ := newTable(t, DefaultConfig())
	f := tab.NewFeeder()
	arp := Sample{Timestamp: t0.UnixNano(), EtherType: 0x0806, WireLen: 60, SamplingRate: 1, Segments: 1, Outcome: OutcomeNotIP}
	f.Add([]Sample{arp, pkt(0, 1, 1, 1, 1, 17, 100, 1)})
	if st := tab.Stats(); st.Active != 1 || st.Samples != 1 {
		t.Errorf("active %d samples %d, want 1 and 1", st.Active, st.Samples)
	}
}

func TestIPv6KeysAndICMP(t *testing.T) {
	tab, _ := newTable(t, DefaultConfig())
	f := tab.NewFeeder()
	s := Sample{
		Timestamp: t0.UnixNano(), SrcAddr: netip.MustParseAddr("2001:db8::1"), DstAddr: netip.MustParseAddr("2001:db8::2"),
		Proto: 58, DstPort: 128 << 8, IPVersion: 6, WireLen: 118, SamplingRate: 1, Segments: 1, TTL: 64,
	}
	v4 := s
	v4.SrcAddr, v4.DstAddr, v4.IPVersion = netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 4
	f.Add([]Sample{s, s, v4})
	var c collector
	tab.Flush(c.emit)
	got := c.take()
	if len(got) != 2 {
		t.Fatalf("got %d records, want 2", len(got))
	}
	for _, r := range got {
		k := r.Key
		switch k.Src().String() {
		case "2001:db8::1":
			if k.Dst().String() != "2001:db8::2" || r.Packets != 2 || k.IPVersion != 6 {
				t.Errorf("v6 record %+v", r)
			}
		case "10.0.0.1":
			if k.Dst().String() != "10.0.0.2" || r.Packets != 1 || !k.Src().Is4() {
				t.Errorf("v4 record %+v", r)
			}
		default:
			t.Errorf("unexpected record %v", k.Src())
		}
	}
}

func TestSetTimeoutsAppliesToRunningTable(t *testing.T) {
	tab, clk := newTable(t, DefaultConfig())
	f := tab.NewFeeder()
	f.Add([]Sample{pkt(0, 1, 1, 1, 1, 17, 100, 1)})
	var c collector
	clk.Set(t0.Add(5 * time.Second))
	tab.Expire(c.emit)
	if len(c.take()) != 0 {
		t.Fatal("expired before the default idle timeout")
	}
	tab.SetTimeouts(5*time.Second, time.Minute)
	tab.Expire(c.emit)
	if got := c.take(); len(got) != 1 || got[0].EndReason != EndIdle {
		t.Fatalf("after lowering the idle timeout got %+v", got)
	}
}

func TestConcurrentFeedersCountExactly(t *testing.T) {
	tab, _ := newTable(t, DefaultConfig())
	const feeders, batches, flows = 4, 200, 1000
	var wg sync.WaitGroup
	for w := range feeders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := tab.NewFeeder()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			batch := make([]Sample, 256)
			for range batches {
				for i := range batch {
					n := rng.IntN(flows)
					batch[i] = pkt(0, byte(n), byte(n>>8), uint16(n), 80, 17, 100, 1)
				}
				f.Add(batch)
			}
		}()
	}
	wg.Wait()
	var c collector
	tab.Flush(c.emit)
	var total uint64
	keys := map[Key]bool{}
	for _, r := range c.take() {
		total += r.Packets
		if keys[r.Key] {
			t.Errorf("key %+v reported twice", r.Key)
		}
		keys[r.Key] = true
	}
	if want := uint64(feeders * batches * 256); total != want {
		t.Errorf("total %d packets, want %d", total, want)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, mut := range []func(*Config){
		func(c *Config) { c.IdleTimeout.D = 0 },
		func(c *Config) { c.ActiveTimeout.D = -time.Second },
		func(c *Config) { c.MaxFlows = 0 },
		func(c *Config) { c.Shards = 0 },
	} {
		c := DefaultConfig()
		mut(&c)
		if _, err := NewTable(c, SystemClock{}); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}

// TestPartFeedersSplitTheTable: part feeders, each given every batch,
// account every sample exactly once between them.
func TestPartFeedersSplitTheTable(t *testing.T) {
	tab, _ := newTable(t, DefaultConfig())
	parts := []*Feeder{tab.NewPartFeeder(0, 4), tab.NewPartFeeder(1, 4), tab.NewPartFeeder(2, 4), tab.NewPartFeeder(3, 4)}
	batch := make([]Sample, 500)
	for i := range batch {
		batch[i] = pkt(time.Duration(i), byte(i), byte(i>>8), uint16(i%37), 80, 17, 100, 1)
	}
	var wg sync.WaitGroup
	for _, f := range parts {
		wg.Add(1)
		go func() { defer wg.Done(); f.Add(batch) }()
	}
	wg.Wait()
	st := tab.Stats()
	if st.Samples != 500 || st.Active != 500 {
		t.Errorf("%d samples in %d flows, want 500 in 500", st.Samples, st.Active)
	}
	for _, bad := range [][2]int{{0, 3}, {4, 4}, {-1, 2}, {0, 0}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewPartFeeder(%d, %d) did not panic", bad[0], bad[1])
				}
			}()
			tab.NewPartFeeder(bad[0], bad[1])
		}()
	}
}

// TestUnseenPacketsWidenTheInterval: a flow sampled twice at 1-in-10
// while the rate rose to 1-in-1000 for other traffic in between may have
// packets no sample caught at 1-in-1000; its upper bound says so. A rate
// in force only after its idle timeout does not count.
func TestUnseenPacketsWidenTheInterval(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Shards = 1 // the rate history is per shard
	tab, _ := newTable(t, cfg)
	f := tab.NewFeeder()
	f.Add([]Sample{
		pkt(0, 1, 1, 1000, 53, 17, 100, 10),
		pkt(1*time.Second, 2, 2, 1000, 53, 17, 100, 1000), // another flow
		pkt(2*time.Second, 1, 1, 1000, 53, 17, 100, 10),
		pkt(40*time.Second, 3, 3, 1000, 53, 17, 100, 5000), // past flow 1's idle timeout
	})
	var c collector
	tab.Flush(c.emit)
	for _, r := range c.take() {
		if r.Samples != 2 {
			continue
		}
		if r.MaxPacketsW != 999 || r.MaxBytesW != 999*100 {
			t.Errorf("max weights %v packets, %v bytes; want 999 and 99900 (1-in-1000 in force while open)",
				r.MaxPacketsW, r.MaxBytesW)
		}
		iv := r.PacketsEstimate().Interval()
		if iv.Hi < 3*1000 {
			t.Errorf("upper bound %d: a stretch at 1-in-1000 with no sample could hide about 3.7×1000 packets", iv.Hi)
		}
		return
	}
	t.Fatal("no record of flow 1")
}
