package kafka

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/vigil-sensor/vigil/export/exporttest"
)

// BenchmarkKafkaEncode measures one spool item per op: the record key,
// the headers' source and the value, appended into a reused buffer.
func BenchmarkKafkaEncode(b *testing.B) {
	rec := testFlowV4
	alert := testAlert
	ifname := func(uint32) string { return "eth0" }
	for _, format := range []string{FormatJSON, FormatProtobuf} {
		o := DefaultConfig()
		o.Format = format
		e, err := NewEncoder(o, "edge-sensor-01", ifname)
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 0, 4096)
		b.Run("flow/"+format, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf = e.AppendFlow(buf[:0], &rec)
			}
			b.ReportMetric(float64(len(buf)), "B/item")
		})
		b.Run("alert/"+format, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf = e.AppendAlert(buf[:0], &alert)
			}
			b.ReportMetric(float64(len(buf)), "B/item")
		})
	}
}

// BenchmarkKafkaProduce measures Transport end to end against an
// in-process kfake broker on loopback, one core shared by producer and
// broker (GOMAXPROCS 1), 1000 flow items per Send from 4 sensors, snappy
// compressed (the default). The broker acknowledges without storing
// (kfake.BlackholeProduce), so the figure is the producer's cost plus
// the broker's request handling. One op is one record.
func BenchmarkKafkaProduce(b *testing.B) {
	for _, format := range []string{FormatJSON, FormatProtobuf} {
		b.Run(format, func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			c := newKafkaCluster(b, kfake.NumBrokers(1), kfake.BlackholeProduce())
			o := kafkaTestOptions(c.ListenAddrs())
			o.Format = format
			tr := newTestKafkaTransport(b, o)
			const batch = 1000
			items := make([][]byte, batch)
			var bytes int
			for i := range items {
				r := kafkaTestFlow(i%4, i)
				items[i] = newTestKafkaEncoderFor(b, o, fmt.Sprintf("host-%d", i%4)).AppendFlow(nil, &r)
				bytes += len(items[i])
			}
			ctx := context.Background()
			if n, err := tr.Send(ctx, items); err != nil || n != batch { // connect outside the timing
				b.Fatalf("warm-up Send = %d, %v", n, err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(bytes / batch))
			b.ResetTimer()
			for sent := 0; sent < b.N; sent += batch {
				chunk := items[:min(batch, b.N-sent)]
				if n, err := tr.Send(ctx, chunk); err != nil || n != len(chunk) {
					b.Fatalf("Send = %d, %v", n, err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkSinkKafka is a whole sink (exporttest.BenchSink) producing to
// kfake: "stored" keeps the records in the fake broker (its work shares
// the core), "blackhole" acknowledges and discards them, leaving the
// client's cost.
func BenchmarkSinkKafka(b *testing.B) {
	for _, bc := range []struct {
		name, format string
		opts         []kfake.Opt
	}{
		{"json/stored", FormatJSON, nil},
		{"protobuf/stored", FormatProtobuf, nil},
		{"json/blackhole", FormatJSON, []kfake.Opt{kfake.BlackholeProduce()}},
		{"protobuf/blackhole", FormatProtobuf, []kfake.Opt{kfake.BlackholeProduce()}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := newKafkaCluster(b, append([]kfake.Opt{kfake.NumBrokers(1)}, bc.opts...)...)
			o := kafkaTestOptions(c.ListenAddrs())
			o.Format = bc.format
			exporttest.BenchSink(b, newTestKafkaEncoder(b, o), newTestKafkaTransport(b, o), exporttest.Flows(1024))
		})
	}
}
