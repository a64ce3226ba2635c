package sampler

import (
	"context"
	"math"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/test/netlab"
)

// Helpers of the privileged tests in attach_priv_test.go: the programs
// attached to a veth of a netlab lab, a reader collecting every sample,
// and checks of counters and samples against the kernel's view.

const (
	labPort    = 7000 // where the lab's traffic goes
	labPayload = 200  // UDP payload bytes
	labWait    = 10 * time.Second
)

// labRig is one loaded set of programs with a reader collecting every
// sample into memory.
type labRig struct {
	t     *testing.T
	progs *Programs
	rd    *Reader

	mu      sync.Mutex
	samples []flow.Sample
}

func newLabRig(t *testing.T, rate uint32) *labRig {
	t.Helper()
	progs, err := LoadPrograms(LoadOptions{SampleRate: rate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { progs.Close() })
	rd, err := progs.NewReader(ReaderConfig{FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := &labRig{t: t, progs: progs, rd: rd}
	ch := make(chan []flow.Sample, 4096)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() {
		runDone <- rd.Run(ctx, ch)
		close(ch)
	}()
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for b := range ch {
			r.mu.Lock()
			r.samples = append(r.samples, b...)
			r.mu.Unlock()
			rd.Release(b)
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-runDone:
			if err != nil {
				t.Errorf("reader: %v", err)
			}
		case <-time.After(labWait):
			t.Errorf("reader did not stop within %v", labWait)
			return
		}
		<-consumed
	})
	return r
}

// attach attaches the programs to ifname inside ns and detaches them at
// cleanup.
func (r *labRig) attach(ns *netlab.Namespace, ifname string, mode Mode, egress bool) *Attachment {
	r.t.Helper()
	ifc, err := ns.Interface(ifname)
	if err != nil {
		r.t.Fatal(err)
	}
	var a *Attachment
	err = ns.Do(func() error {
		var err error
		a, err = r.progs.Attach(ifc, mode, egress)
		return err
	})
	if err != nil {
		r.t.Fatalf("attach %s to %s: %v", mode, ifname, err)
	}
	r.t.Cleanup(func() { a.Close() })
	if a.Mode != mode || a.Ifindex != ifc.Index || a.Name != ifname || a.Egress != egress {
		r.t.Fatalf("attachment = %+v, want mode %s ifindex %d name %s egress %v", a, mode, ifc.Index, ifname, egress)
	}
	return a
}

func (r *labRig) collected() []flow.Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]flow.Sample(nil), r.samples...)
}

// labCounts is a consistent view of one interface and direction: the
// programs' counters and the kernel's.
type labCounts struct {
	prog           InterfaceStats
	kernel, kBytes uint64 // rx (ingress) or tx+tx_dropped (egress)
}

func (r *labRig) read(ns *netlab.Namespace, ifname string, ifindex int, dir flow.Direction) labCounts {
	r.t.Helper()
	ps, err := r.progs.InterfaceStats(uint32(ifindex), dir)
	if err != nil {
		r.t.Fatal(err)
	}
	ks, err := ns.Stats(ifname)
	if err != nil {
		r.t.Fatal(err)
	}
	c := labCounts{prog: ps, kernel: ks.RxPackets, kBytes: ks.RxBytes}
	if dir == flow.Egress {
		// The egress hook runs before the veth hands the packet over; a
		// packet the veth then drops is counted as tx_dropped.
		c.kernel, c.kBytes = ks.TxPackets+ks.TxDropped, ks.TxBytes
	}
	return c
}

// settle waits until the counters stop moving and the reader has
// delivered every sample submitted, then returns the counters.
func (r *labRig) settle(ns *netlab.Namespace, ifname string, ifindex int, dir flow.Direction) labCounts {
	r.t.Helper()
	deadline := time.Now().Add(labWait)
	prev, stable := labCounts{}, 0
	for {
		c := r.read(ns, ifname, ifindex, dir)
		st, err := r.progs.Stats()
		if err != nil {
			r.t.Fatal(err)
		}
		r.mu.Lock()
		got := uint64(len(r.samples))
		r.mu.Unlock()
		if c == prev && got == st.Samples {
			stable++
		} else {
			stable = 0
		}
		if stable >= 3 {
			return c
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("counters still moving after %v: %+v, %d of %d samples read", labWait, c, got, st.Samples)
		}
		prev = c
		time.Sleep(20 * time.Millisecond)
	}
}

// labCheckExact asserts that the programs' counters moved exactly as the
// kernel's between two settled views, and by at least sent packets.
func labCheckExact(t *testing.T, mode Mode, before, after labCounts, sent int) {
	t.Helper()
	pk := after.prog.Packets - before.prog.Packets
	kk := after.kernel - before.kernel
	pb := after.prog.Bytes - before.prog.Bytes
	kb := after.kBytes - before.kBytes
	if mode == ModeXDPNative {
		// With native XDP the veth counts rx_bytes of the skb after
		// eth_type_trans, without the Ethernet header; the program
		// counts whole frames.
		kb += 14 * kk
	}
	t.Logf("program counted %d packets / %d bytes; kernel %d packets / %d bytes; sent %d", pk, pb, kk, kb, sent)
	if pk != kk {
		t.Errorf("program counted %d packets, the kernel %d", pk, kk)
	}
	if pb != kb {
		t.Errorf("program counted %d bytes, the kernel %d", pb, kb)
	}
	if pk < uint64(sent) {
		t.Errorf("program counted %d packets, fewer than the %d sent", pk, sent)
	}
	if f := after.prog.Frames - before.prog.Frames; f != pk {
		t.Errorf("frames %d != packets %d without GSO", f, pk)
	}
}

// checkStats asserts the global counters agree with what the reader read.
func (r *labRig) checkStats() Stats {
	r.t.Helper()
	st, err := r.progs.Stats()
	if err != nil {
		r.t.Fatal(err)
	}
	rs := r.rd.Stats()
	if st.Samples != rs.Samples || rs.BadRecords != 0 || rs.Dropped != 0 {
		r.t.Errorf("kernel submitted %d samples; reader decoded %d, %d bad, %d dropped", st.Samples, rs.Samples, rs.BadRecords, rs.Dropped)
	}
	if n := len(r.collected()); uint64(n) != st.Samples {
		r.t.Errorf("collected %d samples, kernel submitted %d", n, st.Samples)
	}
	if st.RingbufFull != 0 || st.IfMapFull != 0 {
		r.t.Errorf("ringbuf_full %d, if_map_full %d; want 0", st.RingbufFull, st.IfMapFull)
	}
	return st
}

// labMatching returns the samples of one sender's flow in a direction.
func labMatching(samples []flow.Sample, s *netlab.Sender, dir flow.Direction) []flow.Sample {
	var out []flow.Sample
	for _, x := range samples {
		if x.Proto == 17 && x.Direction == dir &&
			x.SrcAddr == s.Src.Addr() && x.DstAddr == s.Dst.Addr() &&
			x.SrcPort == s.Src.Port() && x.DstPort == s.Dst.Port() {
			out = append(out, x)
		}
	}
	return out
}

// labCheckFields asserts the fields of a flow's samples; rate 0 skips the
// rate check.
func labCheckFields(t *testing.T, got []flow.Sample, s *netlab.Sender, ifindex int, dir flow.Direction, rate uint32) {
	t.Helper()
	ver, eth := uint8(4), uint16(0x0800)
	if s.Dst.Addr().Is6() {
		ver, eth = 6, 0x86dd
	}
	bad := 0
	for _, x := range got {
		if x.Ifindex != uint32(ifindex) || x.WireLen != uint32(s.FrameLen()) || x.IPVersion != ver ||
			x.EtherType != eth || x.Outcome != flow.OutcomeOK || x.Segments != 1 || x.TTL != 64 ||
			x.Flags != 0 || x.Timestamp == 0 || (rate != 0 && x.SamplingRate != rate) {
			if bad++; bad <= 3 {
				t.Errorf("sample %+v: want ifindex %d, wire length %d, IPv%d, rate %d, ttl 64, outcome ok, 1 segment",
					x, ifindex, s.FrameLen(), ver, rate)
			}
		}
	}
	if bad > 3 {
		t.Errorf("... %d samples with wrong fields in all", bad)
	}
}

// labBinomialBound is mean ± 5 standard deviations of Binomial(n, p).
func labBinomialBound(n int, p float64) (lo, hi float64) {
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	return mean - 5*sd, mean + 5*sd
}

func labSend(t *testing.T, s *netlab.Sender, n int) {
	t.Helper()
	if got, err := s.Send(n); err != nil || got != n {
		t.Fatalf("sent %d of %d datagrams: %v", got, n, err)
	}
}

// newSinkLab builds a lab with a sink on labPort for each IP family
// given, and returns it with the sensor end's interface.
func newSinkLab(t *testing.T, families ...int) (*netlab.Lab, net.Interface) {
	t.Helper()
	lab := netlab.New(t)
	for _, f := range families {
		lab.NewSink(t, f, labPort)
	}
	ifc, err := lab.Sensor.Interface(netlab.SensorIf)
	if err != nil {
		t.Fatal(err)
	}
	return lab, ifc
}
