// Package export turns flow records and alerts into the formats
// backends read (Vigil's JSON lines, OCSF, protobuf) and writes them:
// to files (FileWriter) and, through an on-disk spool, to network sinks
// (Sink, an Encoder and a Transport). Both are Outputs. The transports
// are in export/ipfix, export/kafka and export/webhook; export/sinks
// knows them all and opens the export section.
package export

import (
	"math"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/vigil-sensor/vigil/flow"
)

// timeLayout is RFC 3339 in UTC with nanoseconds, fixed width.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// AppendFlowJSON appends r as one JSON object (no newline) to b.
func AppendFlowJSON(b []byte, r *flow.Record, ifname func(uint32) string) []byte {
	k := &r.Key
	b = append(b, `{"kind":"flow","start":"`...)
	b = time.Unix(0, r.Start).UTC().AppendFormat(b, timeLayout)
	b = append(b, `","end":"`...)
	b = time.Unix(0, r.End).UTC().AppendFormat(b, timeLayout)
	b = append(b, `","interface":`...)
	name := ""
	if ifname != nil {
		name = ifname(k.Ifindex)
	}
	b = appendJSONString(b, name)
	b = appendUint(b, `,"ifindex":`, uint64(k.Ifindex))
	b = append(b, `,"direction":"`...)
	b = append(b, k.Direction.String()...)
	b = appendUint(b, `","ip_version":`, uint64(k.IPVersion))
	b = appendAddr(b, `,"src_addr":"`, k.Src())
	b = appendAddr(b, `","dst_addr":"`, k.Dst())
	b = appendUint(b, `","src_port":`, uint64(k.SrcPort))
	b = appendUint(b, `,"dst_port":`, uint64(k.DstPort))
	b = appendUint(b, `,"proto":`, uint64(k.Proto))
	b = appendUint(b, `,"packets":`, r.Packets)
	b = appendUint(b, `,"bytes":`, r.Bytes)
	b = appendIntervals(b, r.PacketsEstimate().Interval(), r.BytesEstimate().Interval())
	b = appendUint(b, `,"sampled_packets":`, r.SampledPackets)
	b = appendUint(b, `,"sampled_bytes":`, r.SampledBytes)
	b = appendUint(b, `,"sampling_rate":`, uint64(r.SamplingRate()))
	b = appendUint(b, `,"tcp_flags":`, uint64(r.TCPFlags))
	b = appendUint(b, `,"tos":`, uint64(r.TOS))
	b = appendUint(b, `,"ttl_min":`, uint64(r.MinTTL))
	b = appendUint(b, `,"ttl_max":`, uint64(r.MaxTTL))
	if k.VLAN != 0 {
		b = appendUint(b, `,"vlan":`, uint64(k.VLAN))
	}
	b = appendEncap(b, k)
	b = append(b, `,"end_reason":"`...)
	b = append(b, r.EndReason.String()...)
	return append(b, `"}`...)
}

// AppendAlertJSON appends a as one JSON object (no newline) to b, in
// Vigil's alert schema (docs/FLOWS.md).
func AppendAlertJSON(b []byte, a *flow.Alert) []byte {
	b = append(b, `{"kind":"alert","id":`...)
	b = appendJSONString(b, a.ID)
	b = append(b, `,"rule":`...)
	b = appendJSONString(b, a.Rule)
	b = append(b, `,"state":"`...)
	b = append(b, a.State.String()...)
	b = append(b, `","severity":"`...)
	b = append(b, a.Severity.String()...)
	b = append(b, `","key":`...)
	b = appendKeyObject(b, a.Key)
	b = append(b, `,"time":"`...)
	b = time.Unix(0, a.Time).UTC().AppendFormat(b, timeLayout)
	b = append(b, `","start":"`...)
	b = time.Unix(0, a.Start).UTC().AppendFormat(b, timeLayout)
	b = append(b, `","end":"`...)
	b = time.Unix(0, a.End).UTC().AppendFormat(b, timeLayout)
	b = appendUint(b, `","packets":`, a.Packets)
	b = appendUint(b, `,"bytes":`, a.Bytes)
	b = appendIntervals(b, a.PacketsCI, a.BytesCI)
	b = appendFloat(b, `,"peak_pps":`, a.PeakPPS)
	b = appendFloat(b, `,"peak_bps":`, a.PeakBPS)
	b = appendFloat(b, `,"current_pps":`, a.CurrentPPS)
	b = appendFloat(b, `,"current_bps":`, a.CurrentBPS)
	b = appendRateIntervals(b, a.CurrentPPSCI, a.CurrentBPSCI)
	b = appendTops(b, `,"top_sources":`, a.TopSources)
	b = appendTops(b, `,"top_destinations":`, a.TopDestinations)
	b = appendTops(b, `,"top_ports":`, a.TopPorts)
	b = appendUint(b, `,"sampling_rate":`, uint64(a.SamplingRate))
	b = append(b, `,"techniques":[`...)
	for i, t := range a.Techniques {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, t)
	}
	b = append(b, `],"service":`...)
	b = appendJSONString(b, a.Service)
	b = append(b, `,"summary":`...)
	b = appendJSONString(b, a.Summary)
	return append(b, '}')
}

// appendEncap appends the inner VLAN and the tunnel of a key, when it
// has them.
func appendEncap(b []byte, k *flow.Key) []byte {
	if k.InnerVLAN != 0 {
		b = appendUint(b, `,"inner_vlan":`, uint64(k.InnerVLAN))
	}
	if k.Tunnel != flow.TunnelNone {
		b = append(b, `,"tunnel":"`...)
		b = append(b, k.Tunnel.String()...)
		b = appendUint(b, `","vni":`, uint64(k.VNI))
	}
	return b
}

// appendKeyObject appends an alert key as a JSON object of its fields.
func appendKeyObject(b []byte, key []flow.KeyValue) []byte {
	b = append(b, '{')
	for i, kv := range key {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, kv.Name)
		b = append(b, ':')
		b = appendJSONString(b, kv.Value)
	}
	return append(b, '}')
}

// appendIntervals appends the 95% confidence intervals of the packet and
// byte estimates (docs/ESTIMATES.md).
func appendIntervals(b []byte, packets, bytes flow.Interval) []byte {
	b = appendUint(b, `,"packets_lo":`, packets.Lo)
	b = appendUint(b, `,"packets_hi":`, packets.Hi)
	b = appendUint(b, `,"bytes_lo":`, bytes.Lo)
	return appendUint(b, `,"bytes_hi":`, bytes.Hi)
}

// appendRateIntervals appends the 95% confidence intervals of an
// alert's current rates.
func appendRateIntervals(b []byte, pps, bps flow.RateInterval) []byte {
	b = appendFloat(b, `,"current_pps_lo":`, pps.Lo)
	b = appendFloat(b, `,"current_pps_hi":`, pps.Hi)
	b = appendFloat(b, `,"current_bps_lo":`, bps.Lo)
	return appendFloat(b, `,"current_bps_hi":`, bps.Hi)
}

func appendTops(b []byte, key string, tops []flow.Top) []byte {
	b = append(b, key...)
	b = append(b, '[')
	for i, t := range tops {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"value":`...)
		b = appendJSONString(b, t.Value)
		b = appendUint(b, `,"packets":`, t.Packets)
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendFloat appends v rounded to 3 decimals; JSON has no NaN or Inf,
// so those are written as 0.
func appendFloat(b []byte, key string, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		v = 0
	}
	return strconv.AppendFloat(append(b, key...), math.Round(v*1000)/1000, 'f', -1, 64)
}

func appendUint(b []byte, key string, v uint64) []byte {
	return strconv.AppendUint(append(b, key...), v, 10)
}

func appendAddr(b []byte, key string, a netip.Addr) []byte {
	return a.AppendTo(append(b, key...))
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}
