package sampler

import (
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

// emptyXDP is the baseline: a program that only returns XDP_PASS.
func emptyXDP(tb testing.TB) *ebpf.Program {
	tb.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		License:      "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
	})
	if err != nil {
		tb.Fatalf("loading empty XDP program: %v", err)
	}
	tb.Cleanup(func() { prog.Close() })
	return prog
}

func tcpSYN64() []byte {
	f := make([]byte, 64)
	copy(f, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00})
	ip := f[14:]
	ip[0] = 0x45
	ip[3] = 50 - 14 + 0 // total length 40 (20 IP + 20 TCP)
	ip[2], ip[3] = 0, 40
	ip[8] = 64
	ip[9] = 6
	copy(ip[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	tcp := ip[20:]
	tcp[0], tcp[1], tcp[2], tcp[3] = 0x30, 0x39, 0, 80
	tcp[12] = 5 << 4
	tcp[13] = 0x02
	return f
}

func BenchmarkXDPProgRun(b *testing.B) {
	testutil.RequirePrivileged(b)
	frame := tcpSYN64()
	run := func(b *testing.B, prog *ebpf.Program) {
		b.ResetTimer()
		_, d, err := prog.Benchmark(frame, b.N, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(d.Nanoseconds()), "kernel-ns/packet")
	}
	b.Run("empty", func(b *testing.B) { run(b, emptyXDP(b)) })
	for _, n := range []uint32{1, 100, 1000} {
		p, err := LoadPrograms(LoadOptions{SampleRate: n, Decap: DecapVXLAN | DecapGENEVE})
		if err != nil {
			b.Fatal(err)
		}
		// The reader drains the ring on the other core, as in production,
		// so that N=1 measures submitting, not finding the ring full.
		d := startDrain(b, p, ReaderConfig{})
		b.Run(fmt.Sprintf("vigil/N=%d", n), func(b *testing.B) { run(b, p.objs.VigilXdp) })
		d.stop()
		if st, err := p.Stats(); err != nil || st.RingbufFull != 0 {
			b.Logf("N=%d: ring buffer full %d times (%v)", n, st.RingbufFull, err)
		}
		p.Close()
	}
}
