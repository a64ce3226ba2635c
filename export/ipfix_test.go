package export

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/netsampler/goflow2/v2/decoders/netflow"

	"github.com/vigil-sensor/vigil/flow"
)

// ipfixTestBase is a start time with sub-millisecond digits, so that
// tests see the truncation to milliseconds.
var ipfixTestBase = time.Date(2026, 3, 4, 5, 6, 7, 891_234_567, time.UTC).UnixNano()

// ipfixTestRecord returns a varied flow whose samples were all taken at
// rate: TCP, UDP, ICMP and GRE; both directions; VLAN tags; every end
// reason.
func ipfixTestRecord(i int, v6 bool, rate uint32) flow.Record {
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
	start := ipfixTestBase + int64(i)*1_234_567
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

// ipfixFlow is a flow data record decoded by goflow2, field by field.
type ipfixFlow struct {
	Src, Dst          netip.Addr
	SrcPort, DstPort  uint16
	ICMPTypeCode      uint16
	Proto, TOS        uint8
	TCPFlags          uint16
	Octets, Packets   uint64
	StartMs, EndMs    uint64
	In, Out           uint32
	Direction         uint8
	VLAN, InnerVLAN   uint16
	EndReason         uint8
	MinTTL, MaxTTL    uint8
	Selector          uint32
	UnknownFieldTypes []uint16
}

// wantIPFIXFlow is what the encoder must put on the wire for r.
func wantIPFIXFlow(r *flow.Record) ipfixFlow {
	k := &r.Key
	rate := uint64(max(r.SamplingRate(), 1))
	w := ipfixFlow{
		Src: k.Src(), Dst: k.Dst(), SrcPort: k.SrcPort, DstPort: k.DstPort,
		Proto: k.Proto, TOS: r.TOS, TCPFlags: uint16(r.TCPFlags),
		Octets: (r.Bytes + rate/2) / rate, Packets: (r.Packets + rate/2) / rate,
		StartMs: uint64(r.Start / 1e6), EndMs: uint64(r.End / 1e6),
		Direction: uint8(k.Direction), VLAN: k.VLAN, InnerVLAN: k.InnerVLAN,
		EndReason: uint8(r.EndReason), MinTTL: r.MinTTL, MaxTTL: r.MaxTTL, Selector: uint32(rate),
	}
	if k.Proto == 1 || k.Proto == 58 {
		w.SrcPort, w.DstPort, w.ICMPTypeCode = 0, 0, k.DstPort
	}
	if k.Direction == flow.Egress {
		w.Out = k.Ifindex
	} else {
		w.In = k.Ifindex
	}
	return w
}

func ipfixUint(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

func decodeIPFIXFlow(t *testing.T, rec netflow.DataRecord) ipfixFlow {
	t.Helper()
	var f ipfixFlow
	for _, v := range rec.Values {
		b, ok := v.Value.([]byte)
		if !ok {
			t.Fatalf("field %d: value %T", v.Type, v.Value)
		}
		u := ipfixUint(b)
		switch v.Type {
		case ieSourceIPv4Address, ieSourceIPv6Address:
			f.Src, _ = netip.AddrFromSlice(b)
		case ieDestinationIPv4Address, ieDestinationIPv6Address:
			f.Dst, _ = netip.AddrFromSlice(b)
		case ieSourceTransportPort:
			f.SrcPort = uint16(u)
		case ieDestinationTransportPort:
			f.DstPort = uint16(u)
		case ieICMPTypeCodeIPv4, ieICMPTypeCodeIPv6:
			f.ICMPTypeCode = uint16(u)
		case ieProtocolIdentifier:
			f.Proto = uint8(u)
		case ieIPClassOfService:
			f.TOS = uint8(u)
		case ieTCPControlBits:
			f.TCPFlags = uint16(u)
		case ieOctetDeltaCount:
			f.Octets = u
		case iePacketDeltaCount:
			f.Packets = u
		case ieFlowStartMilliseconds:
			f.StartMs = u
		case ieFlowEndMilliseconds:
			f.EndMs = u
		case ieIngressInterface:
			f.In = uint32(u)
		case ieEgressInterface:
			f.Out = uint32(u)
		case ieFlowDirection:
			f.Direction = uint8(u)
		case ieVlanID:
			f.VLAN = uint16(u)
		case ieDot1qCustomerVlanID:
			f.InnerVLAN = uint16(u)
		case ieFlowEndReason:
			f.EndReason = uint8(u)
		case ieMinimumTTL:
			f.MinTTL = uint8(u)
		case ieMaximumTTL:
			f.MaxTTL = uint8(u)
		case ieSelectorID:
			f.Selector = uint32(u)
		default:
			f.UnknownFieldTypes = append(f.UnknownFieldTypes, v.Type)
		}
	}
	return f
}

// ipfixSelector is a selector options record decoded by goflow2, from
// either options template.
type ipfixSelector struct {
	Template                    uint16
	Scope, ID                   uint32
	Algorithm                   uint16
	Interval                    uint32
	Probability                 float64
	PacketInterval, PacketSpace uint32
}

func decodeIPFIXSelector(t *testing.T, template uint16, rec netflow.OptionsDataRecord) ipfixSelector {
	t.Helper()
	s := ipfixSelector{Template: template}
	if len(rec.ScopesValues) != 1 || rec.ScopesValues[0].Type != ieSelectorID {
		t.Fatalf("selector scope: %+v", rec.ScopesValues)
	}
	s.Scope = uint32(ipfixUint(rec.ScopesValues[0].Value.([]byte)))
	for _, v := range rec.OptionsValues {
		b := v.Value.([]byte)
		switch v.Type {
		case ieSelectorID:
			s.ID = uint32(ipfixUint(b))
		case ieSelectorAlgorithm:
			s.Algorithm = uint16(ipfixUint(b))
		case ieSamplingInterval:
			s.Interval = uint32(ipfixUint(b))
		case ieSamplingProbability:
			s.Probability = math.Float64frombits(ipfixUint(b))
		case ieSamplingPacketInterval:
			s.PacketInterval = uint32(ipfixUint(b))
		case ieSamplingPacketSpace:
			s.PacketSpace = uint32(ipfixUint(b))
		default:
			t.Fatalf("unexpected selector option field %d", v.Type)
		}
	}
	return s
}

// ipfixMessage is one decoded message, in the order of its sets.
type ipfixMessage struct {
	Len, Seq, Domain uint32
	ExportTime       uint32
	Templates        []netflow.TemplateRecord
	OptionsTemplates []netflow.IPFIXOptionsTemplateRecord
	Selectors        []ipfixSelector
	Flows            []ipfixFlow
	// Order lists the sets: "T" templates, "O" options templates,
	// "S<rate>" and "P<rate>" the selector records of the two options
	// templates, "D<id>" a data set.
	Order []string
}

// ipfixCollector decodes messages with goflow2, keeping templates
// across messages of one session as a collector does.
type ipfixCollector struct {
	t  *testing.T
	ts netflow.NetFlowTemplateSystem
}

func newIPFIXCollector(t *testing.T) *ipfixCollector {
	return &ipfixCollector{t: t, ts: netflow.CreateTemplateSystem()}
}

func (c *ipfixCollector) decode(b []byte) ipfixMessage {
	t := c.t
	t.Helper()
	var nf9 netflow.NFv9Packet
	var p netflow.IPFIXPacket
	if err := netflow.DecodeMessageVersion(bytes.NewBuffer(b), c.ts, &nf9, &p); err != nil {
		t.Fatalf("goflow2 decode: %v", err)
	}
	if p.Version != ipfixVersion || int(p.Length) != len(b) {
		t.Fatalf("header version %d length %d, message of %d bytes", p.Version, p.Length, len(b))
	}
	m := ipfixMessage{Len: uint32(p.Length), Seq: p.SequenceNumber, Domain: p.ObservationDomainId, ExportTime: p.ExportTime}
	for _, fs := range p.FlowSets {
		switch s := fs.(type) {
		case netflow.TemplateFlowSet:
			m.Templates = append(m.Templates, s.Records...)
			m.Order = append(m.Order, "T")
		case netflow.IPFIXOptionsTemplateFlowSet:
			m.OptionsTemplates = append(m.OptionsTemplates, s.Records...)
			m.Order = append(m.Order, "O")
		case netflow.OptionsDataFlowSet:
			for _, r := range s.Records {
				sel := decodeIPFIXSelector(t, s.Id, r)
				m.Selectors = append(m.Selectors, sel)
				kind := "S"
				if s.Id == IPFIXTemplateSpacing {
					kind = "P"
				}
				m.Order = append(m.Order, fmt.Sprintf("%s%d", kind, sel.Scope))
			}
		case netflow.DataFlowSet:
			for _, r := range s.Records {
				m.Flows = append(m.Flows, decodeIPFIXFlow(t, r))
			}
			m.Order = append(m.Order, fmt.Sprintf("D%d", s.Id))
		case netflow.RawFlowSet:
			t.Fatalf("set %d without a template (collector has not seen it)", s.Id)
		default:
			t.Fatalf("unexpected set %T", fs)
		}
	}
	return m
}

// udpCollector is a loopback UDP socket that collects datagrams.
type udpCollector struct {
	pc net.PacketConn
}

func newUDPCollector(t *testing.T) *udpCollector {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.(*net.UDPConn).SetReadBuffer(8 << 20); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return &udpCollector{pc: pc}
}

func (u *udpCollector) addr() string { return u.pc.LocalAddr().String() }

// read returns the datagrams that arrive until none came for 100 ms.
func (u *udpCollector) read(t *testing.T) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 70000)
	for range 100000 {
		_ = u.pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, err := u.pc.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return out
			}
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(buf[:n]))
	}
	t.Fatal("too many datagrams")
	return nil
}

func ipfixItems(recs []flow.Record) [][]byte {
	enc := NewIPFIXEncoder()
	items := make([][]byte, len(recs))
	for i := range recs {
		items[i] = enc.AppendFlow(nil, &recs[i])
	}
	return items
}

func ipfixSendAll(t *testing.T, tr *IPFIXTransport, items [][]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := tr.Send(ctx, items)
	if err != nil || n != len(items) {
		t.Fatalf("Send = %d, %v; want %d, nil", n, err, len(items))
	}
}

func TestIPFIXEncoderContract(t *testing.T) {
	enc := NewIPFIXEncoder()
	if enc.Kinds() != KindFlows {
		t.Errorf("Kinds = %v", enc.Kinds())
	}
	dst := []byte("x")
	if got := enc.AppendAlert(dst, &flow.Alert{ID: "a"}); string(got) != "x" {
		t.Errorf("AppendAlert changed dst: %q", got)
	}
	for _, v6 := range []bool{false, true} {
		r := ipfixTestRecord(1, v6, 10)
		item := enc.AppendFlow([]byte("prefix"), &r)[len("prefix"):]
		it, err := parseIPFIXItem(item)
		if err != nil {
			t.Fatal(err)
		}
		want := ipfixRecLenV4
		if v6 {
			want = ipfixRecLenV6
		}
		if len(it.record) != want || it.rate != 10 {
			t.Errorf("v6=%v: record of %d bytes rate %d, want %d bytes rate 10", v6, len(it.record), it.rate, want)
		}
	}
	// Items that are not the encoder's are refused.
	good := enc.AppendFlow(nil, new(ipfixTestRecord(0, false, 1)))
	for name, bad := range map[string][]byte{
		"empty":    nil,
		"version":  append([]byte{9}, good[1:]...),
		"template": append([]byte{1, 1, 9}, good[3:]...),
		"short":    good[:len(good)-1],
		"rate 0":   append(bytes.Clone(good[:len(good)-4]), 0, 0, 0, 0),
	} {
		if _, err := parseIPFIXItem(bad); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestIPFIXEncodeAllocs(t *testing.T) {
	enc := NewIPFIXEncoder()
	r4, r6 := ipfixTestRecord(4, false, 100), ipfixTestRecord(5, true, 100)
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(1000, func() {
		buf = enc.AppendFlow(buf[:0], &r4)
		buf = enc.AppendFlow(buf, &r6)
	})
	if allocs != 0 {
		t.Errorf("AppendFlow allocates %.1f times per record pair", allocs)
	}
}

// TestIPFIXTemplatesAndRecords decodes what the UDP transport sends with
// goflow2: both templates with their fields, the selector options
// template, and every field of IPv4 and IPv6 records.
func TestIPFIXTemplatesAndRecords(t *testing.T) {
	u := newUDPCollector(t)
	clock := flow.NewManualClock(time.Unix(1_800_000_000, 0))
	tr := NewIPFIXUDP(u.addr(), IPFIXOptions{ObservationDomainID: 7, Clock: clock})
	defer tr.Close()
	var recs []flow.Record
	for i := range 12 {
		recs = append(recs, ipfixTestRecord(i, i >= 6, 100))
	}
	ipfixSendAll(t, tr, ipfixItems(recs))

	dgrams := u.read(t)
	if len(dgrams) != 1 {
		t.Fatalf("%d datagrams, want 1", len(dgrams))
	}
	m := newIPFIXCollector(t).decode(dgrams[0])
	if m.Domain != 7 || m.Seq != 0 || m.ExportTime != 1_800_000_000 {
		t.Errorf("header: domain %d seq %d export time %d", m.Domain, m.Seq, m.ExportTime)
	}
	if diff := cmp.Diff([]string{"T", "O", "O", "S100", "P100", "D256", "D257"}, m.Order); diff != "" {
		t.Errorf("sets (-want +got):\n%s", diff)
	}
	fields := func(fs []netflow.Field) []ipfixField {
		var out []ipfixField
		for _, f := range fs {
			if f.PenProvided {
				t.Errorf("enterprise field %d", f.Type)
			}
			out = append(out, ipfixField{f.Type, f.Length})
		}
		return out
	}
	if len(m.Templates) != 2 || m.Templates[0].TemplateId != IPFIXTemplateIPv4 || m.Templates[1].TemplateId != IPFIXTemplateIPv6 {
		t.Fatalf("templates: %+v", m.Templates)
	}
	for i, want := range [][]ipfixField{ipfixFieldsV4, ipfixFieldsV6} {
		if diff := cmp.Diff(want, fields(m.Templates[i].Fields), cmp.AllowUnexported(ipfixField{})); diff != "" {
			t.Errorf("template %d fields (-want +got):\n%s", m.Templates[i].TemplateId, diff)
		}
	}
	// The templates name the standard elements, spelled out here so a
	// change to the constants cannot hide a wrong ID.
	wantV4 := []uint16{8, 12, 32, 7, 11, 4, 5, 6, 1, 2, 152, 153, 10, 14, 61, 58, 245, 136, 52, 53, 302}
	if diff := cmp.Diff(wantV4, ipfixIDs(ipfixFieldsV4)); diff != "" {
		t.Errorf("IPv4 element IDs (-want +got):\n%s", diff)
	}
	if len(m.OptionsTemplates) != 2 {
		t.Fatalf("options templates: %+v", m.OptionsTemplates)
	}
	for i, w := range []struct {
		id             uint16
		scope, options []ipfixField
	}{
		{IPFIXTemplateSelector, []ipfixField{{302, 4}}, []ipfixField{{302, 4}, {304, 2}, {34, 4}, {311, 8}}},
		{IPFIXTemplateSpacing, []ipfixField{{302, 4}}, []ipfixField{{304, 2}, {305, 4}, {306, 4}}},
	} {
		ot := m.OptionsTemplates[i]
		if ot.TemplateId != w.id || ot.ScopeFieldCount != 1 ||
			!cmp.Equal(w.scope, fields(ot.Scopes), cmp.AllowUnexported(ipfixField{})) ||
			!cmp.Equal(w.options, fields(ot.Options), cmp.AllowUnexported(ipfixField{})) {
			t.Errorf("options template %d: %+v", i, ot)
		}
	}
	wantSel := []ipfixSelector{
		{Template: IPFIXTemplateSelector, Scope: 100, ID: 100, Algorithm: 4, Interval: 100, Probability: 0.01},
		{Template: IPFIXTemplateSpacing, Scope: 100, Algorithm: 4, PacketInterval: 1, PacketSpace: 99},
	}
	if diff := cmp.Diff(wantSel, m.Selectors); diff != "" {
		t.Errorf("selector (-want +got):\n%s", diff)
	}
	var want []ipfixFlow
	for i := range recs {
		want = append(want, wantIPFIXFlow(&recs[i]))
	}
	if diff := cmp.Diff(want, m.Flows, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("flows (-want +got):\n%s", diff)
	}
	// Spot checks against the record, not against wantIPFIXFlow.
	f, r := m.Flows[0], recs[0]
	if f.Packets != r.SampledPackets || f.Octets != r.SampledBytes || f.StartMs != uint64(r.Start/1e6) || f.Src.String() != "10.1.0.0" {
		t.Errorf("first flow %+v from %+v", f, r)
	}
	if v6 := m.Flows[6]; !v6.Src.Is6() || v6.Src.String() != "2001:db8::106" {
		t.Errorf("IPv6 flow source %v", v6.Src)
	}
}

func ipfixIDs(fs []ipfixField) []uint16 {
	var ids []uint16
	for _, f := range fs {
		ids = append(ids, f.id)
	}
	return ids
}

// TestIPFIXMixedRateRounding: a record whose samples had different
// rates exports its estimates divided by the mean rate, rounded.
func TestIPFIXMixedRateRounding(t *testing.T) {
	r := ipfixTestRecord(1, false, 1)
	r.Samples, r.RateSum = 3, 10+20+31 // mean 20.33 -> 20
	r.Packets, r.Bytes = 10+20+31, 500*10+600*20+709*31
	it, err := parseIPFIXItem(NewIPFIXEncoder().AppendFlow(nil, &r))
	if err != nil {
		t.Fatal(err)
	}
	c := newIPFIXCollector(t)
	// Decode the record alone through a hand-made message.
	msg := binary.BigEndian.AppendUint16(nil, ipfixVersion)
	msg = append(msg, make([]byte, 14)...)
	msg = append(msg, ipfixTemplateSets...)
	msg = binary.BigEndian.AppendUint16(msg, it.template)
	msg = binary.BigEndian.AppendUint16(msg, uint16(4+len(it.record)))
	msg = append(msg, it.record...)
	binary.BigEndian.PutUint16(msg[2:], uint16(len(msg)))
	f := c.decode(msg).Flows[0]
	// 61/20 = 3.05 -> 3; 38979/20 = 1948.95 -> 1949.
	if f.Selector != 20 || f.Packets != 3 || f.Octets != 1949 {
		t.Errorf("selector %d packets %d octets %d, want 20 3 1949", f.Selector, f.Packets, f.Octets)
	}
}

// TestIPFIXSequenceAndSizeLimit sends many records in small messages:
// every message stays within the limit and is filled, records keep
// their order, and each header's sequence number counts the data
// records (selector records included) of the messages before it.
func TestIPFIXSequenceAndSizeLimit(t *testing.T) {
	u := newUDPCollector(t)
	const limit = 600
	tr := NewIPFIXUDP(u.addr(), IPFIXOptions{MaxMessageSize: limit})
	defer tr.Close()
	var recs []flow.Record
	for i := range 300 {
		rate := uint32(1)
		if i >= 150 {
			rate = 50 // a new rate in the middle of the stream
		}
		recs = append(recs, ipfixTestRecord(i, i%3 == 0, rate))
	}
	items := ipfixItems(recs)
	ipfixSendAll(t, tr, items[:100])
	ipfixSendAll(t, tr, items[100:])

	c := newIPFIXCollector(t)
	var flows []ipfixFlow
	var seq uint32
	var selectors []uint32
	dgrams := u.read(t)
	for i, d := range dgrams {
		if len(d) > limit {
			t.Errorf("message %d: %d bytes > %d", i, len(d), limit)
		}
		m := c.decode(d)
		if m.Seq != seq {
			t.Errorf("message %d: sequence %d, want %d", i, m.Seq, seq)
		}
		seq += uint32(len(m.Flows) + len(m.Selectors))
		for _, s := range m.Selectors {
			if s.Template == IPFIXTemplateSelector {
				selectors = append(selectors, s.ID)
			}
		}
		flows = append(flows, m.Flows...)
		// Filled: the next record (at most a v6 record in a new set
		// with a selector record) would not have fitted, except at the
		// end of a Send.
		if i < len(dgrams)-1 && len(flows) != 100 && len(d)+4+ipfixRecLenV6+ipfixSelectorLen <= limit {
			t.Errorf("message %d: %d bytes, room left", i, len(d))
		}
	}
	if len(flows) != len(recs) {
		t.Fatalf("%d flows, want %d", len(flows), len(recs))
	}
	for i := range recs {
		if w := wantIPFIXFlow(&recs[i]); !cmp.Equal(w, flows[i], cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
			t.Fatalf("flow %d: %+v, want %+v", i, flows[i], w)
		}
	}
	// Rate 1 at the start, rate 50 once, when it first appears.
	if diff := cmp.Diff([]uint32{1, 50}, selectors); diff != "" {
		t.Errorf("selector records (-want +got):\n%s", diff)
	}
}

// TestIPFIXSelectorBeforeFirstUse: a rate's options record comes right
// before the first data record that refers to it, in the same message.
func TestIPFIXSelectorBeforeFirstUse(t *testing.T) {
	u := newUDPCollector(t)
	tr := NewIPFIXUDP(u.addr(), IPFIXOptions{})
	defer tr.Close()
	recs := []flow.Record{
		ipfixTestRecord(0, false, 10), ipfixTestRecord(1, false, 10),
		ipfixTestRecord(2, false, 20), ipfixTestRecord(3, true, 20),
		ipfixTestRecord(4, true, 10),
	}
	ipfixSendAll(t, tr, ipfixItems(recs))
	m := newIPFIXCollector(t).decode(u.read(t)[0])
	want := []string{"T", "O", "O", "S10", "P10", "D256", "S20", "P20", "D256", "D257"}
	if diff := cmp.Diff(want, m.Order); diff != "" {
		t.Errorf("sets (-want +got):\n%s", diff)
	}
}

// TestIPFIXTemplateRefresh: over UDP the templates and selector records
// go again after TemplateRefresh and after TemplateRefreshMessages
// messages, and not in between.
func TestIPFIXTemplateRefresh(t *testing.T) {
	u := newUDPCollector(t)
	start := time.Unix(1_800_000_000, 0)
	clock := flow.NewManualClock(start)
	tr := NewIPFIXUDP(u.addr(), IPFIXOptions{Clock: clock, TemplateRefresh: time.Minute, TemplateRefreshMessages: 4})
	defer tr.Close()
	c := newIPFIXCollector(t)
	send := func(i int, at time.Duration) ipfixMessage {
		t.Helper()
		clock.Set(start.Add(at))
		ipfixSendAll(t, tr, ipfixItems([]flow.Record{ipfixTestRecord(i, false, 8)}))
		d := u.read(t)
		if len(d) != 1 {
			t.Fatalf("%d datagrams", len(d))
		}
		return c.decode(d[0])
	}
	templated := func(m ipfixMessage) bool { return len(m.Templates) == 2 && len(m.OptionsTemplates) == 2 }
	steps := []struct {
		at        time.Duration
		templates bool
	}{
		{0, true},
		{10 * time.Second, false},
		{59 * time.Second, false},
		{60 * time.Second, true}, // time
		{61 * time.Second, false},
		{62 * time.Second, false},
		{63 * time.Second, false},
		{64 * time.Second, false},
		{65 * time.Second, true}, // 4 messages since the last templates
		{66 * time.Second, false},
	}
	for i, s := range steps {
		m := send(i, s.at)
		if templated(m) != s.templates {
			t.Errorf("message %d at %v: templates %v, want %v (%v)", i, s.at, templated(m), s.templates, m.Order)
		}
		// The selector record comes with every refresh, and only then.
		if got := len(m.Selectors) == 2; got != s.templates {
			t.Errorf("message %d: selector records %v", i, m.Selectors)
		}
	}
}

// TestIPFIXUDPConnectionRefused: with nobody listening, the kernel's
// ICMP port unreachable turns into ECONNREFUSED on a later send, which
// Send reports; the next Send opens a new session (templates again,
// sequence 0) once a collector is back on the port.
func TestIPFIXUDPConnectionRefused(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	tr := NewIPFIXUDP(addr, IPFIXOptions{})
	defer tr.Close()
	items := ipfixItems([]flow.Record{ipfixTestRecord(0, false, 1)})
	var sendErr error
	for range 50 {
		if _, sendErr = tr.Send(context.Background(), items); sendErr != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !errors.Is(sendErr, syscall.ECONNREFUSED) {
		t.Fatalf("Send error %v, want ECONNREFUSED", sendErr)
	}

	// A collector on the same port again.
	pc, err = net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	u := &udpCollector{pc: pc}
	defer pc.Close()
	ipfixSendAll(t, tr, items)
	d := u.read(t)
	if len(d) != 1 {
		t.Fatalf("%d datagrams", len(d))
	}
	if m := newIPFIXCollector(t).decode(d[0]); m.Seq != 0 || len(m.Templates) != 2 {
		t.Errorf("after reconnecting: sequence %d, %d templates", m.Seq, len(m.Templates))
	}
}

// TestIPFIXRejectsForeignItems: a malformed item stops Send after the
// items before it went out, with a *RejectedError the pipeline drops.
func TestIPFIXRejectsForeignItems(t *testing.T) {
	u := newUDPCollector(t)
	tr := NewIPFIXUDP(u.addr(), IPFIXOptions{})
	defer tr.Close()
	items := ipfixItems([]flow.Record{ipfixTestRecord(0, false, 1), ipfixTestRecord(1, false, 1)})
	items = [][]byte{items[0], []byte(`{"kind":"flow"}`), items[1]}
	n, err := tr.Send(context.Background(), items)
	var rej *RejectedError
	if n != 1 || !errors.As(err, &rej) {
		t.Fatalf("Send = %d, %v; want 1, *RejectedError", n, err)
	}
	ipfixSendAll(t, tr, items[2:])
	var flows int
	c := newIPFIXCollector(t)
	for _, d := range u.read(t) {
		flows += len(c.decode(d).Flows)
	}
	if flows != 2 {
		t.Errorf("%d flows arrived, want 2", flows)
	}
}

// tcpCollector accepts IPFIX connections and splits each stream into
// messages by their length field.
type tcpCollector struct {
	ln    net.Listener
	conns chan net.Conn
}

func newTCPCollector(t *testing.T, rcvbuf int) *tcpCollector {
	lc := net.ListenConfig{}
	if rcvbuf > 0 {
		// Set on the listener so the accepted socket's window starts small.
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &tcpCollector{ln: ln, conns: make(chan net.Conn, 16)}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				close(c.conns)
				return
			}
			c.conns <- conn
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return c
}

func (c *tcpCollector) accept(t *testing.T) net.Conn {
	t.Helper()
	select {
	case conn := <-c.conns:
		t.Cleanup(func() { conn.Close() })
		return conn
	case <-time.After(5 * time.Second):
		t.Fatal("no connection")
		return nil
	}
}

// readMessage reads one IPFIX message from a stream.
func readIPFIXMessage(t *testing.T, r io.Reader) []byte {
	t.Helper()
	hdr := make([]byte, ipfixHeaderLen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		t.Fatalf("reading message header: %v", err)
	}
	n := int(binary.BigEndian.Uint16(hdr[2:]))
	if binary.BigEndian.Uint16(hdr) != ipfixVersion || n < ipfixHeaderLen {
		t.Fatalf("bad header %x", hdr)
	}
	msg := make([]byte, n)
	copy(msg, hdr)
	if _, err := io.ReadFull(r, msg[ipfixHeaderLen:]); err != nil {
		t.Fatalf("reading message: %v", err)
	}
	return msg
}

// TestIPFIXTCPStream sends over TCP and decodes the stream message by
// message: templates once at the start of the connection, sequence
// numbers across Sends, every record in order.
func TestIPFIXTCPStream(t *testing.T) {
	col := newTCPCollector(t, 0)
	clock := flow.NewManualClock(time.Unix(1_800_000_000, 0))
	tr := NewIPFIXTCP(col.ln.Addr().String(), IPFIXOptions{ObservationDomainID: 9, Clock: clock, MaxMessageSize: 4000})
	defer tr.Close()
	var recs []flow.Record
	for i := range 500 {
		recs = append(recs, ipfixTestRecord(i, i%2 == 0, uint32(1+i/100)))
	}
	items := ipfixItems(recs)
	ipfixSendAll(t, tr, items[:250])
	clock.Set(time.Unix(1_800_000_000, 0).Add(time.Hour)) // no refresh over TCP
	ipfixSendAll(t, tr, items[250:])

	conn := col.accept(t)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	c := newIPFIXCollector(t)
	var flows []ipfixFlow
	var seq uint32
	for i := 0; len(flows) < len(recs); i++ {
		m := c.decode(readIPFIXMessage(t, conn))
		if m.Len > 4000 || m.Domain != 9 || m.Seq != seq {
			t.Fatalf("message %d: length %d domain %d sequence %d (want %d)", i, m.Len, m.Domain, m.Seq, seq)
		}
		if (len(m.Templates) > 0) != (i == 0) {
			t.Errorf("message %d: %d templates", i, len(m.Templates))
		}
		seq += uint32(len(m.Flows) + len(m.Selectors))
		flows = append(flows, m.Flows...)
	}
	for i := range recs {
		if w := wantIPFIXFlow(&recs[i]); !cmp.Equal(w, flows[i], cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
			t.Fatalf("flow %d: %+v, want %+v", i, flows[i], w)
		}
	}
}

// TestIPFIXTCPReconnect: when the collector resets the connection, Send
// fails, and the next Send connects again and starts a new session
// with the templates, the selector records and sequence 0; so does a
// Send after Close.
func TestIPFIXTCPReconnect(t *testing.T) {
	col := newTCPCollector(t, 0)
	tr := NewIPFIXTCP(col.ln.Addr().String(), IPFIXOptions{WriteTimeout: 2 * time.Second})
	defer tr.Close()
	items := ipfixItems([]flow.Record{ipfixTestRecord(0, false, 5), ipfixTestRecord(1, true, 5)})
	ipfixSendAll(t, tr, items)
	first := col.accept(t)
	_ = first.SetReadDeadline(time.Now().Add(5 * time.Second))
	if m := newIPFIXCollector(t).decode(readIPFIXMessage(t, first)); len(m.Flows) != 2 {
		t.Fatalf("first session: %d flows", len(m.Flows))
	}
	// The collector goes away: it resets the connection.
	_ = first.(*net.TCPConn).SetLinger(0)
	first.Close()

	var err error
	for range 50 { // the reset reaches the sender's socket asynchronously
		var n int
		if n, err = tr.Send(context.Background(), items); err != nil {
			if n != 0 {
				t.Errorf("Send after reset accepted %d items", n)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err == nil {
		t.Fatal("Send kept succeeding after the collector reset the connection")
	}

	ipfixSendAll(t, tr, items)
	second := col.accept(t)
	_ = second.SetReadDeadline(time.Now().Add(5 * time.Second))
	m := newIPFIXCollector(t).decode(readIPFIXMessage(t, second))
	if m.Seq != 0 || len(m.Templates) != 2 || len(m.OptionsTemplates) != 2 || len(m.Selectors) != 2 || len(m.Flows) != 2 {
		t.Errorf("new session: sequence %d, %d templates, %d options templates, %d selectors, %d flows",
			m.Seq, len(m.Templates), len(m.OptionsTemplates), len(m.Selectors), len(m.Flows))
	}

	// Close, then Send: a third session.
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	ipfixSendAll(t, tr, items[:1])
	third := col.accept(t)
	_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if m := newIPFIXCollector(t).decode(readIPFIXMessage(t, third)); m.Seq != 0 || len(m.Templates) != 2 || len(m.Flows) != 1 {
		t.Errorf("after Close: sequence %d, %d templates, %d flows", m.Seq, len(m.Templates), len(m.Flows))
	}
}

// TestIPFIXTCPUnacknowledged: a collector that stops reading fills its
// window; Send then gives up at WriteTimeout and reports as accepted
// only the items the collector's kernel acknowledged, which the
// collector can then indeed read.
func TestIPFIXTCPUnacknowledged(t *testing.T) {
	col := newTCPCollector(t, 4096)
	tr := NewIPFIXTCP(col.ln.Addr().String(), IPFIXOptions{WriteTimeout: 500 * time.Millisecond, MaxMessageSize: 1400})
	defer tr.Close()
	var recs []flow.Record
	for i := range 60000 {
		recs = append(recs, ipfixTestRecord(i%200, false, 1))
	}
	items := ipfixItems(recs)
	startSend := time.Now()
	n, err := tr.Send(context.Background(), items)
	if err == nil || n <= 0 || n >= len(items) {
		t.Fatalf("Send = %d, %v; want some but fewer than %d and an error", n, err, len(items))
	}
	if d := time.Since(startSend); d > 3*time.Second {
		t.Errorf("Send took %v with a 500 ms write timeout", d)
	}
	t.Logf("accepted %d of %d items: %v", n, len(items), err)

	// Everything acknowledged is in the collector's socket.
	conn := col.accept(t)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	c := newIPFIXCollector(t)
	got := 0
	for got < n {
		got += len(c.decode(readIPFIXMessage(t, conn)).Flows)
	}
}

// TestIPFIXTCPContextCancel: a Send blocked on a collector that does not
// read returns when its context is cancelled.
func TestIPFIXTCPContextCancel(t *testing.T) {
	col := newTCPCollector(t, 4096)
	tr := NewIPFIXTCP(col.ln.Addr().String(), IPFIXOptions{WriteTimeout: time.Minute})
	defer tr.Close()
	var recs []flow.Record
	for i := range 60000 {
		recs = append(recs, ipfixTestRecord(i%200, false, 1))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	n, err := tr.Send(ctx, ipfixItems(recs))
	if !errors.Is(err, context.DeadlineExceeded) || n >= len(recs) {
		t.Fatalf("Send = %d, %v; want a deadline error", n, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Send returned after %v", d)
	}
}

func TestIPFIXOptionsDefaults(t *testing.T) {
	u := NewIPFIXUDP("127.0.0.1:1", IPFIXOptions{}).opt
	if u.MaxMessageSize != 1400 || u.TemplateRefresh != time.Minute || u.TemplateRefreshMessages != 1000 {
		t.Errorf("udp defaults: %+v", u)
	}
	if c := NewIPFIXTCP("127.0.0.1:1", IPFIXOptions{}).opt; c.MaxMessageSize != 65535 {
		t.Errorf("tcp message size %d", c.MaxMessageSize)
	}
	if c := NewIPFIXUDP("x:1", IPFIXOptions{MaxMessageSize: 100}).opt; c.MaxMessageSize != 512 {
		t.Errorf("small message size raised to %d", c.MaxMessageSize)
	}
	if !strings.Contains(string(ipfixTemplateSets), string([]byte{0, 3})) {
		t.Error("no options template set")
	}
}
