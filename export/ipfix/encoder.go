package ipfix

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/flow"
)

// IPFIX (RFC 7011) encoding: two data templates (IPv4 and IPv6 flows)
// and two options templates that announce each sampling rate as a
// Selector (RFC 5476), in the two forms collectors read. docs/IPFIX.md
// lists every field.

// IPFIX set and template IDs.
const (
	ipfixVersion       = 10
	ipfixHeaderLen     = 16
	ipfixSetHeaderLen  = 4
	ipfixTemplateSetID = 2
	ipfixOptionsSetID  = 3
	TemplateIPv4       = 256 // data template of IPv4 flows
	TemplateIPv6       = 257 // data template of IPv6 flows
	TemplateSelector   = 258 // options template: a rate as samplingInterval
	TemplateSpacing    = 259 // options template: a rate as packet interval and space
)

// Information Element IDs (IANA IPFIX registry).
const (
	ieOctetDeltaCount          = 1
	iePacketDeltaCount         = 2
	ieProtocolIdentifier       = 4
	ieIPClassOfService         = 5
	ieTCPControlBits           = 6
	ieSourceTransportPort      = 7
	ieSourceIPv4Address        = 8
	ieIngressInterface         = 10
	ieDestinationTransportPort = 11
	ieDestinationIPv4Address   = 12
	ieEgressInterface          = 14
	ieSourceIPv6Address        = 27
	ieDestinationIPv6Address   = 28
	ieICMPTypeCodeIPv4         = 32
	ieSamplingInterval         = 34
	ieMinimumTTL               = 52
	ieMaximumTTL               = 53
	ieVlanID                   = 58
	ieFlowDirection            = 61
	ieFlowEndReason            = 136
	ieICMPTypeCodeIPv6         = 139
	ieFlowStartMilliseconds    = 152
	ieFlowEndMilliseconds      = 153
	ieDot1qCustomerVlanID      = 245
	ieSelectorID               = 302
	ieSelectorAlgorithm        = 304
	ieSamplingPacketInterval   = 305
	ieSamplingPacketSpace      = 306
	ieSamplingProbability      = 311
)

// selectorAlgorithmUniform is IANA's "Uniform probabilistic Sampling":
// the XDP program keeps each packet with probability 1/N.
const selectorAlgorithmUniform = 4

type ipfixField struct{ id, length uint16 }

// The data templates. AppendFlow writes the fields in exactly this
// order; selectorId is last so a transport finds the rate at the end
// of a record.
var (
	ipfixFieldsV4 = ipfixTemplateFields(
		ipfixField{ieSourceIPv4Address, 4},
		ipfixField{ieDestinationIPv4Address, 4},
		ipfixField{ieICMPTypeCodeIPv4, 2},
	)
	ipfixFieldsV6 = ipfixTemplateFields(
		ipfixField{ieSourceIPv6Address, 16},
		ipfixField{ieDestinationIPv6Address, 16},
		ipfixField{ieICMPTypeCodeIPv6, 2},
	)
	// ipfixFieldsSelector is the first options template: scope
	// selectorId, then selectorId again (nfdump 1.7.1 reads only
	// non-scope fields), the algorithm, the rate as samplingInterval
	// (what nfdump 1.7.1, pmacct and goflow2 read) and
	// samplingProbability (the RFC 5476 parameter of uniform
	// probabilistic sampling).
	ipfixFieldsSelector = []ipfixField{
		{ieSelectorID, 4}, // scope
		{ieSelectorID, 4},
		{ieSelectorAlgorithm, 2},
		{ieSamplingInterval, 4},
		{ieSamplingProbability, 8},
	}
	// ipfixFieldsSpacing is the second: the same selector's rate as 1
	// packet in every 1+space (samplingPacketInterval 1,
	// samplingPacketSpace N-1), the form newer nfdump releases read
	// with the selectorId scope, where they take a samplingInterval as
	// one rate for the whole exporter.
	ipfixFieldsSpacing = []ipfixField{
		{ieSelectorID, 4}, // scope
		{ieSelectorAlgorithm, 2},
		{ieSamplingPacketInterval, 4},
		{ieSamplingPacketSpace, 4},
	}
)

func ipfixTemplateFields(addrs ...ipfixField) []ipfixField {
	return append(addrs,
		ipfixField{ieSourceTransportPort, 2},
		ipfixField{ieDestinationTransportPort, 2},
		ipfixField{ieProtocolIdentifier, 1},
		ipfixField{ieIPClassOfService, 1},
		ipfixField{ieTCPControlBits, 2},
		ipfixField{ieOctetDeltaCount, 8},
		ipfixField{iePacketDeltaCount, 8},
		ipfixField{ieFlowStartMilliseconds, 8},
		ipfixField{ieFlowEndMilliseconds, 8},
		ipfixField{ieIngressInterface, 4},
		ipfixField{ieEgressInterface, 4},
		ipfixField{ieFlowDirection, 1},
		ipfixField{ieVlanID, 2},
		ipfixField{ieDot1qCustomerVlanID, 2},
		ipfixField{ieFlowEndReason, 1},
		ipfixField{ieMinimumTTL, 1},
		ipfixField{ieMaximumTTL, 1},
		ipfixField{ieSelectorID, 4},
	)
}

func ipfixRecordLen(fields []ipfixField) int {
	n := 0
	for _, f := range fields {
		n += int(f.length)
	}
	return n
}

var (
	ipfixRecLenV4       = ipfixRecordLen(ipfixFieldsV4)
	ipfixRecLenV6       = ipfixRecordLen(ipfixFieldsV6)
	ipfixRecLenSelector = ipfixRecordLen(ipfixFieldsSelector)
	ipfixRecLenSpacing  = ipfixRecordLen(ipfixFieldsSpacing)
	// ipfixSelectorLen is what announcing a rate adds to a message: two
	// options data sets of one record each.
	ipfixSelectorLen = 2*ipfixSetHeaderLen + ipfixRecLenSelector + ipfixRecLenSpacing
	// ipfixTemplateSets is the Template Set and the Options Template Set,
	// sent at the start of a session and on every refresh.
	ipfixTemplateSets = ipfixAppendTemplateSets(nil)
)

func ipfixAppendTemplateSets(b []byte) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, ipfixTemplateSetID)
	b = append(b, 0, 0) // length
	for _, t := range []struct {
		id     uint16
		fields []ipfixField
	}{{TemplateIPv4, ipfixFieldsV4}, {TemplateIPv6, ipfixFieldsV6}} {
		b = binary.BigEndian.AppendUint16(b, t.id)
		b = binary.BigEndian.AppendUint16(b, uint16(len(t.fields)))
		b = ipfixAppendFields(b, t.fields)
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))

	// Options templates go one per set: nfdump 1.7.1 reads only the
	// first record of an Options Template Set.
	for _, t := range []struct {
		id     uint16
		fields []ipfixField
	}{{TemplateSelector, ipfixFieldsSelector}, {TemplateSpacing, ipfixFieldsSpacing}} {
		start = len(b)
		b = binary.BigEndian.AppendUint16(b, ipfixOptionsSetID)
		b = append(b, 0, 0)
		b = binary.BigEndian.AppendUint16(b, t.id)
		b = binary.BigEndian.AppendUint16(b, uint16(len(t.fields)))
		b = binary.BigEndian.AppendUint16(b, 1) // scope field count
		b = ipfixAppendFields(b, t.fields)
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	return b
}

func ipfixAppendFields(b []byte, fields []ipfixField) []byte {
	for _, f := range fields {
		b = binary.BigEndian.AppendUint16(b, f.id)
		b = binary.BigEndian.AppendUint16(b, f.length)
	}
	return b
}

// ipfixAppendSelector appends the two Options Data Sets that announce
// rate (its own selector), one record each: nfdump 1.7.1 reads only the
// first record of an options data set.
func ipfixAppendSelector(b []byte, rate uint32) []byte {
	b = binary.BigEndian.AppendUint16(b, TemplateSelector)
	b = binary.BigEndian.AppendUint16(b, uint16(ipfixSetHeaderLen+ipfixRecLenSelector))
	b = binary.BigEndian.AppendUint32(b, rate) // scope: selectorId
	b = binary.BigEndian.AppendUint32(b, rate) // selectorId
	b = binary.BigEndian.AppendUint16(b, selectorAlgorithmUniform)
	b = binary.BigEndian.AppendUint32(b, rate)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(1/float64(rate)))

	b = binary.BigEndian.AppendUint16(b, TemplateSpacing)
	b = binary.BigEndian.AppendUint16(b, uint16(ipfixSetHeaderLen+ipfixRecLenSpacing))
	b = binary.BigEndian.AppendUint32(b, rate) // scope: selectorId
	b = binary.BigEndian.AppendUint16(b, selectorAlgorithmUniform)
	b = binary.BigEndian.AppendUint32(b, 1)
	return binary.BigEndian.AppendUint32(b, rate-1)
}

// ipfixItemVersion is the first byte of every spool item the encoder
// makes, so that items spooled by this version stay readable after an
// upgrade that changes the templates.
const ipfixItemVersion = 1

// ipfixItemHeaderLen is the item's version byte and template ID.
const ipfixItemHeaderLen = 3

// Encoder turns flow records into IPFIX spool items. An item is
// [version 1][template ID, 2 bytes][the data record as sent on the
// wire]; the record's last field, selectorId, is its sampling rate, so
// a transport can announce the rate without encoder state. Encoding
// appends into dst and allocates nothing. It carries flows only.
type Encoder struct{}

// NewEncoder returns an IPFIX encoder.
func NewEncoder() *Encoder { return &Encoder{} }

// Kinds returns KindFlows.
func (*Encoder) Kinds() export.Kinds { return export.KindFlows }

// AppendAlert returns dst unchanged: IPFIX carries no alerts.
func (*Encoder) AppendAlert(dst []byte, _ *flow.Alert) []byte { return dst }

// AppendFlow appends the item for r to dst.
//
// Counters follow RFC 5476: packetDeltaCount and octetDeltaCount are
// the estimates divided by the record's sampling rate N (selector N),
// so a collector that multiplies by the announced rate gets Vigil's
// estimates back. When every sample of the record had rate N (the
// common case) the quotients are exactly the sampled counts; when the
// rate changed within the record they are rounded to the nearest
// integer (docs/IPFIX.md).
func (*Encoder) AppendFlow(dst []byte, r *flow.Record) []byte {
	k := &r.Key
	rate := max(r.SamplingRate(), 1)
	v6 := k.IPVersion == 6
	tid := uint16(TemplateIPv4)
	if v6 {
		tid = TemplateIPv6
	}
	dst = append(dst, ipfixItemVersion, byte(tid>>8), byte(tid))
	if v6 {
		dst = append(dst, k.SrcAddr[:]...)
		dst = append(dst, k.DstAddr[:]...)
	} else {
		dst = append(dst, k.SrcAddr[12:16]...)
		dst = append(dst, k.DstAddr[12:16]...)
	}
	sport, dport, icmp := k.SrcPort, k.DstPort, uint16(0)
	if (!v6 && k.Proto == 1) || (v6 && k.Proto == 58) {
		// Vigil keeps ICMP type<<8|code in DstPort; IPFIX has its own
		// field for it and no ports.
		sport, dport, icmp = 0, 0, k.DstPort
	}
	dst = binary.BigEndian.AppendUint16(dst, icmp)
	dst = binary.BigEndian.AppendUint16(dst, sport)
	dst = binary.BigEndian.AppendUint16(dst, dport)
	dst = append(dst, k.Proto, r.TOS)
	dst = binary.BigEndian.AppendUint16(dst, uint16(r.TCPFlags))
	n := uint64(rate)
	dst = binary.BigEndian.AppendUint64(dst, (r.Bytes+n/2)/n)
	dst = binary.BigEndian.AppendUint64(dst, (r.Packets+n/2)/n)
	dst = binary.BigEndian.AppendUint64(dst, unixMillis(r.Start))
	dst = binary.BigEndian.AppendUint64(dst, unixMillis(r.End))
	var in, out uint32
	if k.Direction == flow.Egress {
		out = k.Ifindex
	} else {
		in = k.Ifindex
	}
	dst = binary.BigEndian.AppendUint32(dst, in)
	dst = binary.BigEndian.AppendUint32(dst, out)
	dst = append(dst, byte(k.Direction))
	dst = binary.BigEndian.AppendUint16(dst, k.VLAN)
	dst = binary.BigEndian.AppendUint16(dst, k.InnerVLAN)
	dst = append(dst, r.EndReason.IPFIX(), r.MinTTL, r.MaxTTL)
	return binary.BigEndian.AppendUint32(dst, rate)
}

func unixMillis(ns int64) uint64 {
	if ns <= 0 {
		return 0
	}
	return uint64(ns / 1e6)
}

// ipfixItem is a spool item taken apart.
type ipfixItem struct {
	template uint16
	record   []byte
	rate     uint32
}

// parseIPFIXItem checks an item made by Encoder.
func parseIPFIXItem(item []byte) (ipfixItem, error) {
	if len(item) < ipfixItemHeaderLen {
		return ipfixItem{}, fmt.Errorf("IPFIX item of %d bytes is too short", len(item))
	}
	if item[0] != ipfixItemVersion {
		return ipfixItem{}, fmt.Errorf("IPFIX item version %d, want %d", item[0], ipfixItemVersion)
	}
	it := ipfixItem{template: binary.BigEndian.Uint16(item[1:3]), record: item[ipfixItemHeaderLen:]}
	want := 0
	switch it.template {
	case TemplateIPv4:
		want = ipfixRecLenV4
	case TemplateIPv6:
		want = ipfixRecLenV6
	default:
		return ipfixItem{}, fmt.Errorf("IPFIX item with unknown template %d", it.template)
	}
	if len(it.record) != want {
		return ipfixItem{}, fmt.Errorf("IPFIX item for template %d has %d bytes, want %d", it.template, len(it.record), want)
	}
	it.rate = binary.BigEndian.Uint32(it.record[want-4:])
	if it.rate == 0 {
		return ipfixItem{}, fmt.Errorf("IPFIX item with sampling rate 0")
	}
	return it, nil
}
