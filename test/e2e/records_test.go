package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/test/netlab"
)

// flowRecord is one line of --flows-out, as docs/FLOWS.md defines it.
type flowRecord struct {
	Kind           string    `json:"kind"`
	Start          time.Time `json:"start"`
	End            time.Time `json:"end"`
	Interface      string    `json:"interface"`
	Ifindex        int       `json:"ifindex"`
	Direction      string    `json:"direction"`
	IPVersion      int       `json:"ip_version"`
	SrcAddr        string    `json:"src_addr"`
	DstAddr        string    `json:"dst_addr"`
	SrcPort        uint16    `json:"src_port"`
	DstPort        uint16    `json:"dst_port"`
	Proto          uint8     `json:"proto"`
	Packets        uint64    `json:"packets"`
	Bytes          uint64    `json:"bytes"`
	PacketsLo      uint64    `json:"packets_lo"`
	PacketsHi      uint64    `json:"packets_hi"`
	BytesLo        uint64    `json:"bytes_lo"`
	BytesHi        uint64    `json:"bytes_hi"`
	SampledPackets uint64    `json:"sampled_packets"`
	SampledBytes   uint64    `json:"sampled_bytes"`
	SamplingRate   uint32    `json:"sampling_rate"`
	TCPFlags       uint8     `json:"tcp_flags"`
	TOS            uint8     `json:"tos"`
	TTLMin         uint8     `json:"ttl_min"`
	TTLMax         uint8     `json:"ttl_max"`
	VLAN           uint16    `json:"vlan"`
	InnerVLAN      uint16    `json:"inner_vlan"`
	Tunnel         string    `json:"tunnel"`
	VNI            uint32    `json:"vni"`
	EndReason      string    `json:"end_reason"`
	Line           int       `json:"-"`
}

// flowKey is what identifies a flow in these tests (one interface, one
// direction, no VLAN or tunnel).
type flowKey struct {
	IPVersion        int
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
}

func (k flowKey) String() string {
	return fmt.Sprintf("proto %d %s:%d -> %s:%d", k.Proto, k.Src, k.SrcPort, k.Dst, k.DstPort)
}

func (r *flowRecord) key() flowKey {
	return flowKey{
		IPVersion: r.IPVersion,
		Src:       netip.MustParseAddr(r.SrcAddr),
		Dst:       netip.MustParseAddr(r.DstAddr),
		Proto:     r.Proto,
		SrcPort:   r.SrcPort,
		DstPort:   r.DstPort,
	}
}

var endReasons = []string{"idle", "active", "tcp_end", "shutdown", "evicted"}

// parseFlows reads JSON lines of flow records and checks every line
// against the documented schema: every key present with its JSON type
// and a valid value. Lines of kind "alert" are skipped.
func parseFlows(t *testing.T, name string, data []byte) []flowRecord {
	t.Helper()
	var recs []flowRecord
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		where := fmt.Sprintf("%s:%d", name, line)
		var raw map[string]any
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("%s: not a JSON object: %v: %s", where, err, sc.Text())
		}
		if raw["kind"] == "alert" {
			continue
		}
		checkFlowSchema(t, where, raw)
		var r flowRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v: %s", where, err, sc.Text())
		}
		r.Line = line
		checkFlowValues(t, where, &r)
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return recs
}

func checkFlowSchema(t *testing.T, where string, raw map[string]any) {
	t.Helper()
	for _, k := range []string{"kind", "start", "end", "interface", "direction", "src_addr", "dst_addr", "end_reason"} {
		if _, ok := raw[k].(string); !ok {
			t.Errorf("%s: %q is %T (%v), want a string", where, k, raw[k], raw[k])
		}
	}
	for _, k := range []string{"start", "end"} {
		s, _ := raw[k].(string)
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil || !strings.HasSuffix(s, "Z") {
			t.Errorf("%s: %q = %q, want an RFC 3339 UTC timestamp ending in Z (%v)", where, k, s, err)
		}
	}
	maxOf := map[string]uint64{
		"ifindex": math.MaxUint32, "ip_version": 6, "src_port": 65535, "dst_port": 65535, "proto": 255,
		"packets": math.MaxUint64, "bytes": math.MaxUint64, "sampled_packets": math.MaxUint64,
		"packets_lo": math.MaxUint64, "packets_hi": math.MaxUint64, "bytes_lo": math.MaxUint64, "bytes_hi": math.MaxUint64,
		"sampled_bytes": math.MaxUint64, "sampling_rate": math.MaxUint32, "tcp_flags": 255,
		"tos": 255, "ttl_min": 255, "ttl_max": 255,
	}
	optional := map[string]uint64{"vlan": 4095, "inner_vlan": 4095}
	// tunnel ("vxlan" or "geneve") and vni come together, for
	// decapsulated traffic only.
	tunnel, hasTunnel := raw["tunnel"]
	if _, hasVNI := raw["vni"]; hasTunnel != hasVNI {
		t.Errorf("%s: tunnel %v and vni %v: documented as present together", where, raw["tunnel"], raw["vni"])
	}
	if hasTunnel {
		if tunnel != "vxlan" && tunnel != "geneve" {
			t.Errorf("%s: tunnel %v, want \"vxlan\" or \"geneve\"", where, tunnel)
		}
		maxOf["vni"] = 1<<24 - 1
	}
	check := func(k string, max uint64, required bool) {
		v, present := raw[k]
		if !present {
			if required {
				t.Errorf("%s: key %q missing", where, k)
			}
			return
		}
		n, ok := v.(json.Number)
		if !ok {
			t.Errorf("%s: %q is %T (%v), want a number", where, k, v, v)
			return
		}
		u, err := strconv.ParseUint(string(n), 10, 64)
		if err != nil || u > max {
			t.Errorf("%s: %q = %s, want an integer in 0..%d", where, k, n, max)
		}
		if !required && u == 0 {
			t.Errorf("%s: %q = 0, documented as omitted when 0", where, k)
		}
	}
	for k, m := range maxOf {
		check(k, m, true)
	}
	for k, m := range optional {
		check(k, m, false)
	}
}

func checkFlowValues(t *testing.T, where string, r *flowRecord) {
	t.Helper()
	if r.Kind != "flow" {
		t.Errorf("%s: kind %q, want \"flow\"", where, r.Kind)
	}
	if r.End.Before(r.Start) {
		t.Errorf("%s: end %s before start %s", where, r.End, r.Start)
	}
	if r.Direction != "ingress" && r.Direction != "egress" {
		t.Errorf("%s: direction %q", where, r.Direction)
	}
	for _, a := range []string{r.SrcAddr, r.DstAddr} {
		ip, err := netip.ParseAddr(a)
		switch {
		case err != nil:
			t.Errorf("%s: address %q: %v", where, a, err)
		case ip.String() != a:
			t.Errorf("%s: address %q not in canonical form %q", where, a, ip)
		case r.IPVersion == 4 && !ip.Is4(), r.IPVersion == 6 && !ip.Is6(), r.IPVersion != 4 && r.IPVersion != 6:
			t.Errorf("%s: address %q with ip_version %d", where, a, r.IPVersion)
		}
	}
	if !slices.Contains(endReasons, r.EndReason) {
		t.Errorf("%s: end_reason %q not one of %v", where, r.EndReason, endReasons)
	}
	if r.SampledPackets == 0 || r.SamplingRate == 0 || r.Packets < r.SampledPackets || r.Bytes < r.SampledBytes {
		t.Errorf("%s: packets %d bytes %d sampled %d/%d rate %d: inconsistent",
			where, r.Packets, r.Bytes, r.SampledPackets, r.SampledBytes, r.SamplingRate)
	}
	// The 95% intervals hold the estimates and what was seen; at rate 1
	// the lower end is exact (the upper one is too unless the rate rose
	// while the flow was open).
	if r.PacketsLo > r.Packets || r.Packets > r.PacketsHi || r.PacketsLo < r.SampledPackets ||
		r.BytesLo > r.Bytes || r.Bytes > r.BytesHi || r.BytesLo < r.SampledBytes ||
		(r.SamplingRate == 1 && (r.PacketsLo != r.Packets || r.BytesLo != r.Bytes)) {
		t.Errorf("%s: packets %d in [%d, %d], bytes %d in [%d, %d], sampled %d/%d at rate %d: inconsistent intervals",
			where, r.Packets, r.PacketsLo, r.PacketsHi, r.Bytes, r.BytesLo, r.BytesHi, r.SampledPackets, r.SampledBytes, r.SamplingRate)
	}
	if r.TTLMin > r.TTLMax {
		t.Errorf("%s: ttl_min %d > ttl_max %d", where, r.TTLMin, r.TTLMax)
	}
	if r.Proto != 6 && r.TCPFlags != 0 {
		t.Errorf("%s: tcp_flags %#x on protocol %d", where, r.TCPFlags, r.Proto)
	}
	if (r.Proto == 1 || r.Proto == 58) && r.SrcPort != 0 {
		t.Errorf("%s: ICMP src_port %d, want 0", where, r.SrcPort)
	}
}

// readFlowsFile reads and checks a flows file; a missing file has no
// records.
func readFlowsFile(t *testing.T, path string) []flowRecord {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return parseFlows(t, filepath.Base(path), data)
}

// byKey groups records by flow key.
func byKey(recs []flowRecord) map[flowKey][]flowRecord {
	m := map[flowKey][]flowRecord{}
	for _, r := range recs {
		m[r.key()] = append(m[r.key()], r)
	}
	return m
}

// truth is what really crossed the wire for one flow.
type truth struct {
	packets, bytes uint64
	tcpFlags       uint8
	tos            uint8 // of the first packet
	ttlMin, ttlMax uint8
	first, last    time.Time // wall clock before the first and after the last packet was sent
}

func (w *truth) addFrame(length int, fi netlab.FrameInfo) {
	if w.packets == 0 {
		w.tos, w.ttlMin, w.ttlMax = fi.TOS, fi.TTL, fi.TTL
	}
	w.packets++
	w.bytes += uint64(length)
	w.tcpFlags |= fi.TCPFlags
	w.ttlMin = min(w.ttlMin, fi.TTL)
	w.ttlMax = max(w.ttlMax, fi.TTL)
}

func frameKey(fi netlab.FrameInfo) flowKey {
	return flowKey{IPVersion: fi.IPVersion, Src: fi.Src, Dst: fi.Dst, Proto: fi.Proto, SrcPort: fi.SrcPort, DstPort: fi.DstPort}
}

func udpKey(s *netlab.Sender) flowKey {
	return flowKey{IPVersion: ipVersion(s.Dst.Addr()), Src: s.Src.Addr(), Dst: s.Dst.Addr(), Proto: 17, SrcPort: s.Src.Port(), DstPort: s.Dst.Port()}
}

func ipVersion(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}
