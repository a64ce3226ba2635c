package export

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/vigil-sensor/vigil/flow"
)

// OCSF output: flow records as Network Activity (class 4001) and alerts
// as Detection Finding (class 2004), OCSF schema 1.8.0. docs/OCSF.md has
// the mapping; ocsf_test.go checks every line against the schema files in
// testdata/ocsf-schema-1.8.0. Encoding appends into the caller's buffer
// and allocates nothing per record.

// OCSFVersion is the OCSF schema version the output follows
// (metadata.version).
const OCSFVersion = "1.8.0"

// OCSF class uids Vigil writes: category_uid × 1000 + the class's uid.
const (
	OCSFClassNetworkActivity  = 4001
	OCSFClassDetectionFinding = 2004
)

// OCSFProduct says who writes the OCSF events.
type OCSFProduct struct {
	// Version is Vigil's version: metadata.product.version.
	Version string
	// Vendor is metadata.product.vendor_name; "" means "Vigil".
	Vendor string
	// Sensor names this sensor (its hostname by default):
	// metadata.reporter, and the hostname of a flow's
	// network_observation_point. Omitted when "".
	Sensor string
}

// Network Activity activity_id values Vigil uses.
const (
	ocsfActivityClose   = 2 // the flow ended: idle timeout or FIN
	ocsfActivityReset   = 3 // the flow ended with a RST
	ocsfActivityTraffic = 6 // a report of a flow that may go on
)

var networkActivityNames = [...]string{ocsfActivityClose: "Close", ocsfActivityReset: "Reset", ocsfActivityTraffic: "Traffic"}

// flowActivity maps why a record was written to a Network Activity
// activity: a flow that ended is a Close (Reset when a RST ended it); a
// slice cut by the active timeout, or a flow cut short by shutdown or
// eviction, is a Traffic report, since the connection may go on.
func flowActivity(r *flow.Record) uint8 {
	switch r.EndReason {
	case flow.EndIdle:
		return ocsfActivityClose
	case flow.EndTCP:
		if r.TCPFlags&flow.TCPRst != 0 {
			return ocsfActivityReset
		}
		return ocsfActivityClose
	}
	return ocsfActivityTraffic
}

// protocolNames are IANA protocol keywords, lower case, for
// connection_info.protocol_name.
var protocolNames = [256]string{1: "icmp", 2: "igmp", 4: "ipv4", 6: "tcp", 17: "udp", 41: "ipv6", 47: "gre",
	50: "esp", 51: "ah", 58: "ipv6-icmp", 89: "ospf", 103: "pim", 112: "vrrp", 132: "sctp", 136: "udplite"}

// hasPorts says whether the key's ports are transport ports (for ICMP
// the destination port holds type and code).
func hasPorts(proto uint8) bool {
	switch proto {
	case 6, 17, 33, 132, 136: // TCP, UDP, DCCP, SCTP, UDP-Lite
		return true
	}
	return false
}

func isICMP(proto uint8) bool { return proto == 1 || proto == 58 }

// AppendFlowOCSF appends r as one OCSF Network Activity event (no
// newline) to b. ifname names interfaces by index; it may be nil.
func AppendFlowOCSF(b []byte, r *flow.Record, ifname func(uint32) string, p OCSFProduct) []byte {
	k := &r.Key
	act := flowActivity(r)
	b = append(b, `{"class_uid":4001,"class_name":"Network Activity","category_uid":4,"category_name":"Network Activity"`...)
	b = appendUint(b, `,"activity_id":`, uint64(act))
	b = append(b, `,"activity_name":"`...)
	b = append(b, networkActivityNames[act]...)
	b = appendUint(b, `","type_uid":`, OCSFClassNetworkActivity*100+uint64(act))
	b = append(b, `,"type_name":"Network Activity: `...)
	b = append(b, networkActivityNames[act]...)
	b = append(b, `","severity_id":1,"severity":"Informational"`...)
	b = appendTimes(b, r.End, r.Start, r.End)
	b = appendOCSFMetadata(b, p, "flows")

	ports := hasPorts(k.Proto)
	b = appendAddr(b, `,"src_endpoint":{"ip":"`, k.Src())
	b = append(b, '"')
	if ports {
		b = appendUint(b, `,"port":`, uint64(k.SrcPort))
	}
	b = appendAddr(b, `},"dst_endpoint":{"ip":"`, k.Dst())
	b = append(b, '"')
	if ports {
		b = appendUint(b, `,"port":`, uint64(k.DstPort))
	}
	// A flow is one direction of a conversation: its source sent the
	// packets but need not have opened the connection.
	b = append(b, `},"is_src_dst_assignment_known":false`...)

	b = appendUint(b, `,"connection_info":{"protocol_num":`, uint64(k.Proto))
	if name := protocolNames[k.Proto]; name != "" {
		b = append(b, `,"protocol_name":"`...)
		b = append(b, name...)
		b = append(b, '"')
	}
	switch k.IPVersion {
	case 4:
		b = append(b, `,"protocol_ver_id":4`...)
	case 6:
		b = append(b, `,"protocol_ver_id":6`...)
	default:
		b = append(b, `,"protocol_ver_id":0`...)
	}
	// Direction is the packets' way across the sensor's interface
	// (ingress Inbound, egress Outbound), not inside versus outside,
	// which the sensor does not know.
	if k.Direction == flow.Egress {
		b = append(b, `,"direction_id":2,"direction":"Outbound"`...)
	} else {
		b = append(b, `,"direction_id":1,"direction":"Inbound"`...)
	}
	if k.Proto == 6 {
		b = appendUint(b, `,"tcp_flags":`, uint64(r.TCPFlags))
	}

	b = appendUint(b, `},"traffic":{"packets":`, r.Packets)
	b = appendUint(b, `,"bytes":`, r.Bytes)
	if r.Bytes > r.SampledBytes {
		b = appendUint(b, `,"bytes_missed":`, r.Bytes-r.SampledBytes)
	}

	// The sensor sees traffic between others (a gateway, a mirror
	// target): the observer is neither endpoint.
	b = append(b, `},"observation_point_id":3,"observation_point":"Neither","network_observation_point":{`...)
	if p.Sensor != "" {
		b = append(b, `"hostname":`...)
		b = appendJSONString(b, p.Sensor)
		b = append(b, ',')
	}
	if ifname != nil {
		if name := ifname(k.Ifindex); name != "" {
			b = append(b, `"interface_name":`...)
			b = appendJSONString(b, name)
			b = append(b, ',')
		}
	}
	b = appendUint(b, `"interface_uid":"`, uint64(k.Ifindex))
	if k.VLAN != 0 {
		b = appendUint(b, `","vlan_uid":"`, uint64(k.VLAN))
	}
	b = append(b, `","type_id":13,"type":"IDS"}`...)

	b = appendObservable(b, `,"observables":[`, "src_endpoint.ip", k.Src())
	b = appendObservable(b, ",", "dst_endpoint.ip", k.Dst())

	b = append(b, `],"unmapped":{"end_reason":"`...)
	b = append(b, r.EndReason.String()...)
	b = appendUint(b, `","sampling_rate":`, uint64(r.SamplingRate()))
	b = appendUint(b, `,"samples":`, r.Samples)
	b = appendUint(b, `,"sampled_packets":`, r.SampledPackets)
	b = appendUint(b, `,"sampled_bytes":`, r.SampledBytes)
	// OCSF's traffic object has no place for an interval of its counts.
	b = appendIntervals(b, r.PacketsEstimate().Interval(), r.BytesEstimate().Interval())
	b = appendUint(b, `,"tos":`, uint64(r.TOS))
	b = appendUint(b, `,"ttl_min":`, uint64(r.MinTTL))
	b = appendUint(b, `,"ttl_max":`, uint64(r.MaxTTL))
	if isICMP(k.Proto) {
		b = appendUint(b, `,"icmp_type":`, uint64(k.DstPort>>8))
		b = appendUint(b, `,"icmp_code":`, uint64(k.DstPort&0xff))
	}
	b = appendEncap(b, k)
	return append(b, `}}`...)
}

// appendTimes appends time, start_time, end_time and duration (ms since
// the Unix epoch, from ns) and the UTC offset.
func appendTimes(b []byte, t, start, end int64) []byte {
	startMs, endMs := start/1e6, end/1e6
	b = strconv.AppendInt(append(b, `,"time":`...), t/1e6, 10)
	b = strconv.AppendInt(append(b, `,"start_time":`...), startMs, 10)
	b = strconv.AppendInt(append(b, `,"end_time":`...), endMs, 10)
	b = strconv.AppendInt(append(b, `,"duration":`...), max(endMs-startMs, 0), 10)
	return append(b, `,"timezone_offset":0`...)
}

func appendOCSFMetadata(b []byte, p OCSFProduct, logName string) []byte {
	b = append(b, `,"metadata":{"version":"`+OCSFVersion+`","product":{"name":"Vigil","vendor_name":`...)
	vendor := p.Vendor
	if vendor == "" {
		vendor = "Vigil"
	}
	b = appendJSONString(b, vendor)
	b = append(b, `,"version":`...)
	b = appendJSONString(b, p.Version)
	b = append(b, `},"log_name":"`...)
	b = append(b, logName...)
	b = append(b, '"')
	if p.Sensor != "" {
		b = append(b, `,"reporter":{"hostname":`...)
		b = appendJSONString(b, p.Sensor)
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendObservable appends an IP address observable named by its path
// in the event.
func appendObservable(b []byte, sep, name string, ip netip.Addr) []byte {
	b = append(b, sep...)
	b = append(b, `{"name":"`...)
	b = append(b, name...)
	b = appendAddr(b, `","type_id":2,"type":"IP Address","value":"`, ip)
	return append(b, `"}`...)
}

// Detection Finding activity (and status) by alert state: a start
// creates the finding, updates update it, the end closes it.
var findingActivityNames = [...]string{0: "Unknown", flow.AlertStart: "Create", flow.AlertUpdate: "Update", flow.AlertEnd: "Close"}

// OCSF severity captions by severity_id; flow.Severity uses the same
// numbers.
var severityNames = [...]string{"Unknown", "Informational", "Low", "Medium", "High", "Critical"}

// AppendAlertOCSF appends a as one OCSF Detection Finding event (no
// newline) to b.
func AppendAlertOCSF(b []byte, a *flow.Alert, p OCSFProduct) []byte {
	act := uint8(a.State)
	if int(act) >= len(findingActivityNames) {
		act = 0
	}
	sev := uint8(a.Severity)
	if int(sev) >= len(severityNames) {
		sev = 0
	}
	b = append(b, `{"class_uid":2004,"class_name":"Detection Finding","category_uid":2,"category_name":"Findings"`...)
	b = appendUint(b, `,"activity_id":`, uint64(act))
	b = append(b, `,"activity_name":"`...)
	b = append(b, findingActivityNames[act]...)
	b = appendUint(b, `","type_uid":`, OCSFClassDetectionFinding*100+uint64(act))
	b = append(b, `,"type_name":"Detection Finding: `...)
	b = append(b, findingActivityNames[act]...)
	b = appendUint(b, `","severity_id":`, uint64(sev))
	b = append(b, `,"severity":"`...)
	b = append(b, severityNames[sev]...)
	b = append(b, '"')
	// The status is the producer's view: open while the alert runs,
	// resolved once its condition has stopped.
	switch a.State {
	case flow.AlertStart, flow.AlertUpdate:
		b = append(b, `,"status_id":1,"status":"New","is_alert":true`...)
	case flow.AlertEnd:
		b = append(b, `,"status_id":4,"status":"Resolved","is_alert":false`...)
	}
	b = appendTimes(b, a.Time, a.Start, a.End)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, a.Summary)
	b = appendOCSFMetadata(b, p, "alerts")

	b = append(b, `,"finding_info":{"uid":`...)
	b = appendJSONString(b, a.ID)
	b = append(b, `,"title":`...)
	b = appendJSONString(b, a.Rule)
	b = append(b, `,"desc":`...)
	b = appendJSONString(b, a.Summary)
	b = append(b, `,"types":[`...)
	b = appendJSONString(b, a.Rule)
	b = append(b, `],"analytic":{"name":`...)
	b = appendJSONString(b, a.Rule)
	b = append(b, `,"type_id":1,"type":"Rule"}`...)
	b = strconv.AppendInt(append(b, `,"first_seen_time":`...), a.Start/1e6, 10)
	b = strconv.AppendInt(append(b, `,"last_seen_time":`...), a.End/1e6, 10)
	b = appendAttacks(b, a.Techniques)
	b = append(b, '}')

	b = appendEvidences(b, a)
	b = appendAlertObservables(b, a.Key)

	b = append(b, `,"unmapped":{"state":"`...)
	b = append(b, a.State.String()...)
	b = append(b, `","service":`...)
	b = appendJSONString(b, a.Service)
	b = append(b, `,"key":`...)
	b = appendKeyObject(b, a.Key)
	b = appendUint(b, `,"packets":`, a.Packets)
	b = appendUint(b, `,"bytes":`, a.Bytes)
	b = appendIntervals(b, a.PacketsCI, a.BytesCI)
	b = appendFloat(b, `,"peak_pps":`, a.PeakPPS)
	b = appendFloat(b, `,"peak_bps":`, a.PeakBPS)
	b = appendFloat(b, `,"current_pps":`, a.CurrentPPS)
	b = appendFloat(b, `,"current_bps":`, a.CurrentBPS)
	b = appendRateIntervals(b, a.CurrentPPSCI, a.CurrentBPSCI)
	b = appendUint(b, `,"sampling_rate":`, uint64(a.SamplingRate))
	return append(b, `}}`...)
}

// mitreTechnique names an ATT&CK technique and its tactic.
type mitreTechnique struct {
	name, tactic, tacticName string
}

// mitreTechniques names the techniques network detections report. An ID
// not listed is written with its uid only.
var mitreTechniques = map[string]mitreTechnique{
	"T1046":     {"Network Service Discovery", "TA0007", "Discovery"},
	"T1071":     {"Application Layer Protocol", "TA0011", "Command and Control"},
	"T1071.004": {"DNS", "TA0011", "Command and Control"},
	"T1110":     {"Brute Force", "TA0006", "Credential Access"},
	"T1498":     {"Network Denial of Service", "TA0040", "Impact"},
	"T1498.001": {"Direct Network Flood", "TA0040", "Impact"},
	"T1498.002": {"Reflection Amplification", "TA0040", "Impact"},
	"T1499":     {"Endpoint Denial of Service", "TA0040", "Impact"},
	"T1499.001": {"OS Exhaustion Flood", "TA0040", "Impact"},
	"T1499.002": {"Service Exhaustion Flood", "TA0040", "Impact"},
	"T1499.003": {"Application Exhaustion Flood", "TA0040", "Impact"},
	"T1571":     {"Non-Standard Port", "TA0011", "Command and Control"},
	"T1595":     {"Active Scanning", "TA0043", "Reconnaissance"},
	"T1595.001": {"Scanning IP Blocks", "TA0043", "Reconnaissance"},
	"T1595.002": {"Vulnerability Scanning", "TA0043", "Reconnaissance"},
}

// appendAttacks appends finding_info.attacks: one attack per technique
// ID, a sub-technique (T1498.001) with its parent technique.
func appendAttacks(b []byte, ids []string) []byte {
	n := 0
	for _, id := range ids {
		if id == "" {
			continue
		}
		if n == 0 {
			b = append(b, `,"attacks":[`...)
		} else {
			b = append(b, ',')
		}
		n++
		tech := id
		if i := strings.IndexByte(id, '.'); i > 0 {
			tech = id[:i]
		}
		b = append(b, `{"technique":`...)
		b = appendMitre(b, tech, mitreTechniques[tech].name)
		if tech != id {
			b = append(b, `,"sub_technique":`...)
			b = appendMitre(b, id, mitreTechniques[id].name)
		}
		if m, ok := mitreTechniques[tech]; ok {
			b = append(b, `,"tactic":`...)
			b = appendMitre(b, m.tactic, m.tacticName)
		}
		b = append(b, '}')
	}
	if n > 0 {
		b = append(b, ']')
	}
	return b
}

func appendMitre(b []byte, uid, name string) []byte {
	b = append(b, `{"uid":`...)
	b = appendJSONString(b, uid)
	if name != "" {
		b = append(b, `,"name":"`...)
		b = append(b, name...)
		b = append(b, '"')
	}
	return append(b, '}')
}

// appendEvidences appends the alert's top sources, destinations and
// ports as evidences: each carries {value, packets} in data, and an
// address also as the endpoint's ip.
func appendEvidences(b []byte, a *flow.Alert) []byte {
	if len(a.TopSources)+len(a.TopDestinations)+len(a.TopPorts) == 0 {
		return b
	}
	b = append(b, `,"evidences":[`...)
	first := true
	b = appendEvidence(b, &first, "top_source", "src_endpoint", a.TopSources)
	b = appendEvidence(b, &first, "top_destination", "dst_endpoint", a.TopDestinations)
	b = appendEvidence(b, &first, "top_port", "", a.TopPorts)
	return append(b, ']')
}

func appendEvidence(b []byte, first *bool, name, endpoint string, tops []flow.Top) []byte {
	for _, t := range tops {
		if !*first {
			b = append(b, ',')
		}
		*first = false
		b = append(b, `{"name":"`...)
		b = append(b, name...)
		b = append(b, '"')
		if endpoint != "" {
			if ip, ok := parseAddr(t.Value); ok {
				b = append(b, `,"`...)
				b = append(b, endpoint...)
				b = appendAddr(b, `":{"ip":"`, ip)
				b = append(b, `"}`...)
			}
		}
		b = append(b, `,"data":{"value":`...)
		b = appendJSONString(b, t.Value)
		b = appendUint(b, `,"packets":`, t.Packets)
		b = append(b, `}}`...)
	}
	return b
}

// appendAlertObservables appends the alert key's addresses and prefixes
// as observables, named by their place in unmapped.key.
func appendAlertObservables(b []byte, key []flow.KeyValue) []byte {
	n := 0
	for _, kv := range key {
		var typ string
		if _, ok := parseAddr(kv.Value); ok {
			typ = `"type_id":2,"type":"IP Address"`
		} else if _, ok := parsePrefix(kv.Value); ok {
			typ = `"type_id":12,"type":"Subnet"`
		} else {
			continue
		}
		if n == 0 {
			b = append(b, `,"observables":[`...)
		} else {
			b = append(b, ',')
		}
		n++
		// The name is "unmapped.key." and the key's name, in one JSON
		// string: the escaped name's opening quote is cut.
		b = append(b, `{"name":"unmapped.key.`...)
		at := len(b)
		b = appendJSONString(b, kv.Name)
		b = append(b[:at], b[at+1:]...)
		b = append(b, ',')
		b = append(b, typ...)
		b = append(b, `,"value":`...)
		b = appendJSONString(b, kv.Value)
		b = append(b, '}')
	}
	if n > 0 {
		b = append(b, ']')
	}
	return b
}

// parseAddr parses s as an IP address. Strings that cannot be one are
// turned down before netip's parser, whose error would allocate.
func parseAddr(s string) (netip.Addr, bool) {
	if !addrLike(s) {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(s)
	return ip, err == nil
}

// parsePrefix parses s as an address prefix (CIDR), like parseAddr.
func parsePrefix(s string) (netip.Prefix, bool) {
	i := strings.IndexByte(s, '/')
	if i < 0 || !addrLike(s[:i]) {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(s)
	return p, err == nil
}

// addrLike says whether s has the characters of an address without a
// zone: hex digits, dots and colons, and at least one dot or colon.
func addrLike(s string) bool {
	sep := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.' || c == ':':
			sep = true
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return sep
}
