package sampler

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket/layers"
	"github.com/vigil-sensor/vigil/flow"
)

// capAt is a capture of one SYN frame at each offset from pcapEpoch.
func capAt(offsets ...time.Duration) []capPacket {
	pkts := capPackets(len(offsets))
	for i, off := range offsets {
		pkts[i].ci.Timestamp = pcapEpoch.Add(off)
	}
	return pkts
}

func writePcapFile(t *testing.T, pkts []capPacket) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ticks.pcap")
	if err := os.WriteFile(path, writePcap(t, pkts, layers.LinkTypeEthernet), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tickLog records what a source saw at each tick.
type tickLog struct {
	now       []int64
	packets   []uint64
	delivered []int // samples handed to the callback before the tick
}

// replayTicks reads path with ticks every tick, calling onTick (if any)
// after logging, and returns the log and the delivered samples.
func replayTicks(t *testing.T, path string, cfg PcapConfig, onTick func(src *PcapSource, n int)) (tickLog, []flow.Sample) {
	t.Helper()
	var log tickLog
	var got []flow.Sample
	var src *PcapSource
	cfg.OnTick = func(now int64, st InterfaceStats) {
		log.now = append(log.now, now)
		log.packets = append(log.packets, st.Packets)
		log.delivered = append(log.delivered, len(got))
		if st.Frames != st.Packets {
			t.Errorf("tick at %v: %d frames, %d packets", time.Unix(0, now), st.Frames, st.Packets)
		}
		if onTick != nil {
			onTick(src, len(log.now)-1)
		}
	}
	src, err := NewPcapSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = src.ReadFileFunc(context.Background(), path, func(b []flow.Sample) error {
		got = append(got, b...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return log, got
}

// Ticks fire at the first packet (at the multiple of Tick before it:
// every interval between ticks is a whole Tick) and at every multiple of
// Tick the
// capture's time reaches, also through 2.35 s without packets and
// whether or not any packet is sampled; each sees the packets before it,
// and the samples before it have all been delivered although the batch
// was far from full.
func TestPcapTicksFollowCaptureTime(t *testing.T) {
	const tick = 100 * time.Millisecond
	var offsets []time.Duration
	for i := range 1000 { // 30 ms .. 1.029 s
		offsets = append(offsets, 30*time.Millisecond+time.Duration(i)*time.Millisecond)
	}
	for i := range 500 { // 3.38 s .. 3.879 s: 2.35 s of silence before
		offsets = append(offsets, 3380*time.Millisecond+time.Duration(i)*time.Millisecond)
	}
	path := writePcapFile(t, capAt(offsets...))
	at := func(off time.Duration) int64 { return pcapEpoch.Add(off).UnixNano() }
	var wantNow []int64
	for k := 0; k <= 38; k++ { // 0 (the first packet, at 30 ms) .. 3.8 s
		wantNow = append(wantNow, at(time.Duration(k)*tick))
	}
	before := func(now int64) (n int) {
		for _, off := range offsets {
			if at(off) < now {
				n++
			}
		}
		return n
	}
	for _, rate := range []uint32{1, 1 << 31} {
		log, got := replayTicks(t, path, PcapConfig{SampleRate: rate, BatchSize: 1 << 16, Tick: tick}, nil)
		if diff := cmp.Diff(wantNow, log.now); diff != "" {
			t.Fatalf("rate %d: tick times (-want +got):\n%s", rate, diff)
		}
		if rate == 1 && len(got) != len(offsets) {
			t.Fatalf("rate 1: %d samples of %d packets", len(got), len(offsets))
		}
		for i, now := range log.now {
			if want := before(now); log.packets[i] != uint64(want) {
				t.Errorf("rate %d, tick %d: %d packets counted, %d precede it", rate, i, log.packets[i], want)
			}
			var want int
			for _, s := range got {
				if s.Timestamp < now {
					want++
				}
			}
			if log.delivered[i] != want {
				t.Errorf("rate %d, tick %d: %d samples delivered, %d were taken before it", rate, i, log.delivered[i], want)
			}
		}
	}
}

// A rate set at a tick applies from the packet that crossed it: here
// every other 100 ms is sampled 1 in 1, the others 1 in 2^31, and every
// sample says which.
func TestPcapTickSetsRate(t *testing.T) {
	var offsets []time.Duration
	for i := range 2000 {
		offsets = append(offsets, time.Duration(i)*500*time.Microsecond) // 1 s
	}
	path := writePcapFile(t, capAt(offsets...))
	rateOf := func(k int) uint32 {
		if k%2 == 0 {
			return 1
		}
		return 1 << 31
	}
	log, got := replayTicks(t, path, PcapConfig{SampleRate: 7, Tick: 100 * time.Millisecond}, func(src *PcapSource, k int) {
		src.SetSampleRate(rateOf(k))
	})
	if len(log.now) != 10 {
		t.Fatalf("%d ticks, want 10 (the first packet, then 100 ms .. 900 ms)", len(log.now))
	}
	var perTick [10]int
	for _, s := range got {
		k, _ := slices.BinarySearch(log.now, s.Timestamp+1)
		k-- // the last tick at or before the sample
		if s.SamplingRate != rateOf(k) {
			t.Fatalf("sample at %v carries rate %d, tick %d set %d", s.Time(), s.SamplingRate, k, rateOf(k))
		}
		perTick[k]++
	}
	for k, n := range perTick {
		if rateOf(k) == 1 && n != 200 {
			t.Errorf("tick %d at 1 in 1: %d samples of 200 packets", k, n)
		}
	}
}

// Out-of-order packets fire no tick; a gap longer than maxTickGap ticks
// fires maxTickGap of them and then the last multiple before the packet.
func TestPcapTickEdges(t *testing.T) {
	ms := time.Millisecond
	at := func(off time.Duration) int64 { return pcapEpoch.Add(off).UnixNano() }

	path := writePcapFile(t, capAt(0, 250*ms, 120*ms, 260*ms, 310*ms))
	log, _ := replayTicks(t, path, PcapConfig{Tick: 100 * ms}, nil)
	if diff := cmp.Diff([]int64{at(0), at(100 * ms), at(200 * ms), at(300 * ms)}, log.now); diff != "" {
		t.Errorf("out of order: tick times (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint64{0, 1, 1, 4}, log.packets); diff != "" {
		t.Errorf("out of order: packets at the ticks (-want +got):\n%s", diff)
	}

	last := time.Duration(maxTickGap+10)*ms + 500*time.Microsecond
	path = writePcapFile(t, capAt(0, last))
	log, _ = replayTicks(t, path, PcapConfig{Tick: ms}, nil)
	if len(log.now) != maxTickGap+2 {
		t.Fatalf("gap: %d ticks, want %d", len(log.now), maxTickGap+2)
	}
	if got, want := log.now[maxTickGap], at(maxTickGap*ms); got != want {
		t.Errorf("gap: tick %d at %v, want %v", maxTickGap, time.Unix(0, got), time.Unix(0, want))
	}
	if got, want := log.now[maxTickGap+1], at(last.Truncate(ms)); got != want {
		t.Errorf("gap: last tick at %v, want %v", time.Unix(0, got), time.Unix(0, want))
	}

	if _, err := NewPcapSource(PcapConfig{Tick: -ms}); err == nil {
		t.Error("negative tick accepted")
	}
	src, err := NewPcapSource(PcapConfig{OnTick: func(int64, InterfaceStats) { t.Error("tick without Tick") }})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.ReadFileFunc(context.Background(), path, func([]flow.Sample) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestFloorTick(t *testing.T) {
	for _, c := range []struct{ ts, want int64 }{{0, 0}, {99, 0}, {100, 100}, {250, 200}, {-1, -100}, {-100, -100}, {-101, -200}} {
		if got := floorTick(c.ts, 100); got != c.want {
			t.Errorf("floorTick(%d, 100) = %d, want %d", c.ts, got, c.want)
		}
	}
}

// Read, the channel path, hands out the samples before a tick the same
// way: when OnTick runs, every batch taken before it is in the channel.
// OnTick runs on the reading goroutine, so it drains the channel itself.
func TestPcapTicksOnReadChannel(t *testing.T) {
	var offsets []time.Duration
	for i := range 1000 {
		offsets = append(offsets, 30*time.Millisecond+time.Duration(i)*time.Millisecond)
	}
	path := writePcapFile(t, capAt(offsets...))
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := make(chan []flow.Sample, 1024)
	var got []flow.Sample
	drain := func() {
		for {
			select {
			case b := <-out:
				got = append(got, b...)
			default:
				return
			}
		}
	}
	var now []int64
	var delivered []int
	src, err := NewPcapSource(PcapConfig{SampleRate: 1, BatchSize: 1 << 16, Tick: 100 * time.Millisecond,
		OnTick: func(n int64, _ InterfaceStats) {
			drain()
			now = append(now, n)
			delivered = append(delivered, len(got))
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Read(context.Background(), f, out); err != nil {
		t.Fatal(err)
	}
	drain()
	if len(got) != len(offsets) || len(now) != 11 { // 0, 100 ms .. 1 s
		t.Fatalf("%d samples of %d packets, %d ticks (want 11)", len(got), len(offsets), len(now))
	}
	for i, n := range now {
		var want int
		for _, s := range got {
			if s.Timestamp < n {
				want++
			}
		}
		if delivered[i] != want {
			t.Errorf("tick %d at %v: %d samples in the channel, %d were taken before it", i, time.Unix(0, n), delivered[i], want)
		}
	}
}
