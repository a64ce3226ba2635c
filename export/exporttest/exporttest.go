// Package exporttest holds what the tests of the transport packages
// share: varied flow records and a benchmark of a whole spooled sink.
package exporttest

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/export/spool"
	"github.com/vigil-sensor/vigil/flow"
)

// BenchSink measures records per second through a whole sink: encode
// into the spool on disk (fsync every second, the default), read back,
// send, acknowledge. Records go in batches of len(recs) (1024: as the
// flow table expires them); the clock stops when the upstream has
// taken them all.
func BenchSink(b *testing.B, enc export.Encoder, tr export.Transport, recs []flow.Record) {
	sp, err := spool.Open(b.TempDir(), spool.Options{MaxBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	s := export.NewSink("bench", enc, tr, sp, export.SinkOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for n < b.N {
		batch := recs[:min(len(recs), b.N-n)]
		if err := s.WriteFlows(batch); err != nil {
			b.Fatal(err)
		}
		n += len(batch)
	}
	deadline := time.Now().Add(time.Minute)
	for s.Stats().Sent < uint64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("sent %d of %d in a minute: %+v", s.Stats().Sent, b.N, s.Stats())
		}
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(s.Stats().Spool.Appended)/float64(b.N), "spooled/record")
	cancel()
	<-done
	s.Close(context.Background())
}

// testBase is a start time with sub-millisecond digits, so that
// tests see IPFIX truncate it to milliseconds.
var testBase = time.Date(2026, 3, 4, 5, 6, 7, 891_234_567, time.UTC).UnixNano()

// Flow returns a varied flow whose samples were all taken at
// rate: TCP, UDP, ICMP and GRE; both directions; VLAN tags; every end
// reason.
func Flow(i int, v6 bool, rate uint32) flow.Record {
	var k flow.Key
	if v6 {
		k.IPVersion = 6
		k.SrcAddr = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", 0x100+i)).As16()
		k.DstAddr = netip.MustParseAddr(fmt.Sprintf("2001:db8:ffff::%x", 0x200+i)).As16()
	} else {
		k.IPVersion = 4
		k.SrcAddr = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).As16()
		k.DstAddr = netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).As16()
	}
	var flags uint8
	switch i % 4 {
	case 0:
		k.Proto, k.SrcPort, k.DstPort = 6, uint16(40000+i), 443
		flags = flow.TCPSyn | flow.TCPAck | flow.TCPFin
	case 1:
		k.Proto, k.SrcPort, k.DstPort = 17, 53, uint16(1024+i*7)
	case 2:
		k.Proto, k.DstPort = 1, 8<<8 // echo request
		if v6 {
			k.Proto, k.DstPort = 58, 128<<8 // echo request, code 0
		}
	case 3:
		k.Proto = 47
	}
	k.Ifindex = uint32(2 + i%5)
	if i%4 == 3 {
		k.Direction = flow.Egress
	}
	if i%3 == 0 {
		k.VLAN = uint16(100 + i)
		if i%2 == 0 {
			k.InnerVLAN = uint16(2000 + i)
		}
	}
	sp := uint64(1 + i*3)
	sb := sp * uint64(60+i*11)
	start := testBase + int64(i)*1_234_567
	return flow.Record{
		Key:            k,
		Start:          start,
		End:            start + int64(i)*98_765_432 + 999_999,
		SampledPackets: sp,
		SampledBytes:   sb,
		Packets:        sp * uint64(rate),
		Bytes:          sb * uint64(rate),
		Samples:        sp,
		RateSum:        sp * uint64(rate),
		TCPFlags:       flags,
		TOS:            uint8(i * 4),
		MinTTL:         uint8(30 + i%20),
		MaxTTL:         uint8(60 + i%40),
		EndReason:      flow.EndReasons[i%len(flow.EndReasons)],
	}
}

// Flows is a mix of n flows: a quarter IPv6, TCP, UDP, ICMP and GRE,
// sampled 1 in 100.
func Flows(n int) []flow.Record {
	recs := make([]flow.Record, n)
	for i := range recs {
		recs[i] = Flow(i%200, i%4 == 0, 100)
	}
	return recs
}
