package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-sensor/vigil/flow"
)

func record(src, dst string) flow.Record {
	s := flow.Sample{SrcAddr: netip.MustParseAddr(src), DstAddr: netip.MustParseAddr(dst), IPVersion: 4}
	if s.SrcAddr.Is6() {
		s.IPVersion = 6
	}
	k := flow.KeyOf(&s)
	return flow.Record{Key: k}
}

func TestFlowJSONSchema(t *testing.T) {
	start := time.Date(2026, 11, 22, 10, 0, 0, 123, time.UTC)
	r := record("192.0.2.10", "198.51.100.7")
	r.Key.SrcPort, r.Key.DstPort, r.Key.Proto, r.Key.Ifindex = 51514, 443, 6, 2
	r.Key.VLAN, r.Key.Tunnel, r.Key.VNI = 100, flow.TunnelVXLAN, 0
	r.Start, r.End = start.UnixNano(), start.Add(4250*time.Millisecond).UnixNano()
	r.Packets, r.Bytes, r.SampledPackets, r.SampledBytes = 1200, 1456000, 12, 14560
	r.Samples, r.RateSum = 12, 1200
	// 12 samples at 1-in-100 of up to 1,500 bytes: what the table keeps
	// for their intervals.
	r.PacketsVar, r.MaxPacketsW = 12*100*99, 99
	r.BytesVar, r.MaxBytesW = 100*99*(6*1500*1500+6*927*927), 99*1500
	pi, bi := r.PacketsEstimate().Interval(), r.BytesEstimate().Interval()
	if pi.Lo >= r.Packets || pi.Hi <= r.Packets || bi.Lo >= r.Bytes || bi.Hi <= r.Bytes {
		t.Fatalf("intervals %v and %v do not surround the estimates: the test needs sampled counts", pi, bi)
	}
	r.TCPFlags, r.TOS, r.MinTTL, r.MaxTTL, r.EndReason = 27, 0x28, 57, 60, flow.EndTCP

	ifname := func(i uint32) string { return map[uint32]string{2: "eth0"}[i] }
	v6 := record("2001:db8::1", "2001:db8::2")
	v6.Key.Direction, v6.Key.Proto, v6.EndReason = flow.Egress, 58, flow.EndIdle
	lines := [][]byte{AppendFlowJSON(nil, &r, ifname), AppendFlowJSON(nil, &v6, ifname)}
	for _, l := range lines {
		if bytes.ContainsAny(l, "\n") {
			t.Fatalf("a flow's JSON holds a newline: %s", l)
		}
	}
	var got map[string]any
	if err := json.Unmarshal(lines[0], &got); err != nil {
		t.Fatalf("line is not JSON: %v\n%s", err, lines[0])
	}
	if !bytes.Contains(lines[0], []byte(`"bytes":1456000,"packets_lo":`)) {
		t.Errorf("the intervals do not follow \"bytes\":\n%s", lines[0])
	}
	want := map[string]any{
		"kind": "flow", "start": "2026-11-22T10:00:00.000000123Z", "end": "2026-11-22T10:00:04.250000123Z",
		"interface": "eth0", "ifindex": 2.0, "direction": "ingress", "ip_version": 4.0,
		"src_addr": "192.0.2.10", "dst_addr": "198.51.100.7", "src_port": 51514.0, "dst_port": 443.0, "proto": 6.0,
		"packets": 1200.0, "bytes": 1456000.0, "sampled_packets": 12.0, "sampled_bytes": 14560.0,
		"packets_lo": float64(pi.Lo), "packets_hi": float64(pi.Hi), "bytes_lo": float64(bi.Lo), "bytes_hi": float64(bi.Hi),
		"sampling_rate": 100.0, "tcp_flags": 27.0, "tos": 40.0, "ttl_min": 57.0, "ttl_max": 60.0,
		"vlan": 100.0, "tunnel": "vxlan", "vni": 0.0, "end_reason": "tcp_end",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("flow JSON (-want +got):\n%s", diff)
	}
	var got6 map[string]any
	if err := json.Unmarshal(lines[1], &got6); err != nil {
		t.Fatal(err)
	}
	// Nothing sampled: the intervals are empty at 0.
	for k, v := range map[string]any{"src_addr": "2001:db8::1", "ip_version": 6.0, "direction": "egress", "interface": "", "end_reason": "idle", "sampling_rate": 0.0,
		"packets_lo": 0.0, "packets_hi": 0.0, "bytes_lo": 0.0, "bytes_hi": 0.0} {
		if got6[k] != v {
			t.Errorf("v6 %s = %v, want %v", k, got6[k], v)
		}
	}
	for _, k := range []string{"vlan", "inner_vlan", "vni", "tunnel"} {
		if _, ok := got6[k]; ok {
			t.Errorf("v6 record has %q, which must be omitted when unset", k)
		}
	}
}

func TestJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "eth0", `we"ird\name`, "tab\there", "\x00\x1f\x7f", "ünï", "bad\xffutf8", "<html>&"} {
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("%q encodes to invalid JSON %s: %v", s, got, err)
			continue
		}
		want, _ := json.Marshal(s)
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q round-trips to %q, encoding/json to %q", s, back, wantBack)
		}
	}
}

// BenchmarkAppendFlowJSON encodes a record of k samples taken at
// 1-in-100: its intervals cost more with more samples.
func BenchmarkAppendFlowJSON(b *testing.B) {
	for _, k := range []uint64{0, 1, 2, 12, 1000, 100_000} {
		b.Run(fmt.Sprintf("samples=%d", k), func(b *testing.B) {
			r := benchRecord(k)
			name := func(uint32) string { return "eth0" }
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendFlowJSON(buf[:0], &r, name)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

// benchRecord is a flow of k samples at 1-in-100, half of them 1,500
// bytes long and half 927, with what the table keeps for its intervals.
// With k 0 it is the record of earlier benchmarks: 1,200 packets, no
// variance, an interval that costs nothing.
func benchRecord(k uint64) flow.Record {
	r := record("192.0.2.10", "198.51.100.7")
	r.Packets, r.Bytes, r.Samples, r.RateSum, r.EndReason = 1200, 1456000, 12, 1200, flow.EndIdle
	if k == 0 {
		return r
	}
	r.Samples, r.RateSum = k, 100*k
	r.SampledPackets, r.SampledBytes = k, k/2*1500+(k-k/2)*927
	r.Packets, r.Bytes = 100*r.SampledPackets, 100*r.SampledBytes
	r.PacketsVar, r.MaxPacketsW = float64(k)*100*99, 99
	r.BytesVar, r.MaxBytesW = 100*99*(float64(k/2)*1500*1500+float64(k-k/2)*927*927), 99*1500
	return r
}

func TestAlertJSONSchema(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 1, 0, time.UTC)
	a := flow.Alert{
		ID: "syn_flood/203.0.113.9/1", Rule: "syn_flood", State: flow.AlertUpdate, Severity: flow.SeverityHigh,
		Key:  []flow.KeyValue{{Name: "dst_addr", Value: "203.0.113.9"}, {Name: "note", Value: "a \"quoted\"\nline"}},
		Time: at.UnixNano(), Start: at.Add(-time.Second).UnixNano(), End: at.UnixNano(),
		Packets: 100000, Bytes: 6400000, PacketsCI: flow.Interval{Lo: 98040, Hi: 101985}, BytesCI: flow.Interval{Lo: 6274560, Hi: 6527040}, PeakPPS: 100000.12345, PeakBPS: math.Inf(1), CurrentPPS: 99000, CurrentBPS: 50688000,
		CurrentPPSCI: flow.RateInterval{Lo: 97050.5, Hi: 100990.25}, CurrentBPSCI: flow.RateInterval{Lo: 49000000, Hi: 52000000.125},
		TopSources: []flow.Top{{Value: "198.51.100.1", Packets: 900}}, TopPorts: []flow.Top{{Value: "80", Packets: 1000}},
		SamplingRate: 100, Techniques: []string{"T1498.001"}, Service: "https", Summary: "SYN flood against 203.0.113.9",
	}
	line := AppendAlertJSON(nil, &a)
	if bytes.ContainsAny(line, "\n") {
		t.Fatalf("an alert's JSON holds a newline: %s", line)
	}
	var got map[string]any
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("alert line is not JSON: %v\n%s", err, line)
	}
	if !bytes.Contains(line, []byte(`"bytes":6400000,"packets_lo":98040,"packets_hi":101985,"bytes_lo":6274560,"bytes_hi":6527040,`)) {
		t.Errorf("the intervals do not follow \"bytes\" in order:\n%s", line)
	}
	want := map[string]any{
		"kind": "alert", "id": "syn_flood/203.0.113.9/1", "rule": "syn_flood", "state": "update", "severity": "high",
		"key":  map[string]any{"dst_addr": "203.0.113.9", "note": "a \"quoted\"\nline"},
		"time": "2026-11-22T10:00:01.000000000Z", "start": "2026-11-22T10:00:00.000000000Z", "end": "2026-11-22T10:00:01.000000000Z",
		"packets": 100000.0, "bytes": 6400000.0, "packets_lo": 98040.0, "packets_hi": 101985.0, "bytes_lo": 6274560.0, "bytes_hi": 6527040.0,
		"peak_pps": 100000.123, "peak_bps": 0.0, "current_pps": 99000.0, "current_bps": 50688000.0,
		"current_pps_lo": 97050.5, "current_pps_hi": 100990.25, "current_bps_lo": 49000000.0, "current_bps_hi": 52000000.125,
		"top_sources":      []any{map[string]any{"value": "198.51.100.1", "packets": 900.0}},
		"top_destinations": []any{},
		"top_ports":        []any{map[string]any{"value": "80", "packets": 1000.0}},
		"sampling_rate":    100.0, "techniques": []any{"T1498.001"}, "service": "https", "summary": "SYN flood against 203.0.113.9",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("alert JSON (-want +got):\n%s", diff)
	}
}
