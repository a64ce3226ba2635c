package sampler

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

// drain runs a Reader with a consumer that counts and releases batches.
type drain struct {
	r      *Reader
	n      atomic.Int64
	cancel context.CancelFunc
	done   chan struct{}
}

func startDrain(tb testing.TB, p *Programs, cfg ReaderConfig) *drain {
	tb.Helper()
	r, err := p.NewReader(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &drain{r: r, cancel: cancel, done: make(chan struct{})}
	out := make(chan []flow.Sample, 32)
	go func() {
		defer close(out)
		if err := r.Run(ctx, out); err != nil {
			tb.Error(err)
		}
	}()
	go func() {
		defer close(d.done)
		for b := range out {
			d.n.Add(int64(len(b)))
			r.Release(b)
		}
	}()
	tb.Cleanup(d.stop)
	return d
}

func (d *drain) stop() {
	d.cancel()
	<-d.done
}

// waitFor waits until the consumer has seen n samples in all.
func (d *drain) waitFor(tb testing.TB, n int64) {
	deadline := time.Now().Add(30 * time.Second)
	for d.n.Load() < n {
		if time.Now().After(deadline) {
			tb.Fatalf("consumer saw %d samples, want %d", d.n.Load(), n)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// BenchmarkRingToBatches measures the reader alone: the ring buffer is
// filled by BPF_PROG_RUN while the timer is stopped (and the reader
// asleep: no wakeups, a long flush interval), then the timer runs while
// the reader turns the records into flow.Sample batches on the channel.
func BenchmarkRingToBatches(b *testing.B) {
	testutil.RequirePrivileged(b)
	const ring = 64 << 20
	p, err := LoadPrograms(LoadOptions{SampleRate: 1, RingBufferSize: ring, WakeupBytes: ring})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	d := startDrain(b, p, ReaderConfig{BatchSize: 512, FlushInterval: time.Hour, SendTimeout: 10 * time.Second})
	frame := tcpSYN64()
	chunk := ring / (recordSize + 8) * 3 / 4
	b.ReportAllocs()
	b.ResetTimer()
	var done int64
	for done < int64(b.N) {
		n := min(int64(chunk), int64(b.N)-done)
		b.StopTimer()
		if _, _, err := p.objs.VigilXdp.Benchmark(frame, int(n), nil); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := d.r.Flush(); err != nil {
			b.Fatal(err)
		}
		done += n
		d.waitFor(b, done)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "samples/s")
	if st := d.r.Stats(); st.Dropped != 0 || st.BadRecords != 0 {
		b.Fatalf("reader dropped %d, bad %d", st.Dropped, st.BadRecords)
	}
}
