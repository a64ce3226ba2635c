package sampler

import (
	"context"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

// A consumer that does not keep up loses batches, and every lost sample
// is counted: decoded = delivered + dropped.
func TestReaderCountsDropsWhenDownstreamIsSlow(t *testing.T) {
	testutil.RequirePrivileged(t)
	p, err := LoadPrograms(LoadOptions{SampleRate: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	r, err := p.NewReader(ReaderConfig{BatchSize: 64, FlushInterval: 5 * time.Millisecond, SendTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	if _, _, err := p.objs.VigilXdp.Benchmark(tcpSYN64(), n, nil); err != nil {
		t.Fatal(err)
	}
	out := make(chan []flow.Sample, 2) // nobody reads until the reader is done
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, out) }()

	deadline := time.Now().Add(10 * time.Second)
	for r.Stats().Samples < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(out)
	var delivered uint64
	for b := range out {
		delivered += uint64(len(b))
	}
	st := r.Stats()
	if st.Samples != n {
		t.Fatalf("decoded %d samples, want %d", st.Samples, n)
	}
	if st.Dropped == 0 {
		t.Fatal("no drops counted with a stuck consumer")
	}
	if delivered+st.Dropped != n {
		t.Errorf("delivered %d + dropped %d != %d decoded", delivered, st.Dropped, n)
	}
	if delivered != 2*64 {
		t.Errorf("delivered %d samples, want the two batches the channel holds (128)", delivered)
	}
}

// The flush interval sends a partial batch: a lone sample does not wait
// for the batch to fill.
func TestReaderFlushesPartialBatch(t *testing.T) {
	testutil.RequirePrivileged(t)
	p, err := LoadPrograms(LoadOptions{SampleRate: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	r, err := p.NewReader(ReaderConfig{BatchSize: 512, FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan []flow.Sample, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, out) //nolint:errcheck // ends with ctx
	if _, _, err := p.objs.VigilXdp.Benchmark(tcpSYN64(), 3, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-out:
		if len(b) != 3 {
			t.Errorf("partial batch of %d samples, want 3", len(b))
		}
		if b[0].SrcPort != 12345 || b[0].DstPort != 80 || b[0].TCPFlags != 0x02 {
			t.Errorf("sample %+v is not the SYN that was sent", b[0])
		}
		if age := time.Since(b[0].Time()); age < 0 || age > 5*time.Second {
			t.Errorf("sample timestamp %v is %v away from now: monotonic to Unix conversion broken", b[0].Time(), age)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("partial batch never flushed")
	}
	if st := r.Stats(); st.TimerFlushes == 0 {
		t.Errorf("stats %+v: the flush timer sent nothing", st)
	}
}
