package sampler

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

// Privileged tests: the programs attached to a veth in a network
// namespace, fed with known UDP traffic from the peer namespace. They
// skip without root and fail instead when VIGIL_PRIVILEGED_TESTS=1.

func TestPrivAttachModesSampleEveryPacket(t *testing.T) {
	testutil.RequirePrivileged(t)
	lab, ifc := newSinkLab(t, 4, 6)
	const perFamily = 1000
	for _, mode := range []Mode{ModeXDPNative, ModeXDPGeneric, ModeTCX} {
		t.Run(string(mode), func(t *testing.T) {
			r := newLabRig(t, 1)
			r.attach(lab.Sensor, netlab.SensorIf, mode, false)
			s4 := lab.NewSender(t, 4, labPort, labPayload)
			s6 := lab.NewSender(t, 6, labPort, labPayload)

			before := r.settle(lab.Sensor, netlab.SensorIf, ifc.Index, flow.Ingress)
			labSend(t, s4, perFamily)
			labSend(t, s6, perFamily)
			after := r.settle(lab.Sensor, netlab.SensorIf, ifc.Index, flow.Ingress)
			labCheckExact(t, mode, before, after, 2*perFamily)

			st := r.checkStats()
			// At N=1 every packet the program ran on is a sample.
			if st.Samples != after.prog.Packets || st.Packets() != after.prog.Packets {
				t.Errorf("samples %d, packets parsed %d, interface packets %d: want all equal at N=1",
					st.Samples, st.Packets(), after.prog.Packets)
			}
			all := r.collected()
			for _, s := range []*netlab.Sender{s4, s6} {
				got := labMatching(all, s, flow.Ingress)
				if len(got) != perFamily {
					t.Errorf("%v -> %v: %d samples, want %d", s.Src, s.Dst, len(got), perFamily)
				}
				labCheckFields(t, got, s, ifc.Index, flow.Ingress, 1)
			}
			t.Logf("%s: %d samples in all, %d of the lab's flows", mode, len(all),
				len(labMatching(all, s4, flow.Ingress))+len(labMatching(all, s6, flow.Ingress)))
		})
	}
}

func TestPrivAttachSampleRate10(t *testing.T) {
	testutil.RequirePrivileged(t)
	lab, ifc := newSinkLab(t, 4)
	r := newLabRig(t, 10)
	r.attach(lab.Sensor, netlab.SensorIf, ModeXDPNative, false)
	s := lab.NewSender(t, 4, labPort, labPayload)

	const n = 20000
	before := r.settle(lab.Sensor, netlab.SensorIf, ifc.Index, flow.Ingress)
	labSend(t, s, n)
	after := r.settle(lab.Sensor, netlab.SensorIf, ifc.Index, flow.Ingress)
	labCheckExact(t, ModeXDPNative, before, after, n)
	r.checkStats()

	got := labMatching(r.collected(), s, flow.Ingress)
	lo, hi := labBinomialBound(n, 0.1)
	t.Logf("%d packets at 1 in 10: %d samples (bound %.0f..%.0f)", n, len(got), lo, hi)
	if float64(len(got)) < lo || float64(len(got)) > hi {
		t.Errorf("%d samples of %d packets at 1 in 10, want within %.0f..%.0f", len(got), n, lo, hi)
	}
	labCheckFields(t, got, s, ifc.Index, flow.Ingress, 10)
	for _, x := range r.collected() {
		if x.SamplingRate != 10 {
			t.Fatalf("sample with rate %d, want 10: %+v", x.SamplingRate, x)
		}
	}
}

func TestPrivSetSampleRateWhileTrafficFlows(t *testing.T) {
	testutil.RequirePrivileged(t)
	lab, ifc := newSinkLab(t, 4)
	r := newLabRig(t, 1)
	a := r.attach(lab.Sensor, netlab.SensorIf, ModeXDPNative, false)
	s := lab.NewSender(t, 4, labPort, labPayload)

	// What is attached now: the link, its program, and what the
	// interface reports.
	identity := func() (linkID, progID, ifProg uint32) {
		t.Helper()
		if len(a.links) != 1 {
			t.Fatalf("attachment has %d links, want 1", len(a.links))
		}
		info, err := a.links[0].Info()
		if err != nil {
			t.Fatal(err)
		}
		l, err := lab.Sensor.Link(netlab.SensorIf)
		if err != nil {
			t.Fatal(err)
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			ifProg = x.ProgId
		}
		return uint32(info.ID), uint32(info.Program), ifProg
	}
	link0, prog0, if0 := identity()
	if pi, err := r.progs.objs.VigilXdp.Info(); err != nil {
		t.Fatal(err)
	} else if id, ok := pi.ID(); !ok || uint32(id) != prog0 || if0 != prog0 {
		t.Fatalf("program %d (ok %v), link's %d, interface's %d: want one program", id, ok, prog0, if0)
	}

	const pps, dur = 10000, 1500 * time.Millisecond
	before := r.settle(lab.Sensor, netlab.SensorIf, ifc.Index, flow.Ingress)
	var sent atomic.Int64
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := s.SendPaced(context.Background(), pps, dur, &sent)
		done <- result{n, err}
	}()
	deadline := time.Now().Add(labWait)
	for sent.Load() < pps/2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	sentBefore := sent.Load()
	t0 := time.Now().UnixNano()
	if err := r.progs.SetSampleRate(50); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now().UnixNano()
	sentAfter := sent.Load()
	res := <-done
	if res.err != nil {
		t.Fatalf("paced traffic: %v", res.err)
	}
	after := r.settle(lab.Sensor, netlab.SensorIf, ifc.Index, flow.Ingress)
	labCheckExact(t, ModeXDPNative, before, after, res.n)
	r.checkStats()

	if got := r.progs.SampleRate(); got != 50 {
		t.Errorf("SampleRate() = %d, want 50", got)
	}
	if l, p, i := identity(); l != link0 || p != prog0 || i != if0 {
		t.Errorf("link/program/interface program changed from %d/%d/%d to %d/%d/%d", link0, prog0, if0, l, p, i)
	}

	// Samples taken clearly before the switch carry 1, clearly after 50.
	const margin = int64(time.Millisecond)
	var n1, n50 int
	for _, x := range labMatching(r.collected(), s, flow.Ingress) {
		switch x.SamplingRate {
		case 1:
			n1++
			if x.Timestamp > t1+margin {
				t.Errorf("sample at rate 1 taken %v after the switch", time.Duration(x.Timestamp-t1))
			}
		case 50:
			n50++
			if x.Timestamp < t0-margin {
				t.Errorf("sample at rate 50 taken %v before the switch", time.Duration(t0-x.Timestamp))
			}
		default:
			t.Errorf("sample with rate %d, want 1 or 50", x.SamplingRate)
		}
	}
	// Before the switch every packet was a sample, so the rest of the
	// packets were sampled at 1 in 50.
	rest := res.n - n1
	lo, hi := labBinomialBound(rest, 1.0/50)
	t.Logf("sent %d (%d..%d when N changed); %d samples at N=1, %d at N=50 of the %d packets after (bound %.0f..%.0f)",
		res.n, sentBefore, sentAfter, n1, n50, rest, lo, hi)
	if n1 == 0 || n50 == 0 {
		t.Fatalf("saw %d samples at rate 1 and %d at rate 50, want both", n1, n50)
	}
	if n1 > res.n {
		t.Errorf("%d samples at rate 1, more than the %d packets sent", n1, res.n)
	}
	if float64(n50) < lo || float64(n50) > hi {
		t.Errorf("%d samples at rate 50 of %d packets, want within %.0f..%.0f", n50, rest, lo, hi)
	}
}

func TestPrivAttachEgress(t *testing.T) {
	testutil.RequirePrivileged(t)
	lab, _ := newSinkLab(t, 4, 6)
	ifc, err := lab.Peer.Interface(netlab.PeerIf)
	if err != nil {
		t.Fatal(err)
	}
	r := newLabRig(t, 1)
	r.attach(lab.Peer, netlab.PeerIf, ModeTCX, true)
	s4 := lab.NewSender(t, 4, labPort, labPayload)
	s6 := lab.NewSender(t, 6, labPort, labPayload)

	const perFamily = 1000
	before := r.settle(lab.Peer, netlab.PeerIf, ifc.Index, flow.Egress)
	labSend(t, s4, perFamily)
	labSend(t, s6, perFamily)
	after := r.settle(lab.Peer, netlab.PeerIf, ifc.Index, flow.Egress)
	labCheckExact(t, ModeTCX, before, after, 2*perFamily)
	r.checkStats()

	all := r.collected()
	for _, s := range []*netlab.Sender{s4, s6} {
		got := labMatching(all, s, flow.Egress)
		if n, retried := len(got), int(s.NoBufs()); n < perFamily || n > perFamily+retried {
			t.Errorf("%v -> %v: %d egress samples, want %d (+ up to %d refused and retried)", s.Src, s.Dst, n, perFamily, retried)
		}
		labCheckFields(t, got, s, ifc.Index, flow.Egress, 1)
		if in := labMatching(all, s, flow.Ingress); len(in) != 0 {
			t.Errorf("%v -> %v: %d ingress samples on the sending side, want 0", s.Src, s.Dst, len(in))
		}
	}
	// The sender's ingress saw nothing of the flow but is counted apart.
	in, err := r.progs.InterfaceStats(uint32(ifc.Index), flow.Ingress)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("egress: %d packets; ingress of the sending side: %d packets", after.prog.Packets, in.Packets)
}

func TestPrivManagerFollowsInterface(t *testing.T) {
	testutil.RequirePrivileged(t)
	lab := netlab.New(t)
	r := newLabRig(t, 1)
	const name, peer = "vmgr0", "vmgr0p"
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := NewManager(r.progs, []string{name}, ModeXDPGeneric, false, log)

	ctx, cancel := context.WithCancel(context.Background())
	runDone := lab.Sensor.Go(func() error { return m.Run(ctx) })
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-runDone:
			if err != nil {
				t.Errorf("Manager.Run: %v", err)
			}
		case <-time.After(labWait):
			t.Errorf("Manager.Run did not return within %v", labWait)
		}
	}
	t.Cleanup(stop)

	// waitFor polls Attachments until want says yes.
	waitFor := func(what string, want func([]AttachmentInfo) bool) []AttachmentInfo {
		t.Helper()
		deadline := time.Now().Add(labWait)
		for {
			got := m.Attachments()
			if want(got) {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: attachments %+v after %v (failures %v)", what, got, labWait, m.AttachFailures())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	attachedTo := func(ifindex int) func([]AttachmentInfo) bool {
		return func(a []AttachmentInfo) bool {
			return len(a) == 1 && a[0].Name == name && a[0].Ifindex == ifindex && a[0].Mode == ModeXDPGeneric
		}
	}
	none := func(a []AttachmentInfo) bool { return len(a) == 0 }
	xdpAttached := func() bool {
		t.Helper()
		l, err := lab.Sensor.Link(name)
		if err != nil {
			t.Fatal(err)
		}
		x := l.Attrs().Xdp
		return x != nil && x.Attached
	}
	create := func() int {
		t.Helper()
		if err := lab.AddVeth(name, peer, nil, nil); err != nil {
			t.Fatal(err)
		}
		if err := lab.Up(name, peer); err != nil {
			t.Fatal(err)
		}
		ifc, err := lab.Sensor.Interface(name)
		if err != nil {
			t.Fatal(err)
		}
		return ifc.Index
	}

	// Not there yet: nothing attached (the other veth is not configured).
	time.Sleep(100 * time.Millisecond)
	waitFor("before the interface exists", none)

	idx1 := create()
	waitFor("interface created", attachedTo(idx1))
	if !xdpAttached() {
		t.Errorf("%s: manager says attached, kernel shows no XDP program", name)
	}

	if err := lab.Sensor.DeleteLink(name); err != nil {
		t.Fatal(err)
	}
	waitFor("interface deleted", none)

	idx2 := create()
	t.Cleanup(func() { lab.Sensor.DeleteLink(name) })
	if idx2 == idx1 {
		t.Fatalf("recreated interface got the same ifindex %d", idx1)
	}
	waitFor("interface recreated", attachedTo(idx2))
	if !xdpAttached() {
		t.Errorf("%s: manager says attached again, kernel shows no XDP program", name)
	}

	stop()
	if got := m.Attachments(); len(got) != 0 {
		t.Errorf("after Run returned: attachments %+v, want none", got)
	}
	if xdpAttached() {
		t.Errorf("%s: XDP program still attached after Run returned", name)
	}
	if f := m.AttachFailures(); len(f) != 0 {
		t.Errorf("attach failures %v, want none", f)
	}
	t.Logf("attached to ifindex %d, detached, attached to ifindex %d, detached on shutdown", idx1, idx2)
}
