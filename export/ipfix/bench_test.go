package ipfix

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/export/exporttest"
	"github.com/vigil-sensor/vigil/flow"
)

// ipfixBenchRecords is exporttest.Flows: a quarter IPv6, TCP, UDP,
// ICMP and GRE, sampled 1 in 100.
func ipfixBenchRecords(n int) []flow.Record { return exporttest.Flows(n) }

// BenchmarkIPFIXEncode is the encoder's cost per record, with the item
// size and, for comparison, the size of the same record as a JSON line
// (AppendFlowJSON and its newline).
func BenchmarkIPFIXEncode(b *testing.B) {
	recs := ipfixBenchRecords(1024)
	enc := NewEncoder()
	buf := make([]byte, 0, 256)
	var itemBytes, jsonBytes int
	for i := range recs {
		itemBytes += len(enc.AppendFlow(buf[:0], &recs[i]))
		jsonBytes += len(export.AppendFlowJSON(buf[:0], &recs[i], nil)) + 1
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		buf = enc.AppendFlow(buf[:0], &recs[i%len(recs)])
	}
	b.ReportMetric(float64(itemBytes)/float64(len(recs)), "item-B/flow")
	b.ReportMetric(float64(jsonBytes)/float64(len(recs)), "json-B/flow")
}

// BenchmarkIPFIXSendUDP encodes records and sends them through the UDP
// transport, in batches of 256 as the pipeline does, to a loopback
// socket that reads them. wire-B/flow is IPFIX message bytes (headers,
// templates and selector records included) per flow, without the 28
// bytes of IPv4 and UDP headers per datagram; json-B/flow is the same
// records as JSON lines.
func BenchmarkIPFIXSendUDP(b *testing.B) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	uc := pc.(*net.UDPConn)
	_ = uc.SetReadBuffer(8 << 20)
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, err := uc.Read(buf); err != nil {
				return
			}
		}
	}()
	benchIPFIXSend(b, newTransport("udp", pc.LocalAddr().String(), options{}))
}

// BenchmarkIPFIXSendTCP is the same over TCP, where every Send waits
// for the collector's kernel to acknowledge its bytes.
func BenchmarkIPFIXSendTCP(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	benchIPFIXSend(b, newTransport("tcp", ln.Addr().String(), options{}))
}

func benchIPFIXSend(b *testing.B, tr *Transport) {
	defer tr.Close()
	const batch = 256
	recs := ipfixBenchRecords(batch * 4)
	enc := NewEncoder()
	buf := make([]byte, 0, batch*128)
	items := make([][]byte, 0, batch)
	var jsonBytes int
	for i := range recs {
		jsonBytes += len(export.AppendFlowJSON(buf[:0], &recs[i], nil)) + 1
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	flows := 0
	for b.Loop() {
		buf, items = buf[:0], items[:0]
		for range batch {
			n := len(buf)
			buf = enc.AppendFlow(buf, &recs[flows%len(recs)])
			items = append(items, buf[n:])
			flows++
		}
		if n, err := tr.Send(ctx, items); err != nil || n != len(items) {
			b.Fatalf("Send = %d, %v", n, err)
		}
	}
	b.ReportMetric(float64(flows)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(tr.wireBytes)/float64(flows), "wire-B/flow")
	b.ReportMetric(float64(jsonBytes)/float64(len(recs)), "json-B/flow")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(flows), "ns/flow")
}

// BenchmarkSinkIPFIXUDP is a whole sink (exporttest.BenchSink) over UDP
// to a loopback socket that reads and drops.
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
	c := DefaultConfig()
	c.Address = pc.LocalAddr().String()
	exporttest.BenchSink(b, NewEncoder(), NewTransport(c, export.Dependencies{}), ipfixBenchRecords(1024))
}
