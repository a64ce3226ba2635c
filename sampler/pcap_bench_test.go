package sampler

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/vigil-sensor/vigil/flow"
)

// benchCapture is a capture of n frames in the proportions of an
// Internet mix (7 small : 4 medium : 1 full-size) over 12 flows, one
// packet every 10 µs, as a pcap file (nanosecond timestamps) or a pcapng
// file.
func benchCapture(tb testing.TB, n int, ng bool) []byte {
	tb.Helper()
	var k frameKit
	var frames [][]byte
	for i := range 12 {
		sport := uint16(40000 + i)
		switch {
		case i < 7:
			frames = append(frames, k.build(tb, k.eth(layers.EthernetTypeIPv4), k.ip4(layers.IPProtocolTCP, fx.v4A, fx.v4B), k.tcp(sport, 443, fxACK)))
		case i < 11:
			frames = append(frames, k.build(tb, k.eth(layers.EthernetTypeIPv4), k.ip4(layers.IPProtocolUDP, fx.v4A, fx.v4B), k.udp(sport, 53), k.payload(540)))
		default:
			frames = append(frames, k.build(tb, k.eth(layers.EthernetTypeIPv6), k.ip6(layers.IPProtocolTCP, fx.v6A, fx.v6B), k.tcp(sport, 443, fxACK), k.payload(1440)))
		}
	}
	var buf bytes.Buffer
	var write func(gopacket.CaptureInfo, []byte) error
	flush := func() error { return nil }
	if ng {
		w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
		if err != nil {
			tb.Fatal(err)
		}
		write, flush = w.WritePacket, w.Flush
	} else {
		w := pcapgo.NewWriterNanos(&buf)
		if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
			tb.Fatal(err)
		}
		write = w.WritePacket
	}
	for i := range n {
		f := frames[i%len(frames)]
		ci := gopacket.CaptureInfo{Timestamp: pcapEpoch.Add(time.Duration(i) * 10 * time.Microsecond), CaptureLength: len(f), Length: len(f)}
		if err := write(ci, f); err != nil {
			tb.Fatal(err)
		}
	}
	if err := flush(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkPcapSource measures the offline source alone: reading the
// capture from memory, parsing every frame, the sampling draw and the
// batches handed to a callback that keeps nothing (ReadFileFunc's reuse
// path). One operation is one pass over the capture; ns/packet and
// allocs/packet divide by its packets. The tick variant steps a no-op
// OnTick every millisecond of capture time (one tick per 100 packets).
func BenchmarkPcapSource(b *testing.B) {
	const n = 1 << 15
	for _, format := range []string{"pcap", "pcapng"} {
		capture := benchCapture(b, n, format == "pcapng")
		for _, v := range []struct {
			rate uint32
			tick time.Duration
		}{{1, 0}, {100, 0}, {100, time.Millisecond}} {
			name := fmt.Sprintf("%s/rate=%d", format, v.rate)
			if v.tick > 0 {
				name += "/tick=" + v.tick.String()
			}
			b.Run(name, func(b *testing.B) {
				var samples, ticks uint64
				onTick := func(int64, InterfaceStats) { ticks++ }
				emit := func(batch []flow.Sample) error { samples += uint64(len(batch)); return nil }
				var ms0, ms1 runtime.MemStats
				b.SetBytes(int64(len(capture)))
				b.ReportAllocs()
				runtime.ReadMemStats(&ms0)
				b.ResetTimer()
				for b.Loop() {
					src, err := NewPcapSource(PcapConfig{SampleRate: v.rate, Seed: 1, Tick: v.tick, OnTick: onTick})
					if err != nil {
						b.Fatal(err)
					}
					if err := src.read(bytes.NewReader(capture), emit, true); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				runtime.ReadMemStats(&ms1)
				pkts := float64(b.N) * n
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/pkts, "ns/packet")
				b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/pkts, "allocs/packet")
				if samples == 0 || (v.tick > 0) != (ticks > 0) {
					b.Fatalf("%d samples, %d ticks", samples, ticks)
				}
			})
		}
	}
}
