package sampler

// BPF_PROG_RUN tests of the real programs: verdict, counters and the
// ring buffer record for every frame of the case table.

import (
	"fmt"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket/layers"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

// Load-time and run-time knobs of the programs, through BPF_PROG_RUN.

func TestProgRunHead(t *testing.T) {
	testutil.RequirePrivileged(t)
	long := mk.build(t, mk.eth(layers.EthernetTypeIPv4), mk.ip4(layers.IPProtocolUDP, fx.v4A, fx.v4B),
		mk.udp(1, 2), mk.payload(300))
	longWant := mk.is(mk.ports(mk.ip4Sample(17, fx.v4A, fx.v4B), 1, 2, 0), flow.OutcomeOK)
	short := mk.arp(t) // 60 bytes
	shortWant := mk.is(mk.l2Sample(0x0806), flow.OutcomeNotIP)
	if len(long) <= MaxHeadBytes || len(short) >= 64 {
		t.Fatalf("frames of %d and %d bytes do not fit the test", len(long), len(short))
	}
	for _, tc := range []struct {
		head            int
		frame, headWant []byte
		want            flow.Sample
	}{
		{64, long, long[:64], longWant},
		{64, short, short, shortWant},
		{MaxHeadBytes, long, long[:MaxHeadBytes], longWant},
		{MaxHeadBytes, short, short, shortWant},
		{1, short, short[:1], shortWant},
		{0, long, nil, longWant},
	} {
		t.Run(fmt.Sprintf("head=%d/frame=%d", tc.head, len(tc.frame)), func(t *testing.T) {
			r := newRunRig(t, LoadOptions{SampleRate: 1, HeadBytes: tc.head})
			for _, h := range runHooks(t) {
				got := expectOneRecord(t, h, r.run(t, h, ebpf.RunOptions{Data: tc.frame}), tc.want.Outcome, len(tc.frame), 1)
				want := withCapture(tc.want, h, tc.frame, 1)
				want.Head = tc.headWant
				if diff := cmp.Diff(got, want, sampleDiffOpts); diff != "" {
					t.Errorf("%s: sample (-got +want):\n%s", h.name, diff)
				}
			}
		})
	}
	// Head capture changes the record, not the parse.
	t.Run("head=64/cases", func(t *testing.T) {
		rigs := map[Decap]*runRig{}
		h := runHooks(t)[0]
		for _, c := range wireCases(t) {
			if rigs[c.decap] == nil {
				rigs[c.decap] = newRunRig(t, LoadOptions{SampleRate: 1, Decap: c.decap, HeadBytes: 64})
			}
			got := expectOneRecord(t, h, rigs[c.decap].run(t, h, ebpf.RunOptions{Data: c.frame}), c.want.Outcome, len(c.frame), 1)
			want := withCapture(c.want, h, c.frame, 1)
			want.Head = c.frame[:min(64, len(c.frame))]
			if diff := cmp.Diff(got, want, sampleDiffOpts); diff != "" {
				t.Errorf("%s: sample (-got +want):\n%s", c.name, diff)
			}
		}
	})
}

func TestLoadProgramsRejectsHeadBytes(t *testing.T) {
	for _, n := range []int{-1, MaxHeadBytes + 1} {
		if p, err := LoadPrograms(LoadOptions{HeadBytes: n}); err == nil {
			p.Close()
			t.Errorf("LoadPrograms(HeadBytes: %d) succeeded", n)
		}
	}
}

// TestProgRunEveryPacketSampled: at rate 1 each packet makes a record,
// and the samples counter counts them.
func TestProgRunEveryPacketSampled(t *testing.T) {
	testutil.RequirePrivileged(t)
	r := newRunRig(t, LoadOptions{SampleRate: 1})
	frame := mk.udp4(t)
	const n = 500
	for _, h := range runHooks(t) {
		res := r.run(t, h, ebpf.RunOptions{Data: frame, Repeat: n})
		var want Stats
		want.Outcomes[flow.OutcomeOK], want.Samples = n, n
		if diff := cmp.Diff(res.stats, want); diff != "" {
			t.Errorf("%s: counter increments (-got +want):\n%s", h.name, diff)
		}
		if len(res.samples) != n {
			t.Errorf("%s: %d records, want %d", h.name, len(res.samples), n)
		}
		wantIf := InterfaceStats{Packets: n, Bytes: n * uint64(len(frame)), Frames: n}
		if res.ifs != wantIf {
			t.Errorf("%s: interface counters %+v, want %+v", h.name, res.ifs, wantIf)
		}
		for _, s := range res.samples {
			if s.SamplingRate != 1 || s.Outcome != flow.OutcomeOK || s.DstPort != 53 {
				t.Fatalf("%s: sample %+v", h.name, s)
			}
		}
	}
}

// TestProgRunSetSampleRate: a new rate applies to the next packet and
// is carried by its sample, without reloading.
func TestProgRunSetSampleRate(t *testing.T) {
	testutil.RequirePrivileged(t)
	r := newRunRig(t, LoadOptions{SampleRate: 1})
	h := runHooks(t)[0]
	frame := mk.tcp6(t)
	rate := func(t *testing.T, n uint32, repeat uint32) []flow.Sample {
		t.Helper()
		if err := r.p.SetSampleRate(n); err != nil {
			t.Fatal(err)
		}
		if got := r.p.SampleRate(); got != max(n, 1) {
			t.Errorf("SampleRate() = %d after SetSampleRate(%d)", got, n)
		}
		res := r.run(t, h, ebpf.RunOptions{Data: frame, Repeat: repeat})
		if res.stats.Outcomes[flow.OutcomeOK] != uint64(repeat) || res.stats.Samples != uint64(len(res.samples)) {
			t.Errorf("rate %d: %d packets, %d records, counters %+v", n, repeat, len(res.samples), res.stats)
		}
		for _, s := range res.samples {
			if s.SamplingRate != max(n, 1) {
				t.Fatalf("rate %d: sample says rate %d", n, s.SamplingRate)
			}
		}
		return res.samples
	}
	if got := rate(t, 1, 1); len(got) != 1 {
		t.Fatalf("rate 1: %d records of 1 packet", len(got))
	}
	// 1 in 4 of 8000 packets: 2000 expected, sd ~39; ±300 is ~8 sd.
	if got := rate(t, 4, 8000); len(got) < 1700 || len(got) > 2300 {
		t.Errorf("rate 4: %d records of 8000 packets, want about 2000", len(got))
	}
	if got := rate(t, 1000000, 1000); len(got) > 10 {
		t.Errorf("rate 1000000: %d records of 1000 packets", len(got))
	}
	if got := rate(t, 0, 3); len(got) != 3 {
		t.Errorf("rate 0 (meaning 1): %d records of 3 packets", len(got))
	}
}

// TestProgRunRingbufFull: samples that find the ring buffer full are
// counted, and the packets still are.
func TestProgRunRingbufFull(t *testing.T) {
	testutil.RequirePrivileged(t)
	r := newRunRig(t, LoadOptions{SampleRate: 1, RingBufferSize: os.Getpagesize()})
	h := runHooks(t)[0]
	const n = 200
	res := r.run(t, h, ebpf.RunOptions{Data: mk.udp4(t), Repeat: n})
	st := res.stats
	if st.Outcomes[flow.OutcomeOK] != n || st.Samples+st.RingbufFull != n || st.RingbufFull == 0 {
		t.Errorf("counters %+v after %d packets into a %d-byte ring", st, n, os.Getpagesize())
	}
	if uint64(len(res.samples)) != st.Samples {
		t.Errorf("%d records read, %d counted", len(res.samples), st.Samples)
	}
	if res.ifs.Frames != n {
		t.Errorf("interface counted %d frames, want %d", res.ifs.Frames, n)
	}
}

// TestProgRunWakeup: a backlog past WakeupBytes forces a wakeup.
func TestProgRunWakeup(t *testing.T) {
	testutil.RequirePrivileged(t)
	frame := mk.udp4(t)
	for _, tc := range []struct {
		bytes int
		want  uint64
	}{{1, 1}, {0, 0}} {
		r := newRunRig(t, LoadOptions{SampleRate: 1, WakeupBytes: tc.bytes})
		res := r.run(t, runHooks(t)[0], ebpf.RunOptions{Data: frame})
		if res.stats.Wakeups != tc.want || len(res.samples) != 1 {
			t.Errorf("WakeupBytes %d: %d wakeups, %d records; want %d wakeups, 1 record",
				tc.bytes, res.stats.Wakeups, len(res.samples), tc.want)
		}
	}
}

// TestProgRunMaxInterfaces: MaxInterfaces sizes only the overflow hash
// (ifindex >= 1024), so whatever its value every ifindex keeps a counter:
// interfaces the programs never saw read as zero, and lo is counted.
func TestProgRunMaxInterfaces(t *testing.T) {
	testutil.RequirePrivileged(t)
	for _, n := range []int{0, 1, 16, ifSlots} {
		t.Run(fmt.Sprint("MaxInterfaces=", n), func(t *testing.T) {
			r := newRunRig(t, LoadOptions{SampleRate: 1, MaxInterfaces: n})
			for _, ifindex := range []uint32{0, 2, ifSlots/2 - 1, ifSlots / 2, ifSlots - 1, ifSlots, 70000} {
				for _, dir := range []flow.Direction{flow.Ingress, flow.Egress} {
					if s, err := r.p.InterfaceStats(ifindex, dir); err != nil || s != (InterfaceStats{}) {
						t.Errorf("InterfaceStats(%d, %v) = %+v, %v; want zero counters", ifindex, dir, s, err)
					}
				}
				if err := r.p.ResetInterfaceStats(ifindex); err != nil {
					t.Errorf("ResetInterfaceStats(%d): %v", ifindex, err)
				}
			}
			h := runHooks(t)[0]
			frame := mk.udp4(t)
			expectOneRecord(t, h, r.run(t, h, ebpf.RunOptions{Data: frame}), flow.OutcomeOK, len(frame), 1)
		})
	}
}

// TestProgRunInterfaceRate: an interface's own rate overrides the global
// one for its packets only, in both directions, is carried by their
// samples, and 0 makes it follow the global rate again.
func TestProgRunInterfaceRate(t *testing.T) {
	testutil.RequirePrivileged(t)
	r := newRunRig(t, LoadOptions{SampleRate: 1})
	frame := mk.udp4(t)
	lo := loopbackIndex(t)
	// Another interface's rate leaves lo's packets on the global rate.
	other := lo + 7
	if err := r.p.SetInterfaceRate(other, 1000000); err != nil {
		t.Fatal(err)
	}
	for _, h := range runHooks(t) {
		res := r.run(t, h, ebpf.RunOptions{Data: frame, Repeat: 50})
		if len(res.samples) != 50 || res.samples[0].SamplingRate != 1 {
			t.Errorf("%s on lo while ifindex %d has its own rate: %d samples of 50", h.name, other, len(res.samples))
		}
	}
	if err := r.p.SetInterfaceRate(lo, 7); err != nil {
		t.Fatal(err)
	}
	if got := r.p.InterfaceRate(lo); got != 7 {
		t.Errorf("InterfaceRate(lo) = %d, want 7", got)
	}
	if got := r.p.InterfaceRate(other + 1); got != 1 {
		t.Errorf("InterfaceRate of an interface without its own = %d, want the global 1", got)
	}
	const n = 7000
	for _, h := range runHooks(t) {
		res := r.run(t, h, ebpf.RunOptions{Data: frame, Repeat: n})
		// 1 in 7 of 7000: 1000 expected, sd ~30.
		if len(res.samples) < 800 || len(res.samples) > 1200 {
			t.Errorf("%s on lo at 1-in-7: %d samples of %d packets", h.name, len(res.samples), n)
		}
		for _, s := range res.samples {
			if s.SamplingRate != 7 {
				t.Fatalf("%s on lo: sample says rate %d, want 7", h.name, s.SamplingRate)
			}
		}
	}
	// Back to the global rate.
	if err := r.p.SetInterfaceRate(lo, 0); err != nil {
		t.Fatal(err)
	}
	res := r.run(t, runHooks(t)[0], ebpf.RunOptions{Data: frame, Repeat: 50})
	if len(res.samples) != 50 || res.samples[0].SamplingRate != 1 {
		t.Errorf("lo back on the global 1-in-1: %d samples of 50", len(res.samples))
	}
	if err := r.p.SetInterfaceRate(ifSlots, 5); err == nil {
		t.Errorf("SetInterfaceRate(%d) succeeded; only ifindexes below %d have a knob", ifSlots, ifSlots)
	}
}
