package ipfix

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/netsampler/goflow2/v2/decoders/netflow"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/export/exporttest"
	"github.com/vigil-sensor/vigil/flow"
)

// ipfixTestRecord returns a varied flow whose samples were all taken at
// rate (exporttest.Flow).
func ipfixTestRecord(i int, v6 bool, rate uint32) flow.Record { return exporttest.Flow(i, v6, rate) }

func ipfixItems(recs []flow.Record) [][]byte {
	enc := NewEncoder()
	items := make([][]byte, len(recs))
	for i := range recs {
		items[i] = enc.AppendFlow(nil, &recs[i])
	}
	return items
}

func TestIPFIXEncoderContract(t *testing.T) {
	enc := NewEncoder()
	if enc.Kinds() != export.KindFlows {
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
	enc := NewEncoder()
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
	tr := newTransport("udp", u.addr(), options{ObservationDomainID: 7, Clock: clock})
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
	if len(m.Templates) != 2 || m.Templates[0].TemplateId != TemplateIPv4 || m.Templates[1].TemplateId != TemplateIPv6 {
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
		{TemplateSelector, []ipfixField{{302, 4}}, []ipfixField{{302, 4}, {304, 2}, {34, 4}, {311, 8}}},
		{TemplateSpacing, []ipfixField{{302, 4}}, []ipfixField{{304, 2}, {305, 4}, {306, 4}}},
	} {
		ot := m.OptionsTemplates[i]
		if ot.TemplateId != w.id || ot.ScopeFieldCount != 1 ||
			!cmp.Equal(w.scope, fields(ot.Scopes), cmp.AllowUnexported(ipfixField{})) ||
			!cmp.Equal(w.options, fields(ot.Options), cmp.AllowUnexported(ipfixField{})) {
			t.Errorf("options template %d: %+v", i, ot)
		}
	}
	wantSel := []ipfixSelector{
		{Template: TemplateSelector, Scope: 100, ID: 100, Algorithm: 4, Interval: 100, Probability: 0.01},
		{Template: TemplateSpacing, Scope: 100, Algorithm: 4, PacketInterval: 1, PacketSpace: 99},
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
	it, err := parseIPFIXItem(NewEncoder().AppendFlow(nil, &r))
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
