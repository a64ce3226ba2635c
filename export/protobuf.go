package export

import (
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/vigil-sensor/vigil/flow"
)

// Field numbers of export/proto/vigil.proto. protobuf_test.go checks the
// bytes against the compiled .proto, so a mismatch fails a test.
const (
	pbFlowStartNs        = 1
	pbFlowEndNs          = 2
	pbFlowInterface      = 3
	pbFlowIfindex        = 4
	pbFlowDirection      = 5
	pbFlowIPVersion      = 6
	pbFlowSrcAddr        = 7
	pbFlowDstAddr        = 8
	pbFlowSrcPort        = 9
	pbFlowDstPort        = 10
	pbFlowProto          = 11
	pbFlowPackets        = 12
	pbFlowBytes          = 13
	pbFlowSampledPackets = 14
	pbFlowSampledBytes   = 15
	pbFlowSamplingRate   = 16
	pbFlowTCPFlags       = 17
	pbFlowTOS            = 18
	pbFlowTTLMin         = 19
	pbFlowTTLMax         = 20
	pbFlowVLAN           = 21
	pbFlowInnerVLAN      = 22
	pbFlowTunnel         = 23
	pbFlowVNI            = 24
	pbFlowEndReason      = 25
	pbFlowPacketsLo      = 26
	pbFlowPacketsHi      = 27
	pbFlowBytesLo        = 28
	pbFlowBytesHi        = 29

	pbAlertID              = 1
	pbAlertRule            = 2
	pbAlertState           = 3
	pbAlertSeverity        = 4
	pbAlertKey             = 5
	pbAlertTimeNs          = 6
	pbAlertStartNs         = 7
	pbAlertEndNs           = 8
	pbAlertPackets         = 9
	pbAlertBytes           = 10
	pbAlertPeakPPS         = 11
	pbAlertPeakBPS         = 12
	pbAlertCurrentPPS      = 13
	pbAlertCurrentBPS      = 14
	pbAlertTopSources      = 15
	pbAlertTopDestinations = 16
	pbAlertTopPorts        = 17
	pbAlertSamplingRate    = 18
	pbAlertTechniques      = 19
	pbAlertSummary         = 20
	pbAlertPacketsLo       = 21
	pbAlertPacketsHi       = 22
	pbAlertBytesLo         = 23
	pbAlertBytesHi         = 24
	pbAlertCurrentPPSLo    = 25
	pbAlertCurrentPPSHi    = 26
	pbAlertCurrentBPSLo    = 27
	pbAlertCurrentBPSHi    = 28
	pbAlertService         = 29

	pbKeyValueName  = 1
	pbKeyValueValue = 2
	pbTopValue      = 1
	pbTopPackets    = 2
)

// AppendFlowProto appends r as one vigil.v1.Flow message
// (export/proto/vigil.proto) to b, without a length prefix. ifname names
// interfaces by index; it may be nil. Fields equal to zero are left out,
// as proto3 does. It does not allocate beyond growing b.
func AppendFlowProto(b []byte, r *flow.Record, ifname func(uint32) string) []byte {
	k := &r.Key
	b = appendPbInt(b, pbFlowStartNs, uint64(r.Start))
	b = appendPbInt(b, pbFlowEndNs, uint64(r.End))
	if ifname != nil {
		b = appendPbString(b, pbFlowInterface, ifname(k.Ifindex))
	}
	b = appendPbInt(b, pbFlowIfindex, uint64(k.Ifindex))
	b = appendPbInt(b, pbFlowDirection, uint64(k.Direction)+1) // DIRECTION_INGRESS is 1
	b = appendPbInt(b, pbFlowIPVersion, uint64(k.IPVersion))
	src, dst := k.SrcAddr[:], k.DstAddr[:]
	if k.IPVersion == 4 {
		src, dst = src[12:], dst[12:]
	}
	b = protowire.AppendTag(b, pbFlowSrcAddr, protowire.BytesType)
	b = protowire.AppendBytes(b, src)
	b = protowire.AppendTag(b, pbFlowDstAddr, protowire.BytesType)
	b = protowire.AppendBytes(b, dst)
	b = appendPbInt(b, pbFlowSrcPort, uint64(k.SrcPort))
	b = appendPbInt(b, pbFlowDstPort, uint64(k.DstPort))
	b = appendPbInt(b, pbFlowProto, uint64(k.Proto))
	b = appendPbInt(b, pbFlowPackets, r.Packets)
	b = appendPbInt(b, pbFlowBytes, r.Bytes)
	b = appendPbInt(b, pbFlowSampledPackets, r.SampledPackets)
	b = appendPbInt(b, pbFlowSampledBytes, r.SampledBytes)
	b = appendPbInt(b, pbFlowSamplingRate, uint64(r.SamplingRate()))
	b = appendPbInt(b, pbFlowTCPFlags, uint64(r.TCPFlags))
	b = appendPbInt(b, pbFlowTOS, uint64(r.TOS))
	b = appendPbInt(b, pbFlowTTLMin, uint64(r.MinTTL))
	b = appendPbInt(b, pbFlowTTLMax, uint64(r.MaxTTL))
	b = appendPbInt(b, pbFlowVLAN, uint64(k.VLAN))
	b = appendPbInt(b, pbFlowInnerVLAN, uint64(k.InnerVLAN))
	b = appendPbInt(b, pbFlowTunnel, uint64(k.Tunnel))
	if k.Tunnel != flow.TunnelNone {
		b = appendPbInt(b, pbFlowVNI, uint64(k.VNI))
	}
	b = appendPbInt(b, pbFlowEndReason, uint64(r.EndReason.IPFIX()))
	// The intervals came after the first release: numbered last, so
	// written last, in field order.
	pi, bi := r.PacketsEstimate().Interval(), r.BytesEstimate().Interval()
	b = appendPbInt(b, pbFlowPacketsLo, pi.Lo)
	b = appendPbInt(b, pbFlowPacketsHi, pi.Hi)
	b = appendPbInt(b, pbFlowBytesLo, bi.Lo)
	return appendPbInt(b, pbFlowBytesHi, bi.Hi)
}

// AppendAlertProto appends a as one vigil.v1.Alert message
// (export/proto/vigil.proto) to b, without a length prefix. Strings that
// are not valid UTF-8 get U+FFFD for each bad byte, as in JSON, so strict
// proto3 parsers accept them. It does not allocate beyond growing b.
func AppendAlertProto(b []byte, a *flow.Alert) []byte {
	b = appendPbString(b, pbAlertID, a.ID)
	b = appendPbString(b, pbAlertRule, a.Rule)
	b = appendPbInt(b, pbAlertState, uint64(a.State))
	b = appendPbInt(b, pbAlertSeverity, uint64(a.Severity))
	for i := range a.Key {
		kv := &a.Key[i]
		b = protowire.AppendTag(b, pbAlertKey, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(pbStringSize(pbKeyValueName, kv.Name)+pbStringSize(pbKeyValueValue, kv.Value)))
		b = appendPbString(b, pbKeyValueName, kv.Name)
		b = appendPbString(b, pbKeyValueValue, kv.Value)
	}
	b = appendPbInt(b, pbAlertTimeNs, uint64(a.Time))
	b = appendPbInt(b, pbAlertStartNs, uint64(a.Start))
	b = appendPbInt(b, pbAlertEndNs, uint64(a.End))
	b = appendPbInt(b, pbAlertPackets, a.Packets)
	b = appendPbInt(b, pbAlertBytes, a.Bytes)
	b = appendPbDouble(b, pbAlertPeakPPS, a.PeakPPS)
	b = appendPbDouble(b, pbAlertPeakBPS, a.PeakBPS)
	b = appendPbDouble(b, pbAlertCurrentPPS, a.CurrentPPS)
	b = appendPbDouble(b, pbAlertCurrentBPS, a.CurrentBPS)
	b = appendPbTops(b, pbAlertTopSources, a.TopSources)
	b = appendPbTops(b, pbAlertTopDestinations, a.TopDestinations)
	b = appendPbTops(b, pbAlertTopPorts, a.TopPorts)
	b = appendPbInt(b, pbAlertSamplingRate, uint64(a.SamplingRate))
	for _, t := range a.Techniques {
		// A repeated string keeps its empty elements.
		b = protowire.AppendTag(b, pbAlertTechniques, protowire.BytesType)
		b = appendPbStringBody(b, t)
	}
	b = appendPbString(b, pbAlertSummary, a.Summary)
	b = appendPbInt(b, pbAlertPacketsLo, a.PacketsCI.Lo)
	b = appendPbInt(b, pbAlertPacketsHi, a.PacketsCI.Hi)
	b = appendPbInt(b, pbAlertBytesLo, a.BytesCI.Lo)
	b = appendPbInt(b, pbAlertBytesHi, a.BytesCI.Hi)
	b = appendPbDouble(b, pbAlertCurrentPPSLo, a.CurrentPPSCI.Lo)
	b = appendPbDouble(b, pbAlertCurrentPPSHi, a.CurrentPPSCI.Hi)
	b = appendPbDouble(b, pbAlertCurrentBPSLo, a.CurrentBPSCI.Lo)
	b = appendPbDouble(b, pbAlertCurrentBPSHi, a.CurrentBPSCI.Hi)
	return appendPbString(b, pbAlertService, a.Service)
}

func appendPbTops(b []byte, num protowire.Number, tops []flow.Top) []byte {
	for i := range tops {
		t := &tops[i]
		size := pbStringSize(pbTopValue, t.Value)
		if t.Packets != 0 {
			size += protowire.SizeTag(pbTopPackets) + protowire.SizeVarint(t.Packets)
		}
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		b = appendPbString(b, pbTopValue, t.Value)
		b = appendPbInt(b, pbTopPackets, t.Packets)
	}
	return b
}

// appendPbInt appends a varint field (int64, uint32, uint64, enum) unless
// it is zero. Negative int64 values are passed as their two's complement.
func appendPbInt(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// appendPbDouble appends a double field unless it is zero; NaN and
// infinities become 0, as in JSON.
func appendPbDouble(b []byte, num protowire.Number, v float64) []byte {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, math.Float64bits(v))
}

// appendPbString appends a string field unless it is empty.
func appendPbString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return appendPbStringBody(b, s)
}

// appendPbStringBody appends s with its length prefix, as valid UTF-8.
func appendPbStringBody(b []byte, s string) []byte {
	if utf8.ValidString(s) {
		return protowire.AppendString(b, s)
	}
	b = protowire.AppendVarint(b, uint64(validUTF8Len(s)))
	for _, r := range s {
		b = utf8.AppendRune(b, r)
	}
	return b
}

// pbStringSize is the size of the field appendPbString writes.
func pbStringSize(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(validUTF8Len(s))
}

// validUTF8Len is the length of s once each invalid byte is replaced by
// U+FFFD (what ranging over s yields).
func validUTF8Len(s string) int {
	if utf8.ValidString(s) {
		return len(s)
	}
	n := 0
	for _, r := range s {
		n += utf8.RuneLen(r)
	}
	return n
}
