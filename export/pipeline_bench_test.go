package export

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/vigil-sensor/vigil/export/spool"
)

// benchSink measures records per second through a whole sink: encode
// into the spool on disk (fsync every second, the default), read back,
// send, acknowledge. Records go in batches of 1024, as the flow table
// expires them; the clock stops when the upstream has taken them all.
func benchSink(b *testing.B, enc Encoder, tr Transport) {
	sp, err := spool.Open(b.TempDir(), spool.Options{MaxBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	s := NewSink("bench", enc, tr, sp, SinkOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	recs := ipfixBenchRecords(1024)
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

func BenchmarkSinkIPFIXUDP(b *testing.B) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	_ = pc.(*net.UDPConn).SetReadBuffer(8 << 20)
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	benchSink(b, NewIPFIXEncoder(), NewIPFIXUDP(pc.LocalAddr().String(), IPFIXOptions{}))
}

// BenchmarkSinkKafka produces to kfake: "stored" keeps the records in
// the fake broker (its work shares the core), "blackhole" acknowledges
// and discards them, leaving the client's cost.
func BenchmarkSinkKafka(b *testing.B) {
	for _, bc := range []struct {
		name, format string
		opts         []kfake.Opt
	}{
		{"json/stored", KafkaFormatJSON, nil},
		{"protobuf/stored", KafkaFormatProtobuf, nil},
		{"json/blackhole", KafkaFormatJSON, []kfake.Opt{kfake.BlackholeProduce()}},
		{"protobuf/blackhole", KafkaFormatProtobuf, []kfake.Opt{kfake.BlackholeProduce()}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			format := bc.format
			c := newKafkaCluster(b, append([]kfake.Opt{kfake.NumBrokers(1)}, bc.opts...)...)
			o := kafkaTestOptions(c.ListenAddrs())
			o.Format = format
			benchSink(b, newTestKafkaEncoder(b, o), newTestKafkaTransport(b, o))
		})
	}
}

// BenchmarkSpoolAppendRead is the spool alone: append 1024 records of
// 100 bytes, read and acknowledge them.
func BenchmarkSpoolAppendRead(b *testing.B) {
	sp, err := spool.Open(b.TempDir(), spool.Options{MaxBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	items := make([][]byte, 1024)
	for i := range items {
		items[i] = make([]byte, 100)
	}
	var batch spool.Batch
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(100 * 1024)
	for b.Loop() {
		if err := sp.Append(items); err != nil {
			b.Fatal(err)
		}
		for sp.Pending() > 0 {
			if err := sp.Next(ctx, &batch, 512, 1<<20); err != nil {
				b.Fatal(err)
			}
			sp.Ack(&batch, len(batch.Items))
		}
	}
	b.ReportMetric(float64(b.N*len(items))/b.Elapsed().Seconds(), "records/s")
}
