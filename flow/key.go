package flow

import (
	"net/netip"
)

// Key identifies a unidirectional flow: the 5-tuple, where it was seen
// (interface and direction) and the VLAN tags and tunnel VNI it carried.
//
// Key holds no pointers and no padding (its fields fill 52 bytes), so a table of keys costs the
// garbage collector nothing to scan and compares as plain memory.
// Addresses are stored as 16 bytes, IPv4 as IPv4-mapped IPv6; use Src
// and Dst for netip.Addr values.
type Key struct {
	SrcAddr   [16]byte
	DstAddr   [16]byte
	Ifindex   uint32
	VNI       uint32
	SrcPort   uint16 // 0 for ICMP
	DstPort   uint16 // ICMP: type<<8 | code
	VLAN      uint16
	InnerVLAN uint16
	Proto     uint8
	Direction Direction
	IPVersion uint8  // 4 or 6
	Tunnel    Tunnel // the encapsulation VNI belongs to, if any
}

// Tunnel is the encapsulation a flow was decapsulated from.
type Tunnel uint8

// Tunnels.
const (
	TunnelNone   Tunnel = 0
	TunnelVXLAN  Tunnel = 1
	TunnelGENEVE Tunnel = 2
)

func (t Tunnel) String() string {
	switch t {
	case TunnelVXLAN:
		return "vxlan"
	case TunnelGENEVE:
		return "geneve"
	}
	return ""
}

// KeyOf returns the flow key of a sample.
func KeyOf(s *Sample) Key {
	return Key{
		SrcAddr:   s.SrcAddr.As16(),
		DstAddr:   s.DstAddr.As16(),
		Ifindex:   s.Ifindex,
		VNI:       s.VNI,
		SrcPort:   s.SrcPort,
		DstPort:   s.DstPort,
		VLAN:      s.VLAN,
		InnerVLAN: s.InnerVLAN,
		Proto:     s.Proto,
		Direction: s.Direction,
		IPVersion: s.IPVersion,
		Tunnel:    tunnelOf(s.Flags),
	}
}

func tunnelOf(f Flags) Tunnel {
	switch {
	case f&FlagVXLAN != 0:
		return TunnelVXLAN
	case f&FlagGENEVE != 0:
		return TunnelGENEVE
	}
	return TunnelNone
}

// Src returns the source address (IPv4 unmapped).
func (k *Key) Src() netip.Addr { return k.addr(&k.SrcAddr) }

// Dst returns the destination address (IPv4 unmapped).
func (k *Key) Dst() netip.Addr { return k.addr(&k.DstAddr) }

func (k *Key) addr(b *[16]byte) netip.Addr {
	if k.IPVersion == 4 {
		return netip.AddrFrom4([4]byte(b[12:16]))
	}
	return netip.AddrFrom16(*b)
}
