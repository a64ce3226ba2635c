package export

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

// compileVigilProto compiles export/proto/vigil.proto with protoc and
// returns its descriptor: the published schema, not a Go copy of it.
func compileVigilProto(t *testing.T) protoreflect.FileDescriptor {
	t.Helper()
	protoc := testutil.RequireTool(t, "protoc")
	out := filepath.Join(t.TempDir(), "vigil.pb")
	cmd := exec.Command(protoc, "-I", "proto", "--include_imports", "--descriptor_set_out="+out, "proto/vigil.proto")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		t.Fatalf("reading descriptor set: %v", err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatalf("loading descriptor set: %v", err)
	}
	fd, err := files.FindFileByPath("vigil.proto")
	if err != nil {
		t.Fatal(err)
	}
	if got := fd.Package(); got != "vigil.v1" {
		t.Fatalf("package %q, want vigil.v1", got)
	}
	return fd
}

// decodeDynamic parses b as the message name of fd, strictly (proto3
// UTF-8 checks on), and fails on any unknown field: a field number or
// wire type the .proto does not declare shows up as unknown.
func pbDecode(t *testing.T, fd protoreflect.FileDescriptor, name protoreflect.Name, b []byte) *dynamicpb.Message {
	t.Helper()
	md := fd.Messages().ByName(name)
	if md == nil {
		t.Fatalf("message %s not in vigil.proto", name)
	}
	m := dynamicpb.NewMessage(md)
	if err := (proto.UnmarshalOptions{}).Unmarshal(b, m); err != nil {
		t.Fatalf("unmarshalling %s: %v", name, err)
	}
	pbCheckNoUnknown(t, m)
	return m
}

func pbCheckNoUnknown(t *testing.T, m protoreflect.Message) {
	t.Helper()
	if u := m.GetUnknown(); len(u) > 0 {
		t.Errorf("%s has fields the .proto does not declare: % x", m.Descriptor().FullName(), u)
	}
	m.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if f.Kind() == protoreflect.MessageKind && f.IsList() {
			for i := range v.List().Len() {
				pbCheckNoUnknown(t, v.List().Get(i).Message())
			}
		}
		return true
	})
}

// plain turns a message into Go values: enums by name, submessages as
// maps, lists as slices. Every declared field is present, set or not.
func pbPlain(m protoreflect.Message) map[string]any {
	out := make(map[string]any)
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		v := m.Get(f)
		if f.IsList() {
			l := v.List()
			vals := []any{}
			for j := range l.Len() {
				vals = append(vals, pbPlainValue(f, l.Get(j)))
			}
			out[string(f.Name())] = vals
			continue
		}
		out[string(f.Name())] = pbPlainValue(f, v)
	}
	return out
}

func pbPlainValue(f protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch f.Kind() {
	case protoreflect.EnumKind:
		ev := f.Enum().Values().ByNumber(v.Enum())
		if ev == nil {
			return fmt.Sprintf("unknown enum %d", v.Enum())
		}
		return string(ev.Name())
	case protoreflect.MessageKind:
		return pbPlain(v.Message())
	case protoreflect.BytesKind:
		return string(v.Bytes())
	}
	return v.Interface()
}

func pbCompare(t *testing.T, what string, got, want map[string]any) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: field %s is not in vigil.proto", what, name)
			continue
		}
		if fmt.Sprintf("%#v", g) != fmt.Sprintf("%#v", w) {
			t.Errorf("%s: %s = %#v, want %#v", what, name, g, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: vigil.proto field %s is not checked by this test", what, name)
		}
	}
}

func enumName(prefix string, s fmt.Stringer) string {
	return prefix + strings.ToUpper(s.String())
}

func pbTestFlows() []flow.Record {
	v4 := flow.Record{
		Key: flow.Key{
			SrcAddr: netip.MustParseAddr("192.0.2.10").As16(), DstAddr: netip.MustParseAddr("198.51.100.7").As16(),
			Ifindex: 2, SrcPort: 51514, DstPort: 443, Proto: 6, Direction: flow.Ingress, IPVersion: 4, VLAN: 100,
		},
		Start: 1_795_000_000_123_456_789, End: 1_795_000_004_250_000_000,
		SampledPackets: 12, SampledBytes: 14560, Packets: 1200, Bytes: 1456000, Samples: 12, RateSum: 1200,
		PacketsVar: 12 * 100 * 99, BytesVar: 12 * 100 * 99 * 1213 * 1213, MaxPacketsW: 99, MaxBytesW: 99 * 1213,
		TCPFlags: flow.TCPSyn | flow.TCPAck | flow.TCPFin | flow.TCPPsh, TOS: 0x10, MinTTL: 57, MaxTTL: 64, EndReason: flow.EndTCP,
	}
	v6 := flow.Record{
		Key: flow.Key{
			SrcAddr: netip.MustParseAddr("2001:db8::1").As16(), DstAddr: netip.MustParseAddr("2001:db8:ffff::abcd").As16(),
			Ifindex: 70000, VNI: 0xabcdef, SrcPort: 53, DstPort: 40000, Proto: 17, Direction: flow.Egress, IPVersion: 6,
			VLAN: 4094, InnerVLAN: 7, Tunnel: flow.TunnelGENEVE,
		},
		Start: 1_795_000_000_000_000_000, End: 1_795_000_060_000_000_001,
		SampledPackets: 3, SampledBytes: 300, Packets: 3 << 40, Bytes: 1 << 62, Samples: 3, RateSum: 3001,
		PacketsVar: 1e25, BytesVar: 1e37, MaxPacketsW: 1 << 40, MaxBytesW: 1 << 61,
		TOS: 0xb8, MinTTL: 1, MaxTTL: 255, EndReason: flow.EndActive,
	}
	icmp := flow.Record{ // zero ports, flags and TOS: fields left out must read back as 0
		Key: flow.Key{
			SrcAddr: netip.MustParseAddr("10.0.0.1").As16(), DstAddr: netip.MustParseAddr("0.0.0.0").As16(),
			DstPort: 8 << 8, Proto: 1, IPVersion: 4, Tunnel: flow.TunnelVXLAN, VNI: 0,
		},
		Start: 1, End: 1, SampledPackets: 1, SampledBytes: 98, Packets: 1, Bytes: 98, Samples: 1, RateSum: 1,
		EndReason: flow.EndEvicted,
	}
	idle := v4
	idle.Key.VLAN, idle.EndReason = 0, flow.EndIdle
	shutdown := v6
	shutdown.EndReason, shutdown.Key.Tunnel, shutdown.Key.VNI = flow.EndShutdown, flow.TunnelVXLAN, 1
	return []flow.Record{v4, v6, icmp, idle, shutdown}
}

func pbWantFlow(r *flow.Record, ifname string) map[string]any {
	k := &r.Key
	src, dst := k.Src(), k.Dst()
	tunnel := "TUNNEL_NONE"
	vni := uint32(0)
	if k.Tunnel != flow.TunnelNone {
		tunnel, vni = enumName("TUNNEL_", k.Tunnel), k.VNI
	}
	pi, bi := r.PacketsEstimate().Interval(), r.BytesEstimate().Interval()
	return map[string]any{
		"start_ns": r.Start, "end_ns": r.End, "interface": ifname, "ifindex": k.Ifindex,
		"direction": enumName("DIRECTION_", k.Direction), "ip_version": uint32(k.IPVersion),
		"src_addr": string(src.AsSlice()), "dst_addr": string(dst.AsSlice()),
		"src_port": uint32(k.SrcPort), "dst_port": uint32(k.DstPort), "proto": uint32(k.Proto),
		"packets": r.Packets, "bytes": r.Bytes, "sampled_packets": r.SampledPackets, "sampled_bytes": r.SampledBytes,
		"sampling_rate": r.SamplingRate(), "tcp_flags": uint32(r.TCPFlags), "tos": uint32(r.TOS),
		"ttl_min": uint32(r.MinTTL), "ttl_max": uint32(r.MaxTTL), "vlan": uint32(k.VLAN), "inner_vlan": uint32(k.InnerVLAN),
		"tunnel": tunnel, "vni": vni, "end_reason": enumName("END_REASON_", r.EndReason),
		"packets_lo": pi.Lo, "packets_hi": pi.Hi, "bytes_lo": bi.Lo, "bytes_hi": bi.Hi,
	}
}

func TestFlowProtoMatchesSchema(t *testing.T) {
	fd := compileVigilProto(t)
	ifname := func(i uint32) string { return fmt.Sprintf("eth%d", i) }
	for i, r := range pbTestFlows() {
		b := AppendFlowProto([]byte("prefix"), &r, ifname)
		if string(b[:6]) != "prefix" {
			t.Fatalf("flow %d: the encoder overwrote dst", i)
		}
		m := pbDecode(t, fd, "Flow", b[6:])
		got := pbPlain(m)
		what := fmt.Sprintf("flow %d (%s)", i, r.Key.Src())
		pbCompare(t, what, got, pbWantFlow(&r, ifname(r.Key.Ifindex)))
		// The bytes are canonical: re-marshalling the parsed message in
		// field order gives the same bytes.
		again, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(b[6:]) {
			t.Errorf("%s: not in canonical field order:\n got % x\nwant % x", what, b[6:], again)
		}
		pbCheckJSONCovered(t, what, AppendFlowJSON(nil, &r, ifname), got)
	}
	// Without a namer the interface field is left out.
	r := pbTestFlows()[0]
	if got := pbPlain(pbDecode(t, fd, "Flow", AppendFlowProto(nil, &r, nil))); got["interface"] != "" {
		t.Errorf("interface without namer = %q", got["interface"])
	}
}

// checkJSONCovered checks that every key of the JSON schema has a field
// of the same name in the .proto (times as name_ns), and that numbers
// agree between the two encodings of the same record.
func pbCheckJSONCovered(t *testing.T, what string, js []byte, pb map[string]any) {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal(js, &obj); err != nil {
		t.Fatalf("%s: JSON: %v", what, err)
	}
	for key, jv := range obj {
		if key == "kind" {
			continue // the topic says the kind
		}
		pv, ok := pb[key]
		if !ok {
			pv, ok = pb[key+"_ns"]
		}
		if !ok {
			t.Errorf("%s: JSON key %q has no field in vigil.proto", what, key)
			continue
		}
		if n, isNum := jv.(float64); isNum {
			var p float64
			switch v := pv.(type) {
			case uint32:
				p = float64(v)
			case uint64:
				p = float64(v)
			case float64:
				p = math.Round(v*1000) / 1000
			default:
				t.Errorf("%s: %s is a number in JSON, %T in protobuf", what, key, pv)
				continue
			}
			if p != n {
				t.Errorf("%s: %s is %v in JSON, %v in protobuf", what, key, n, p)
			}
		}
	}
}

func pbTestAlerts() []flow.Alert {
	full := flow.Alert{
		ID: "a-0001", Rule: "syn_flood", State: flow.AlertStart, Severity: flow.SeverityHigh,
		Key:  []flow.KeyValue{{Name: "dst_addr", Value: "198.51.100.7"}, {Name: "dst_port", Value: "443"}},
		Time: 1_795_000_010_000_000_000, Start: 1_795_000_000_000_000_001, End: 1_795_000_009_999_999_999,
		Packets: 1_000_000, Bytes: 64_000_000, PacketsCI: flow.Interval{Lo: 994_000, Hi: 1_006_100}, BytesCI: flow.Interval{Lo: 63_500_000, Hi: 64_600_000},
		PeakPPS: 123456.789, PeakBPS: 9.87654321e9, CurrentPPS: 100000.5, CurrentBPS: 1e-3,
		CurrentPPSCI: flow.RateInterval{Lo: 99000.25, Hi: 101000.75}, CurrentBPSCI: flow.RateInterval{Lo: 0, Hi: 8e-3},
		TopSources:      []flow.Top{{Value: "192.0.2.1", Packets: 500000}, {Value: "2001:db8::7", Packets: 1}, {Value: "", Packets: 0}},
		TopDestinations: []flow.Top{{Value: "198.51.100.7", Packets: 1_000_000}},
		TopPorts:        []flow.Top{{Value: "443", Packets: 999_000}, {Value: "80", Packets: 1000}},
		SamplingRate:    100,
		Techniques:      []string{"T1498.001", "", "T1499"},
		Summary:         "SYN flood against 198.51.100.7:443 — 100k pps",
		Service:         "https",
	}
	bad := flow.Alert{ // invalid UTF-8 becomes U+FFFD; NaN and Inf become 0
		ID: "a-0002", Rule: "dns\xffamp", State: flow.AlertEnd, Severity: flow.SeverityCritical,
		Key:        []flow.KeyValue{{Name: "qname", Value: "ex\xc3ample\x80.org"}, {Name: "", Value: ""}},
		Time:       2,
		PeakPPS:    math.NaN(),
		PeakBPS:    math.Inf(1),
		CurrentPPS: math.Inf(-1),
		CurrentBPS: -1.5,
		TopPorts:   []flow.Top{{Value: "\xfe", Packets: 1 << 63}},
		Summary:    "broken \xe2\x82 utf-8",
	}
	update := full
	update.State, update.Severity, update.Key, update.TopSources, update.Techniques = flow.AlertUpdate, flow.SeverityInfo, nil, nil, nil
	low := full
	low.Severity, low.State = flow.SeverityLow, flow.AlertEnd
	med := full
	med.Severity = flow.SeverityMedium
	return []flow.Alert{full, bad, update, low, med, {}}
}

func pbValidUTF8(s string) string { return string([]rune(s)) }

func pbFinite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func pbWantTops(tops []flow.Top) []any {
	out := []any{}
	for _, tp := range tops {
		out = append(out, map[string]any{"value": pbValidUTF8(tp.Value), "packets": tp.Packets})
	}
	return out
}

func pbWantAlert(a *flow.Alert) map[string]any {
	keys := []any{}
	for _, kv := range a.Key {
		keys = append(keys, map[string]any{"name": pbValidUTF8(kv.Name), "value": pbValidUTF8(kv.Value)})
	}
	techniques := []any{}
	for _, tq := range a.Techniques {
		techniques = append(techniques, pbValidUTF8(tq))
	}
	state, severity := "ALERT_STATE_UNSPECIFIED", "SEVERITY_UNSPECIFIED"
	if a.State != 0 {
		state = enumName("ALERT_STATE_", a.State)
	}
	if a.Severity != 0 {
		severity = enumName("SEVERITY_", a.Severity)
	}
	return map[string]any{
		"id": pbValidUTF8(a.ID), "rule": pbValidUTF8(a.Rule), "state": state, "severity": severity, "key": keys,
		"time_ns": a.Time, "start_ns": a.Start, "end_ns": a.End, "packets": a.Packets, "bytes": a.Bytes,
		"peak_pps": pbFinite(a.PeakPPS), "peak_bps": pbFinite(a.PeakBPS), "current_pps": pbFinite(a.CurrentPPS), "current_bps": pbFinite(a.CurrentBPS),
		"top_sources": pbWantTops(a.TopSources), "top_destinations": pbWantTops(a.TopDestinations), "top_ports": pbWantTops(a.TopPorts),
		"sampling_rate": a.SamplingRate, "techniques": techniques, "summary": pbValidUTF8(a.Summary), "service": pbValidUTF8(a.Service),
		"packets_lo": a.PacketsCI.Lo, "packets_hi": a.PacketsCI.Hi, "bytes_lo": a.BytesCI.Lo, "bytes_hi": a.BytesCI.Hi,
		"current_pps_lo": pbFinite(a.CurrentPPSCI.Lo), "current_pps_hi": pbFinite(a.CurrentPPSCI.Hi),
		"current_bps_lo": pbFinite(a.CurrentBPSCI.Lo), "current_bps_hi": pbFinite(a.CurrentBPSCI.Hi),
	}
}

func TestAlertProtoMatchesSchema(t *testing.T) {
	fd := compileVigilProto(t)
	for i, a := range pbTestAlerts() {
		b := AppendAlertProto(nil, &a)
		m := pbDecode(t, fd, "Alert", b)
		got := pbPlain(m)
		what := fmt.Sprintf("alert %d (%s)", i, a.ID)
		pbCompare(t, what, got, pbWantAlert(&a))
		if i == 0 {
			pbCheckJSONCovered(t, what, AppendAlertJSON(nil, &a), got)
		}
		again, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(b) {
			t.Errorf("%s: not in canonical form:\n got % x\nwant % x", what, b, again)
		}
	}
}

func TestProtoEncodeNoAllocs(t *testing.T) {
	flows, alerts := pbTestFlows(), pbTestAlerts()
	buf := make([]byte, 0, 4096)
	ifname := func(uint32) string { return "eth0" }
	allocs := testing.AllocsPerRun(100, func() {
		for i := range flows {
			buf = AppendFlowProto(buf[:0], &flows[i], ifname)
		}
		for i := range alerts {
			buf = AppendAlertProto(buf[:0], &alerts[i])
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run, want 0", allocs)
	}
}
