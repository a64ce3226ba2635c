package sampler

// BPF_PROG_RUN tests of the real programs: verdict, counters and the
// ring buffer record for every frame of the case table.

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

const (
	fxXDPPass  = 2          // XDP_PASS
	fxTCUnspec = 0xffffffff // TC_ACT_UNSPEC (-1) as the u32 BPF_PROG_RUN returns
)

// sampleDiffOpts compares samples field by field, except the timestamp
// (checked against the clock separately).
var sampleDiffOpts = cmp.Options{
	cmpopts.IgnoreFields(flow.Sample{}, "Timestamp"),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
}

// runRig is a loaded set of programs and a reader on their ring buffer.
type runRig struct {
	p  *Programs
	rd *ringbuf.Reader
}

func newRunRig(tb testing.TB, opts LoadOptions) *runRig {
	tb.Helper()
	testutil.RequirePrivileged(tb)
	p, err := LoadPrograms(opts)
	if err != nil {
		// The verifier log is long; its end says what failed.
		lines := strings.Split(err.Error(), "\n")
		if len(lines) > 8 {
			lines = append(lines[:2], lines[len(lines)-6:]...)
		}
		tb.Fatalf("LoadPrograms(%+v): %s", opts, strings.Join(lines, "\n"))
	}
	rd, err := ringbuf.NewReader(p.objs.Samples)
	if err != nil {
		p.Close()
		tb.Fatalf("opening ring buffer: %v", err)
	}
	tb.Cleanup(func() {
		rd.Close()
		p.Close()
	})
	return &runRig{p: p, rd: rd}
}

// runHook is an entry point and what BPF_PROG_RUN shows it without a context.
type runHook struct {
	name    string
	prog    func(*Programs) *ebpf.Program
	verdict uint32
	dir     flow.Direction
	ifindex uint32
	skb     bool // a tc program: runs on an skb
}

// loopbackIndex is the loopback's ifindex: the device BPF_PROG_RUN gives an
// skb when no context names another.
func loopbackIndex(tb testing.TB) uint32 {
	tb.Helper()
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		tb.Fatal(err)
	}
	return uint32(lo.Index)
}

func runHooks(tb testing.TB) []runHook {
	lo := loopbackIndex(tb)
	return []runHook{
		// An XDP test run without a context has an xdp_rxq_info on the
		// loopback device too, so ingress_ifindex reads lo's index.
		{"xdp", func(p *Programs) *ebpf.Program { return p.objs.VigilXdp }, fxXDPPass, flow.Ingress, lo, false},
		{"tc-ingress", func(p *Programs) *ebpf.Program { return p.objs.VigilTcIngress }, fxTCUnspec, flow.Ingress, lo, true},
		{"tc-egress", func(p *Programs) *ebpf.Program { return p.objs.VigilTcEgress }, fxTCUnspec, flow.Egress, lo, true},
	}
}

// skbRunRefuses reports whether BPF_PROG_RUN refuses f for a tc program
// (EINVAL): the kernel wants an untagged IPv4 or IPv6 frame to hold at
// least the fixed IP header. XDP test runs only want 14 bytes.
func skbRunRefuses(f []byte) bool {
	if len(f) < 14 {
		return true
	}
	switch uint16(f[12])<<8 | uint16(f[13]) {
	case 0x0800:
		return len(f) < 14+20
	case 0x86dd:
		return len(f) < 14+40
	}
	return false
}

// runResult is what one BPF_PROG_RUN call did.
type runResult struct {
	verdict uint32
	samples []flow.Sample
	stats   Stats          // counter increments
	ifs     InterfaceStats // increments of the runHook's interface and direction
	t0, t1  int64          // CLOCK_MONOTONIC around the run
}

func monoNow(tb testing.TB) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		tb.Fatal(err)
	}
	return ts.Nano()
}

// run runs h's program once per repeat on frame and collects the records.
func (r *runRig) run(tb testing.TB, h runHook, opts ebpf.RunOptions) runResult {
	tb.Helper()
	st0, if0 := r.stats(tb), r.ifStats(tb, h.ifindex, h.dir)
	var res runResult
	res.t0 = monoNow(tb)
	ret, err := h.prog(r.p).Run(&opts)
	res.t1 = monoNow(tb)
	if err != nil {
		tb.Fatalf("%s: BPF_PROG_RUN on %d bytes: %v", h.name, len(opts.Data), err)
	}
	res.verdict = ret
	res.samples = r.drain(tb)
	st1, if1 := r.stats(tb), r.ifStats(tb, h.ifindex, h.dir)
	res.stats = statsIncrement(st1, st0)
	res.ifs = InterfaceStats{Packets: if1.Packets - if0.Packets, Bytes: if1.Bytes - if0.Bytes, Frames: if1.Frames - if0.Frames}
	return res
}

func (r *runRig) stats(tb testing.TB) Stats {
	tb.Helper()
	s, err := r.p.Stats()
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func (r *runRig) ifStats(tb testing.TB, ifindex uint32, dir flow.Direction) InterfaceStats {
	tb.Helper()
	s, err := r.p.InterfaceStats(ifindex, dir)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// drain reads every record in the ring buffer. BPF_PROG_RUN has returned,
// so the records are committed: a deadline of now makes the reader take
// what is there without waiting for a wakeup the program may have skipped
// (it submits with BPF_RB_NO_WAKEUP below the wakeup threshold).
func (r *runRig) drain(tb testing.TB) []flow.Sample {
	tb.Helper()
	var out []flow.Sample
	r.rd.SetDeadline(time.Now())
	for {
		rec, err := r.rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			tb.Fatalf("reading ring buffer: %v", err)
		}
		var s flow.Sample
		var arena []byte
		if err := decodeRecord(rec.RawSample, 0, &s, &arena); err != nil {
			tb.Fatal(err)
		}
		out = append(out, s)
	}
}

func statsIncrement(a, b Stats) Stats {
	d := Stats{
		Samples: a.Samples - b.Samples, RingbufFull: a.RingbufFull - b.RingbufFull,
		IfMapFull: a.IfMapFull - b.IfMapFull, Wakeups: a.Wakeups - b.Wakeups,
	}
	for i := range d.Outcomes {
		d.Outcomes[i] = a.Outcomes[i] - b.Outcomes[i]
	}
	return d
}

// expectOneRecord checks a run that should have made one record of a frame of
// wireLen bytes standing for segs packets, and returns it.
func expectOneRecord(tb testing.TB, h runHook, res runResult, out flow.Outcome, wireLen int, segs uint16) flow.Sample {
	tb.Helper()
	if res.verdict != h.verdict {
		tb.Errorf("verdict %#x, want %#x", res.verdict, h.verdict)
	}
	var want Stats
	want.Outcomes[out] = 1
	want.Samples = 1
	if diff := cmp.Diff(res.stats, want); diff != "" {
		tb.Errorf("counter increments (-got +want):\n%s", diff)
	}
	wantIf := InterfaceStats{Packets: uint64(segs), Bytes: uint64(wireLen), Frames: 1}
	if res.ifs != wantIf {
		tb.Errorf("interface %d/%v counter increments %+v, want %+v", h.ifindex, h.dir, res.ifs, wantIf)
	}
	if len(res.samples) != 1 {
		tb.Fatalf("%d records, want 1", len(res.samples))
	}
	s := res.samples[0]
	if s.Timestamp < res.t0 || s.Timestamp > res.t1 {
		tb.Errorf("timestamp %d outside the run [%d, %d]", s.Timestamp, res.t0, res.t1)
	}
	return s
}

// withCapture fills the fields the program adds to a parsed sample.
func withCapture(s flow.Sample, h runHook, frame []byte, rate uint32) flow.Sample {
	s.Ifindex, s.Direction = h.ifindex, h.dir
	s.WireLen, s.SamplingRate, s.Segments = uint32(len(frame)), rate, 1
	return s
}

func TestProgRunCases(t *testing.T) {
	testutil.RequirePrivileged(t)
	rigs := map[Decap]*runRig{}
	hs := runHooks(t)
	for _, c := range wireCases(t) {
		r := rigs[c.decap]
		if r == nil {
			r = newRunRig(t, LoadOptions{SampleRate: 1, Decap: c.decap})
			rigs[c.decap] = r
		}
		for _, h := range hs {
			t.Run(h.name+"/"+c.name, func(t *testing.T) {
				if h.skb && skbRunRefuses(c.frame) {
					// The kernel will not build an skb from an IP frame
					// shorter than its IP header: check that it refuses,
					// so this case cannot pass silently.
					opts := ebpf.RunOptions{Data: c.frame}
					if _, err := h.prog(r.p).Run(&opts); err == nil {
						t.Fatalf("%s ran on a %d-byte IP frame; extend the table's expectations", h.name, len(c.frame))
					}
					return
				}
				res := r.run(t, h, ebpf.RunOptions{Data: c.frame})
				got := expectOneRecord(t, h, res, c.want.Outcome, len(c.frame), 1)
				if diff := cmp.Diff(got, withCapture(c.want, h, c.frame, 1), sampleDiffOpts); diff != "" {
					t.Errorf("frame % x\nsample (-got +want):\n%s", c.frame, diff)
				}
			})
		}
	}
}

// xdpMDCtx is struct xdp_md, the XDP test run context.
type xdpMDCtx struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// skbRunCtx is struct __sk_buff (192 bytes) as 32-bit words.
type skbRunCtx [48]uint32

const (
	skbOffIfindex = 40 / 4  // offsetof(struct __sk_buff, ifindex)
	skbOffGSOSegs = 164 / 4 // offsetof(struct __sk_buff, gso_segs)
	skbOffGSOSize = 176 / 4 // offsetof(struct __sk_buff, gso_size)
)

// TestProgRunContext checks the interface and GSO accounting with an
// explicit context: the XDP ingress ifindex, and a tc skb on another
// interface standing for several wire packets.
func TestProgRunContext(t *testing.T) {
	testutil.RequirePrivileged(t)
	r := newRunRig(t, LoadOptions{SampleRate: 1})
	frame := mk.tcp4(t)
	want := mk.is(mk.ports(mk.ip4Sample(6, fx.v4A, fx.v4B), 40000, 443, fxSYN|fxECE|fxCWR), flow.OutcomeOK)
	hs := runHooks(t)
	lo := loopbackIndex(t)

	t.Run("xdp", func(t *testing.T) {
		h := hs[0]
		ctx := xdpMDCtx{DataEnd: uint32(len(frame)), IngressIfindex: lo}
		got := expectOneRecord(t, h, r.run(t, h, ebpf.RunOptions{Data: frame, Context: ctx}), flow.OutcomeOK, len(frame), 1)
		if diff := cmp.Diff(got, withCapture(want, h, frame, 1), sampleDiffOpts); diff != "" {
			t.Errorf("sample (-got +want):\n%s", diff)
		}
	})
	// BPF_PROG_RUN only looks the skb's device up; any interface will do.
	other := lo
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			if uint32(i.Index) != lo {
				other = uint32(i.Index)
				break
			}
		}
	}
	for _, h := range hs[1:] {
		t.Run(h.name+"/gso", func(t *testing.T) {
			h.ifindex = other
			lo0 := r.ifStats(t, lo, h.dir)
			var ctx skbRunCtx
			ctx[skbOffIfindex], ctx[skbOffGSOSegs], ctx[skbOffGSOSize] = other, 5, 1448
			got := expectOneRecord(t, h, r.run(t, h, ebpf.RunOptions{Data: frame, Context: ctx}), flow.OutcomeOK, len(frame), 5)
			w := withCapture(want, h, frame, 1)
			w.Segments = 5
			if diff := cmp.Diff(got, w, sampleDiffOpts); diff != "" {
				t.Errorf("sample (-got +want):\n%s", diff)
			}
			if lo1 := r.ifStats(t, lo, h.dir); other != lo && lo1 != lo0 {
				t.Errorf("a packet on ifindex %d moved the counters of ifindex %d: %+v -> %+v", other, lo, lo0, lo1)
			}
		})
	}
}
