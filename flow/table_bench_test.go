package flow

import (
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// benchBatches returns batches of samples spread over the given number
// of flows, in the capture path's batch size.
func benchBatches(flows, batches int) [][]Sample {
	out := make([][]Sample, batches)
	n := 0
	for b := range out {
		batch := make([]Sample, 512)
		for i := range batch {
			f := (n * 7919) % flows // visit flows in a scattered order
			n++
			batch[i] = Sample{
				Timestamp:    t0.UnixNano() + int64(n),
				SrcAddr:      netip.AddrFrom4([4]byte{10, byte(f >> 16), byte(f >> 8), byte(f)}),
				DstAddr:      netip.AddrFrom4([4]byte{192, 0, 2, 1}),
				SrcPort:      uint16(f),
				DstPort:      443,
				Proto:        6,
				TCPFlags:     TCPAck,
				IPVersion:    4,
				WireLen:      1500,
				SamplingRate: 100,
				Segments:     1,
				TTL:          64,
				Ifindex:      2,
			}
		}
		out[b] = batch
	}
	return out
}

// BenchmarkFeederAdd measures samples per second into the table on one
// core, for flows the table already holds (the steady path).
func BenchmarkFeederAdd(b *testing.B) {
	for _, flows := range []int{1000, 100_000} {
		b.Run(strconv.Itoa(flows)+"flows", func(b *testing.B) {
			tab, _ := newTable(b, DefaultConfig())
			f := tab.NewFeeder()
			batches := benchBatches(flows, 256)
			for _, batch := range batches { // warm: every flow exists
				f.Add(batch)
			}
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				f.Add(batches[i%len(batches)])
				i++
			}
			b.ReportMetric(float64(i*512)/b.Elapsed().Seconds(), "samples/s")
			b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(i*512), "ns/sample")
		})
	}
}

// BenchmarkFeederAddParallel feeds the table as the daemon does with
// two workers: each goroutine gets every batch, in order, and accounts
// its own half of the shards.
func BenchmarkFeederAddParallel(b *testing.B) {
	tab, _ := newTable(b, DefaultConfig())
	batches := benchBatches(100_000, 256)
	w := tab.NewFeeder()
	for _, batch := range batches {
		w.Add(batch)
	}
	const workers = 2
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for p := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := tab.NewPartFeeder(p, workers)
			for i := range b.N {
				f.Add(batches[i%len(batches)])
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N*512)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkFeederChurn: every sample is a new flow and the table is at
// its bound, so each one evicts another (the worst case: a spoofed
// flood).
func BenchmarkFeederChurn(b *testing.B) {
	cfg := DefaultConfig()
	cfg.MaxFlows = 100_000
	tab, _ := newTable(b, cfg)
	f := tab.NewFeeder()
	batches := benchBatches(1<<24, 1024)
	emit := func([]Record) {}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		batch := batches[i%len(batches)]
		for j := range batch {
			batch[j].Timestamp += int64(time.Millisecond) // keep keys new after wrapping
			batch[j].SrcPort++
		}
		f.Add(batch)
		tab.Expire(emit)
		i++
	}
	b.ReportMetric(float64(i*512)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkMillionFlows holds one million active flows and reports the
// memory they take: Go heap in use and the process's resident set.
// Run it alone: go test -run '^$' -bench MillionFlows -benchtime 1x ./flow
func BenchmarkMillionFlows(b *testing.B) {
	const flows = 1_000_000
	for b.Loop() {
		runtime.GC()
		debug.FreeOSMemory()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		rssBefore := rss()

		cfg := DefaultConfig()
		cfg.MaxFlows = flows
		tab, _ := newTable(b, cfg)
		f := tab.NewFeeder()
		batch := make([]Sample, 512)
		for n := 0; n < flows; {
			for i := range batch {
				batch[i] = Sample{
					Timestamp: t0.UnixNano(), SrcAddr: netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}),
					DstAddr: netip.AddrFrom4([4]byte{192, 0, 2, byte(n >> 24)}), SrcPort: uint16(n), DstPort: 80,
					Proto: 6, IPVersion: 4, WireLen: 100, SamplingRate: 1, Segments: 1,
				}
				n++
			}
			f.Add(batch)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if st := tab.Stats(); st.Active != flows {
			b.Fatalf("%d active flows, want %d", st.Active, flows)
		}
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/flows, "heap-B/flow")
		b.ReportMetric(float64(rss()-rssBefore)/(1<<20), "rss-delta-MiB")
		b.ReportMetric(float64(rss())/(1<<20), "rss-MiB")
		runtime.KeepAlive(tab)
	}
}

// rss returns the process's resident set size in bytes.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}
