// Package detect is Vigil's on-box detection engine: rules read samples,
// flow records or other rules' alerts as events, aggregate them per key
// over sliding event-time windows, and report alerts with a lifecycle.
package detect

import (
	"net/netip"
	"strconv"

	"github.com/vigil-sensor/vigil/flow"
)

// Source is the stream a rule reads.
type Source uint8

// Sources.
const (
	SourceSamples Source = iota + 1 // sampled packets, for sub-second floods
	SourceFlows                     // flow records, as the table writes them
	SourceAlerts                    // alerts of other rules (chaining)
)

var sourceNames = [...]string{"", "samples", "flows", "alerts"}

func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return "unknown"
}

// ParseSource parses a source name.
func ParseSource(s string) (Source, bool) {
	for i, n := range sourceNames {
		if i > 0 && n == s {
			return Source(i), true
		}
	}
	return 0, false
}

// Event is what rules read: one sample, one flow record or one alert,
// flattened to the fields filters, group-by and measures use. Packets
// and Bytes are estimates: a sample's are weighed by its own sampling
// rate, so a rate change in a window biases nothing.
type Event struct {
	Source    Source
	Time      int64 // ns since the Unix epoch: the sample's time, a record's end, an alert's report time
	SrcAddr   netip.Addr
	DstAddr   netip.Addr
	SrcPort   uint16
	DstPort   uint16 // for ICMP: type<<8 | code
	Proto     uint8
	TCPFlags  uint8
	IPVersion uint8
	Direction flow.Direction
	Ifindex   uint32
	VNI       uint32
	Fragment  bool   // an IP fragment, first or not
	NonFirst  bool   // a fragment after the first: no ports
	Packets   uint64 // estimated
	Bytes     uint64 // estimated
	Samples   uint64 // samples behind the event: 1 for a sample
	// A flow record's own variances of Packets and Bytes and largest
	// weights (flow.Estimate's Var and MaxW); 0 for samples and alerts,
	// whose intervals follow from Packets, Bytes and Rate.
	PacketsVar, BytesVar   float64
	MaxPacketsW, MaxBytesW float32
	Rate                   uint32 // the 1-in-N rate behind the event
	Duration               int64  // ns; flow records only
	Rule                   string // alerts only: the rule that raised it
	Severity               flow.Severity
	State                  flow.AlertState

	allowed bool // on the allow list: no rule sees it
	mapped  bool // an IPv4-mapped address: filters and guards may differ on it
}

// FromSample fills e from a sample.
func (e *Event) FromSample(s *flow.Sample) {
	rate := uint64(s.SamplingRate)
	if rate == 0 {
		rate = 1
	}
	segs := uint64(s.Segments)
	if segs == 0 {
		segs = 1
	}
	*e = Event{
		Source:    SourceSamples,
		Time:      s.Timestamp,
		SrcAddr:   s.SrcAddr,
		DstAddr:   s.DstAddr,
		SrcPort:   s.SrcPort,
		DstPort:   s.DstPort,
		Proto:     s.Proto,
		TCPFlags:  s.TCPFlags,
		IPVersion: s.IPVersion,
		Direction: s.Direction,
		Ifindex:   s.Ifindex,
		VNI:       s.VNI,
		Fragment:  s.Flags&flow.FlagFragment != 0,
		NonFirst:  s.Flags&flow.FlagNonFirstFragment != 0,
		Packets:   segs * rate,
		Bytes:     uint64(s.WireLen) * rate,
		Samples:   1,
		Rate:      uint32(rate),
	}
}

// FromRecord fills e from a flow record.
func (e *Event) FromRecord(r *flow.Record) {
	k := &r.Key
	*e = Event{
		Source:      SourceFlows,
		Time:        r.End,
		SrcAddr:     k.Src(),
		DstAddr:     k.Dst(),
		SrcPort:     k.SrcPort,
		DstPort:     k.DstPort,
		Proto:       k.Proto,
		TCPFlags:    r.TCPFlags,
		Packets:     r.Packets,
		Bytes:       r.Bytes,
		Samples:     r.Samples,
		PacketsVar:  r.PacketsVar,
		BytesVar:    r.BytesVar,
		MaxPacketsW: r.MaxPacketsW,
		MaxBytesW:   r.MaxBytesW,
		Rate:        r.SamplingRate(),
		Duration:    r.End - r.Start,
		Direction:   k.Direction,
		Ifindex:     k.Ifindex,
		VNI:         k.VNI,
		IPVersion:   k.IPVersion,
	}
}

// FromAlert fills e from an alert, for rules that read other rules'
// alerts: the addresses and ports of its key become the event's.
func (e *Event) FromAlert(a *flow.Alert) {
	*e = Event{
		Source:   SourceAlerts,
		Time:     a.Time,
		Packets:  a.Packets,
		Bytes:    a.Bytes,
		Rate:     a.SamplingRate,
		Duration: a.End - a.Start,
		Rule:     a.Rule,
		Severity: a.Severity,
		State:    a.State,
		Samples:  1,
	}
	for _, kv := range a.Key {
		switch kv.Name {
		case "src_addr":
			e.SrcAddr, _ = netip.ParseAddr(kv.Value)
		case "dst_addr":
			e.DstAddr, _ = netip.ParseAddr(kv.Value)
		case "src_prefix":
			if p, err := netip.ParsePrefix(kv.Value); err == nil {
				e.SrcAddr = p.Addr()
			}
		case "dst_prefix":
			if p, err := netip.ParsePrefix(kv.Value); err == nil {
				e.DstAddr = p.Addr()
			}
		case "src_port":
			p, _ := strconv.ParseUint(kv.Value, 10, 16)
			e.SrcPort = uint16(p)
		case "dst_port":
			p, _ := strconv.ParseUint(kv.Value, 10, 16)
			e.DstPort = uint16(p)
		case "proto":
			p, _ := strconv.ParseUint(kv.Value, 10, 8)
			e.Proto = uint8(p)
		}
	}
	switch {
	case e.SrcAddr.Is4() || e.DstAddr.Is4():
		e.IPVersion = 4
	case e.SrcAddr.Is6() || e.DstAddr.Is6():
		e.IPVersion = 6
	}
}
