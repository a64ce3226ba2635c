package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-sensor/vigil/flow"
)

var (
	testProduct = OCSFProduct{Version: "1.2.3", Sensor: "edge-1.example.net"}
	testDeps    = Dependencies{Version: testProduct.Version, Sensor: testProduct.Sensor}
)

func testIfName(i uint32) string { return map[uint32]string{2: "eth0", 3: "wan \"0\""}[i] }

// The resolver must find what the schema requires, or every check below
// would pass on nothing.
func TestOCSFSchemaResolver(t *testing.T) {
	s := loadOCSFSchema(t)
	base := []string{"activity_id", "category_uid", "class_uid", "metadata", "severity_id", "time", "type_uid"}
	for _, c := range []struct {
		kind, name string
		profiles   []string
		want       []string
	}{
		{"class", "network_activity", nil, base},
		{"class", "network_activity", []string{"cloud", "osint"}, append([]string{"cloud", "osint"}, base...)},
		{"class", "detection_finding", nil, append([]string{"finding_info"}, base...)},
		{"object", "metadata", nil, []string{"product", "version"}},
		{"object", "network_connection_info", nil, []string{"direction_id"}},
		{"object", "finding_info", nil, []string{"uid"}},
		{"object", "observable", nil, []string{"type_id"}},
		{"object", "analytic", nil, []string{"type_id"}},
		{"object", "device", nil, []string{"type_id"}},
		{"object", "network_endpoint", nil, nil},
	} {
		r, err := s.resolve(c.kind, c.name)
		if err != nil {
			t.Fatal(err)
		}
		want := slices.Sorted(slices.Values(c.want))
		if diff := cmp.Diff(want, r.required(c.profiles)); diff != "" {
			t.Errorf("%s %s with profiles %v: required attributes (-want +got):\n%s", c.kind, c.name, c.profiles, diff)
		}
	}
	na, _ := s.resolve("class", "network_activity")
	df, _ := s.resolve("class", "detection_finding")
	if na.uid != OCSFClassNetworkActivity || df.uid != OCSFClassDetectionFinding {
		t.Errorf("class uids %d, %d; want %d, %d", na.uid, df.uid, OCSFClassNetworkActivity, OCSFClassDetectionFinding)
	}
	acts := slices.Sorted(mapKeys(na.attrs["activity_id"].enum()))
	if want := []string{"0", "1", "2", "3", "4", "5", "6", "7", "99"}; !slices.Equal(acts, want) {
		t.Errorf("network_activity activity_id enum %v, want %v (base_event's merged with the class's)", acts, want)
	}
	// The endpoint's "at least one of" constraint is inherited.
	ne, _ := s.resolve("object", "network_endpoint")
	if !slices.Contains(ne.constraints["at_least_one"], "ip") {
		t.Errorf("network_endpoint constraints %v, want at_least_one with ip", ne.constraints)
	}
}

func ocsfRecord(src, dst string, proto uint8, sport, dport uint16, reason flow.EndReason) flow.Record {
	r := record(src, dst)
	r.Key.Proto, r.Key.SrcPort, r.Key.DstPort, r.Key.Ifindex = proto, sport, dport, 2
	start := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)
	r.Start, r.End = start.UnixNano(), start.Add(4250*time.Millisecond).UnixNano()
	r.Packets, r.Bytes, r.SampledPackets, r.SampledBytes = 1200, 1456000, 12, 14560
	r.Samples, r.RateSum, r.TOS, r.MinTTL, r.MaxTTL = 12, 1200, 0x28, 57, 60
	// 12 samples at 1-in-100 of 1,213 bytes or so, for the intervals.
	r.PacketsVar, r.MaxPacketsW = 12*100*99, 99
	r.BytesVar, r.MaxBytesW = 12*100*99*1213*1213, 99*1213
	r.EndReason = reason
	return r
}

type flowCase struct {
	name     string
	r        flow.Record
	activity int
	ports    bool
}

func flowCases() []flowCase {
	fin := ocsfRecord("192.0.2.10", "198.51.100.7", 6, 51514, 443, flow.EndTCP)
	fin.TCPFlags = flow.TCPSyn | flow.TCPAck | flow.TCPFin
	fin.Key.VLAN, fin.Key.InnerVLAN, fin.Key.Tunnel, fin.Key.VNI = 100, 200, flow.TunnelVXLAN, 4242
	rst := ocsfRecord("192.0.2.10", "198.51.100.7", 6, 51515, 443, flow.EndTCP)
	rst.TCPFlags = flow.TCPRst | flow.TCPAck
	rst.Key.Ifindex = 3
	udp6 := ocsfRecord("2001:db8::1", "2001:db8:1::53", 17, 40000, 53, flow.EndIdle)
	udp6.Key.Direction = flow.Egress
	icmp := ocsfRecord("203.0.113.5", "192.0.2.1", 1, 0, 8<<8, flow.EndActive)
	icmp6 := ocsfRecord("fe80::1", "ff02::1", 58, 0, 135<<8, flow.EndShutdown)
	icmp6.Key.Direction, icmp6.Key.Tunnel, icmp6.Key.VNI = flow.Egress, flow.TunnelGENEVE, 7
	gre := ocsfRecord("192.0.2.1", "192.0.2.2", 47, 0, 0, flow.EndEvicted)
	gre.Key.Ifindex = 99   // no name
	empty := flow.Record{} // everything zero: proto 0, no IP version, no samples
	sctp := ocsfRecord("2001:db8::2", "2001:db8::3", 132, 2905, 2905, flow.EndReason(0))
	return []flowCase{
		{"tcp fin", fin, 2, true},
		{"tcp rst", rst, 3, true},
		{"udp v6 idle egress", udp6, 2, true},
		{"icmp active", icmp, 6, false},
		{"icmpv6 shutdown", icmp6, 6, false},
		{"gre evicted", gre, 6, false},
		{"zero record", empty, 6, false},
		{"sctp unknown end", sctp, 6, true},
	}
}

type alertCase struct {
	name string
	a    flow.Alert
}

func ocsfAlert(state flow.AlertState, sev flow.Severity) flow.Alert {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	return flow.Alert{
		ID: "syn_flood/203.0.113.9/1795341600", Rule: "syn_flood", State: state, Severity: sev,
		Key:  []flow.KeyValue{{Name: "dst_addr", Value: "203.0.113.9"}, {Name: "dst_prefix", Value: "2001:db8::/32"}, {Name: "vlan", Value: "100"}},
		Time: t0.Add(3 * time.Second).UnixNano(), Start: t0.UnixNano(), End: t0.Add(2500 * time.Millisecond).UnixNano(),
		Packets: 300000, Bytes: 18000000, PacketsCI: flow.Interval{Lo: 296610, Hi: 303420}, BytesCI: flow.Interval{Lo: 17796600, Hi: 18205200},
		PeakPPS: 120000.5, PeakBPS: 7.2e6, CurrentPPS: 100000.25, CurrentBPS: 6e6,
		CurrentPPSCI: flow.RateInterval{Lo: 98870.5, Hi: 101140}, CurrentBPSCI: flow.RateInterval{Lo: 5932200, Hi: 6068400},
		TopSources:      []flow.Top{{Value: "198.51.100.1", Packets: 900}, {Value: "198.51.100.0/24", Packets: 1000}},
		TopDestinations: []flow.Top{{Value: "2001:db8::9", Packets: 3000}},
		TopPorts:        []flow.Top{{Value: "80", Packets: 2900}},
		SamplingRate:    100, Techniques: []string{"T1498.001", "T1499", "T9999.042", ""},
		Summary: "SYN flood against 203.0.113.9: 100000 pps",
	}
}

func alertCases() []alertCase {
	var cs []alertCase
	for _, st := range []flow.AlertState{flow.AlertStart, flow.AlertUpdate, flow.AlertEnd} {
		for sev := flow.SeverityInfo; sev <= flow.SeverityCritical; sev++ {
			cs = append(cs, alertCase{st.String() + " " + sev.String(), ocsfAlert(st, sev)})
		}
	}
	odd := ocsfAlert(flow.AlertState(9), flow.Severity(0))
	odd.ID, odd.Rule, odd.Summary = "id \"quoted\"", "rule\\with\nnewline", "bad utf-8 \xff\xfe and \x01"
	odd.Key = []flow.KeyValue{{Name: "weird \"name\"", Value: "10.0.0.1"}}
	cs = append(cs, alertCase{"unknown state and severity, odd strings", odd})
	bare := flow.Alert{ID: "x", Rule: "r", State: flow.AlertStart, Severity: flow.SeverityLow}
	cs = append(cs, alertCase{"no evidence, techniques or key", bare})
	return cs
}

func decodeOCSF(t *testing.T, line []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, line)
	}
	return m
}

// get follows a dotted path (array elements by index) in a decoded event.
func get(m map[string]any, path string) any {
	var cur any = m
	for p := range strings.SplitSeq(path, ".") {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i >= len(c) {
				return nil
			}
			cur = c[i]
		default:
			return nil
		}
	}
	return cur
}

func num(v any) string {
	if n, ok := v.(json.Number); ok {
		return n.String()
	}
	return fmt.Sprintf("%v (%T)", v, v)
}

func TestFlowOCSFMatchesSchema(t *testing.T) {
	s := loadOCSFSchema(t)
	var b []byte
	for _, c := range flowCases() {
		t.Run(c.name, func(t *testing.T) {
			b = AppendFlowOCSF(b[:0], &c.r, testIfName, testProduct)
			if !json.Valid(b) {
				t.Fatalf("invalid JSON:\n%s", b)
			}
			for _, e := range s.validateOCSF(b, "network_activity") {
				t.Errorf("schema: %s", e)
			}
			ev := decodeOCSF(t, b)
			if got := num(ev["activity_id"]); got != strconv.Itoa(c.activity) {
				t.Errorf("activity_id %s, want %d (end reason %s)", got, c.activity, c.r.EndReason)
			}
			if got, want := num(ev["type_uid"]), strconv.Itoa(400100+c.activity); got != want {
				t.Errorf("type_uid %s, want %s", got, want)
			}
			if got, want := num(ev["time"]), strconv.FormatInt(c.r.End/1e6, 10); got != want {
				t.Errorf("time %s, want %s (ms)", got, want)
			}
			dir := "1"
			if c.r.Key.Direction == flow.Egress {
				dir = "2"
			}
			if got := num(get(ev, "connection_info.direction_id")); got != dir {
				t.Errorf("direction_id %s, want %s for %s", got, dir, c.r.Key.Direction)
			}
			if _, has := get(ev, "src_endpoint").(map[string]any)["port"]; has != c.ports {
				t.Errorf("src_endpoint has port: %v, want %v (proto %d)", has, c.ports, c.r.Key.Proto)
			}
			if got, want := get(ev, "src_endpoint.ip"), c.r.Key.Src().String(); got != want {
				t.Errorf("src_endpoint.ip %v, want %s", got, want)
			}
		})
	}
}

func TestAlertOCSFMatchesSchema(t *testing.T) {
	s := loadOCSFSchema(t)
	var b []byte
	for _, c := range alertCases() {
		t.Run(c.name, func(t *testing.T) {
			b = AppendAlertOCSF(b[:0], &c.a, testProduct)
			if !json.Valid(b) {
				t.Fatalf("invalid JSON:\n%s", b)
			}
			for _, e := range s.validateOCSF(b, "detection_finding") {
				t.Errorf("schema: %s", e)
			}
			ev := decodeOCSF(t, b)
			act := map[flow.AlertState]string{flow.AlertStart: "1", flow.AlertUpdate: "2", flow.AlertEnd: "3"}[c.a.State]
			if act == "" {
				act = "0"
			}
			if got := num(ev["activity_id"]); got != act {
				t.Errorf("activity_id %s, want %s for state %s", got, act, c.a.State)
			}
			sev := strconv.Itoa(int(c.a.Severity))
			if got := num(ev["severity_id"]); got != sev {
				t.Errorf("severity_id %s, want %s", got, sev)
			}
			if got := get(ev, "finding_info.uid"); got != c.a.ID {
				t.Errorf("finding_info.uid %q, want %q", got, c.a.ID)
			}
			if got := get(ev, "finding_info.title"); got != c.a.Rule {
				t.Errorf("finding_info.title %q, want %q", got, c.a.Rule)
			}
		})
	}
}

// TestFlowOCSFValues pins the mapping of one record, field by field, as
// docs/OCSF.md describes it.
func TestFlowOCSFValues(t *testing.T) {
	c := flowCases()[0]
	ev := decodeOCSF(t, AppendFlowOCSF(nil, &c.r, testIfName, testProduct))
	pi, bi := c.r.PacketsEstimate().Interval(), c.r.BytesEstimate().Interval()
	if pi.Lo >= c.r.Packets || pi.Hi <= c.r.Packets || bi.Lo >= c.r.Bytes || bi.Hi <= c.r.Bytes {
		t.Fatalf("intervals %v and %v do not surround the estimates: the test needs sampled counts", pi, bi)
	}
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	want := map[string]string{
		"class_uid": "4001", "category_uid": "4", "activity_id": "2", "type_uid": "400102", "severity_id": "1",
		"time": "1795341604373", "start_time": "1795341600123", "end_time": "1795341604373", "duration": "4250",
		"metadata.version": "1.8.0", "metadata.product.name": "Vigil", "metadata.product.vendor_name": "Vigil",
		"metadata.product.version": "1.2.3", "metadata.log_name": "flows", "metadata.reporter.hostname": "edge-1.example.net",
		"src_endpoint.ip": "192.0.2.10", "src_endpoint.port": "51514", "dst_endpoint.ip": "198.51.100.7", "dst_endpoint.port": "443",
		"is_src_dst_assignment_known":  "false",
		"connection_info.protocol_num": "6", "connection_info.protocol_name": "tcp", "connection_info.protocol_ver_id": "4",
		"connection_info.direction_id": "1", "connection_info.tcp_flags": "19",
		"traffic.packets": "1200", "traffic.bytes": "1456000", "traffic.bytes_missed": "1441440",
		"observation_point_id": "3", "network_observation_point.hostname": "edge-1.example.net",
		"network_observation_point.interface_name": "eth0", "network_observation_point.interface_uid": "2",
		"network_observation_point.vlan_uid": "100",
		"observables.0.name":                 "src_endpoint.ip", "observables.0.value": "192.0.2.10", "observables.0.type_id": "2",
		"observables.1.name": "dst_endpoint.ip", "observables.1.value": "198.51.100.7",
		"unmapped.end_reason": "tcp_end", "unmapped.sampling_rate": "100", "unmapped.samples": "12",
		"unmapped.sampled_packets": "12", "unmapped.sampled_bytes": "14560", "unmapped.tos": "40",
		"unmapped.ttl_min": "57", "unmapped.ttl_max": "60", "unmapped.inner_vlan": "200",
		"unmapped.tunnel": "vxlan", "unmapped.vni": "4242",
		"unmapped.packets_lo": u(pi.Lo), "unmapped.packets_hi": u(pi.Hi), "unmapped.bytes_lo": u(bi.Lo), "unmapped.bytes_hi": u(bi.Hi),
	}
	for path, w := range want {
		got := get(ev, path)
		if n, ok := got.(json.Number); ok {
			got = n.String()
		} else if b, ok := got.(bool); ok {
			got = strconv.FormatBool(b)
		}
		if got != w {
			t.Errorf("%s = %v, want %s", path, got, w)
		}
	}
	icmp := flowCases()[3]
	ev = decodeOCSF(t, AppendFlowOCSF(nil, &icmp.r, nil, OCSFProduct{}))
	for path, w := range map[string]any{"unmapped.icmp_type": "8", "unmapped.icmp_code": "0", "connection_info.protocol_name": "icmp",
		"network_observation_point.interface_name": nil, "network_observation_point.hostname": nil, "metadata.reporter": nil,
		"connection_info.tcp_flags": nil, "dst_endpoint.port": nil} {
		got := get(ev, path)
		if n, ok := got.(json.Number); ok {
			got = n.String()
		}
		if got != w {
			t.Errorf("icmp %s = %v, want %v", path, got, w)
		}
	}
}

func TestAlertOCSFValues(t *testing.T) {
	a := ocsfAlert(flow.AlertEnd, flow.SeverityHigh)
	ev := decodeOCSF(t, AppendAlertOCSF(nil, &a, testProduct))
	want := map[string]string{
		"class_uid": "2004", "category_uid": "2", "activity_id": "3", "type_uid": "200403", "severity_id": "4",
		"severity": "High", "status_id": "4", "is_alert": "false", "time": "1795341603000",
		"start_time": "1795341600000", "end_time": "1795341602500", "message": a.Summary,
		"metadata.log_name": "alerts", "metadata.reporter.hostname": "edge-1.example.net",
		"finding_info.uid": a.ID, "finding_info.title": "syn_flood", "finding_info.desc": a.Summary,
		"finding_info.types.0": "syn_flood", "finding_info.analytic.name": "syn_flood", "finding_info.analytic.type_id": "1",
		"finding_info.first_seen_time": "1795341600000", "finding_info.last_seen_time": "1795341602500",
		"finding_info.attacks.0.technique.uid": "T1498", "finding_info.attacks.0.technique.name": "Network Denial of Service",
		"finding_info.attacks.0.sub_technique.uid": "T1498.001", "finding_info.attacks.0.tactic.uid": "TA0040",
		"finding_info.attacks.1.technique.uid": "T1499", "finding_info.attacks.2.technique.uid": "T9999",
		"finding_info.attacks.2.sub_technique.uid": "T9999.042",
		"evidences.0.name":                         "top_source", "evidences.0.src_endpoint.ip": "198.51.100.1", "evidences.0.data.packets": "900",
		"evidences.1.data.value": "198.51.100.0/24", "evidences.2.dst_endpoint.ip": "2001:db8::9",
		"evidences.3.name": "top_port", "evidences.3.data.value": "80",
		"observables.0.name": "unmapped.key.dst_addr", "observables.0.type_id": "2", "observables.0.value": "203.0.113.9",
		"observables.1.name": "unmapped.key.dst_prefix", "observables.1.type_id": "12",
		"unmapped.state": "end", "unmapped.key.vlan": "100", "unmapped.packets": "300000", "unmapped.peak_pps": "120000.5",
		"unmapped.packets_lo": "296610", "unmapped.packets_hi": "303420", "unmapped.bytes_lo": "17796600", "unmapped.bytes_hi": "18205200",
		"unmapped.current_pps_lo": "98870.5", "unmapped.current_pps_hi": "101140", "unmapped.current_bps_lo": "5932200", "unmapped.current_bps_hi": "6068400",
		"unmapped.sampling_rate": "100",
	}
	for path, w := range want {
		got := get(ev, path)
		if n, ok := got.(json.Number); ok {
			got = n.String()
		} else if b, ok := got.(bool); ok {
			got = strconv.FormatBool(b)
		}
		if got != w {
			t.Errorf("%s = %v, want %s", path, got, w)
		}
	}
	for _, path := range []string{"finding_info.attacks.3", "evidences.4", "observables.2", "evidences.1.src_endpoint", "finding_info.attacks.2.tactic"} {
		if got := get(ev, path); got != nil {
			t.Errorf("%s = %v, want absent", path, got)
		}
	}
}

// The validator must catch what it claims to: each broken line below
// must be reported, at the right place.
func TestOCSFValidatorCatchesErrors(t *testing.T) {
	s := loadOCSFSchema(t)
	fc := flowCases()[0]
	flowLine := AppendFlowOCSF(nil, &fc.r, testIfName, testProduct)
	ac := ocsfAlert(flow.AlertStart, flow.SeverityHigh)
	alertLine := AppendAlertOCSF(nil, &ac, testProduct)
	for _, c := range []struct {
		name, class string
		line        []byte
		path        string
		set         any // nil: delete the attribute
		wantIn      string
	}{
		{"missing metadata.product", "network_activity", flowLine, "metadata.product", nil, "metadata.product: required attribute missing"},
		{"missing time", "network_activity", flowLine, "time", nil, "time: required attribute missing"},
		{"missing direction_id", "network_activity", flowLine, "connection_info.direction_id", nil, "connection_info.direction_id: required attribute missing"},
		{"missing finding_info.uid", "detection_finding", alertLine, "finding_info.uid", nil, "finding_info.uid: required attribute missing"},
		{"missing finding_info", "detection_finding", alertLine, "finding_info", nil, "finding_info: required attribute missing"},
		{"missing analytic type_id", "detection_finding", alertLine, "finding_info.analytic.type_id", nil, "finding_info.analytic.type_id: required"},
		{"time as a string", "network_activity", flowLine, "time", "1795341604373", "time: 1795341604373 (string), want an integer (timestamp_t)"},
		{"time as a float", "network_activity", flowLine, "time", json.Number("1.5"), "time: 1.5"},
		{"severity outside its enum", "network_activity", flowLine, "severity_id", json.Number("7"), "severity_id: 7 is not in the enum"},
		{"activity of another class", "network_activity", flowLine, "activity_id", json.Number("8"), "activity_id: 8 is not in the enum"},
		{"made-up attribute", "network_activity", flowLine, "src_endpoint.made_up", "x", "src_endpoint.made_up: not an attribute of network_endpoint"},
		{"made-up top-level attribute", "detection_finding", alertLine, "vigil", json.Number("1"), "vigil: not an attribute of detection_finding"},
		{"profile not applied", "network_activity", flowLine, "cloud", map[string]any{"provider": "aws"}, `cloud: belongs to profile "cloud"`},
		{"type_uid inconsistent", "network_activity", flowLine, "type_uid", json.Number("400199"), "type_uid: 400199, want class_uid*100+activity_id = 400102"},
		{"class_uid wrong", "detection_finding", alertLine, "class_uid", json.Number("2001"), "class_uid: 2001"},
		{"port out of range", "network_activity", flowLine, "src_endpoint.port", json.Number("70000"), "src_endpoint.port: 70000 outside port_t's range"},
		{"ip not an ip", "network_activity", flowLine, "dst_endpoint.ip", "not-an-ip", `dst_endpoint.ip: "not-an-ip" does not match ip_t`},
		{"object as a string", "network_activity", flowLine, "traffic", "1200", "traffic: string, want object network_traffic"},
		{"array as an object", "detection_finding", alertLine, "evidences", map[string]any{}, "evidences: map[string]interface {}, want an array"},
		{"observable type outside its enum", "network_activity", flowLine, "observables.0.type_id", json.Number("999"), "observables[0].type_id: 999 is not in the enum"},
		{"sibling caption wrong", "network_activity", flowLine, "activity_name", "Open", `activity_name: Open, want "Close"`},
		{"endpoint with nothing to name it", "network_activity", flowLine, "src_endpoint", map[string]any{"port": json.Number("1")}, "src_endpoint: at_least_one of"},
		{"boolean as a number", "detection_finding", alertLine, "is_alert", json.Number("1"), "is_alert: json.Number, want a boolean"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if errs := s.validateOCSF(c.line, c.class); len(errs) != 0 {
				t.Fatalf("the unbroken line fails: %v", errs)
			}
			broken := mutate(t, c.line, c.path, c.set)
			errs := s.validateOCSF(broken, c.class)
			found := false
			for _, e := range errs {
				found = found || strings.Contains(e, c.wantIn)
			}
			if !found {
				t.Errorf("no error containing %q; got %q\nline: %s", c.wantIn, errs, broken)
			}
		})
	}
	dup := bytes.Replace(flowLine, []byte(`"severity_id":1,`), []byte(`"severity_id":1,"severity_id":1,`), 1)
	if errs := s.validateOCSF(dup, "network_activity"); !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, `duplicate key "severity_id"`) }) {
		t.Errorf("duplicate key not caught: %q", errs)
	}
}

// mutate sets (or, for a nil value, deletes) the attribute at a dotted
// path, array elements by index, and re-encodes the line.
func mutate(t *testing.T, line []byte, path string, val any) []byte {
	t.Helper()
	ev := decodeOCSF(t, line)
	parts := strings.Split(path, ".")
	var cur any = ev
	for _, p := range parts[:len(parts)-1] {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case []any:
			i, _ := strconv.Atoi(p)
			cur = c[i]
		}
	}
	obj, ok := cur.(map[string]any)
	if !ok {
		t.Fatalf("%s: parent is %T", path, cur)
	}
	last := parts[len(parts)-1]
	if val == nil {
		if _, ok := obj[last]; !ok {
			t.Fatalf("%s: nothing to delete", path)
		}
		delete(obj, last)
	} else {
		obj[last] = val
	}
	out, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOCSFEncodingAllocatesNothing(t *testing.T) {
	fc := flowCases()
	ac := alertCases()
	b := make([]byte, 0, 8192)
	ifname := func(uint32) string { return "eth0" }
	for _, c := range fc {
		if n := testing.AllocsPerRun(100, func() { b = AppendFlowOCSF(b[:0], &c.r, ifname, testProduct) }); n != 0 {
			t.Errorf("flow %s: %v allocations per record, want 0", c.name, n)
		}
	}
	for _, c := range ac {
		if n := testing.AllocsPerRun(100, func() { b = AppendAlertOCSF(b[:0], &c.a, testProduct) }); n != 0 {
			t.Errorf("alert %s: %v allocations per alert, want 0", c.name, n)
		}
	}
}

// Addresses of both families, edge values included, are written as
// ip_t accepts them.
func TestFlowOCSFAddresses(t *testing.T) {
	s := loadOCSFSchema(t)
	for _, a := range []string{"0.0.0.0", "255.255.255.255", "::", "::ffff:192.0.2.1", "2001:db8:0:0:1:0:0:1"} {
		r := ocsfRecord(a, a, 17, 1, 2, flow.EndIdle)
		line := AppendFlowOCSF(nil, &r, nil, testProduct)
		for _, e := range s.validateOCSF(line, "network_activity") {
			t.Errorf("%s: schema: %s", a, e)
		}
		ev := decodeOCSF(t, line)
		want := netip.MustParseAddr(a).Unmap()
		if r.Key.IPVersion == 6 {
			want = netip.MustParseAddr(a)
		}
		if got := get(ev, "dst_endpoint.ip"); got != want.String() {
			t.Errorf("%s: dst_endpoint.ip %v, want %s", a, got, want)
		}
	}
}
