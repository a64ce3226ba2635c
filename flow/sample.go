// Package flow holds the types every stage of Vigil speaks: the packet
// sample that leaves the capture path, and (later) flow keys and records.
package flow

import (
	"net/netip"
	"time"
)

// Direction is the way a sampled packet crossed the interface.
type Direction uint8

// Directions; values match enum vigil_direction in bpf/include/sample.h.
const (
	Ingress Direction = 0
	Egress  Direction = 1
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Outcome is how far a packet could be parsed. Every packet is counted
// under exactly one outcome.
type Outcome uint8

// Outcomes; values match enum vigil_outcome in bpf/include/sample.h.
const (
	OutcomeOK        Outcome = 0 // parsed through the transport header
	OutcomeNotIP     Outcome = 1 // neither IPv4 nor IPv6
	OutcomeTruncated Outcome = 2 // the frame ends inside a header
	OutcomeBadHeader Outcome = 3 // an impossible header field
	OutcomeFragment  Outcome = 4 // a non-first IP fragment: no ports
	OutcomeTunnel    Outcome = 5 // VXLAN/GENEVE decapsulated, inner parsed
	NumOutcomes              = 6
)

var outcomeNames = [NumOutcomes]string{"ok", "not_ip", "truncated", "bad_header", "fragment", "tunnel"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Flags describe fragmentation and encapsulation of a sample.
type Flags uint8

// Flag bits; values match enum vigil_flag in bpf/include/sample.h.
const (
	FlagFragment         Flags = 1 << 0 // an IP fragment, first or not
	FlagNonFirstFragment Flags = 1 << 1 // fragment offset is not zero
	FlagMoreFragments    Flags = 1 << 2 // the more-fragments bit is set
	FlagVXLAN            Flags = 1 << 3 // decapsulated from VXLAN
	FlagGENEVE           Flags = 1 << 4 // decapsulated from GENEVE
)

// Sample is one sampled packet, as the XDP/tc program or the pcap source
// saw it. When a tunnel was decapsulated the addresses, ports and L2/L3
// fields describe the inner packet, and OuterSrc/OuterDst the tunnel
// endpoints. For ICMP and ICMPv6, SrcPort is 0 and DstPort is
// type<<8 | code, as NetFlow does.
//
// Samples travel downstream in batches ([]Sample); Head, when present,
// points into memory owned by the batch.
type Sample struct {
	Timestamp    int64 // nanoseconds since the Unix epoch
	SrcAddr      netip.Addr
	DstAddr      netip.Addr
	OuterSrc     netip.Addr
	OuterDst     netip.Addr
	Head         []byte // first bytes of the frame, if head capture is on
	Ifindex      uint32
	WireLen      uint32 // bytes of the frame
	SamplingRate uint32 // the 1-in-N rate in force when it was taken
	VNI          uint32
	FragID       uint32 // IP identification, for fragments
	SrcPort      uint16
	DstPort      uint16
	EtherType    uint16 // after VLAN tags
	VLAN         uint16 // first tag's VLAN ID, 0 if none
	InnerVLAN    uint16 // second tag's VLAN ID, 0 if none
	FragOffset   uint16 // in bytes
	Segments     uint16 // wire packets this frame stands for (GSO), >= 1
	Proto        uint8
	TCPFlags     uint8
	TOS          uint8 // IPv4 TOS or IPv6 traffic class
	TTL          uint8 // IPv4 TTL or IPv6 hop limit
	IPVersion    uint8 // 4, 6, or 0 when the packet is not IP
	Direction    Direction
	Outcome      Outcome
	Flags        Flags
}

// Time returns the sample's timestamp.
func (s *Sample) Time() time.Time { return time.Unix(0, s.Timestamp) }

// Tunneled reports whether the sample was decapsulated.
func (s *Sample) Tunneled() bool { return s.Flags&(FlagVXLAN|FlagGENEVE) != 0 }
