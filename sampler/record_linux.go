package sampler

import (
	"fmt"
	"net/netip"
	"unsafe"

	"github.com/vigil-sensor/vigil/flow"
)

const (
	recordSize     = int(unsafe.Sizeof(sensorVigilSample{}))
	recordHeadSize = int(unsafe.Sizeof(sensorVigilSampleHead{}))
)

// decodeRecord fills s from one ring buffer record without allocating.
// monoToUnix is added to the record's CLOCK_MONOTONIC timestamp to get
// Unix time. Head bytes, when present, are appended to *arena and s.Head
// points into it.
func decodeRecord(raw []byte, monoToUnix int64, s *flow.Sample, arena *[]byte) error {
	if len(raw) < recordSize {
		return fmt.Errorf("ring buffer record of %d bytes, want at least %d", len(raw), recordSize)
	}
	// The ring buffer hands records 8-byte aligned and the struct is
	// defined once in C; reading it in place avoids a copy per sample.
	r := (*sensorVigilSample)(unsafe.Pointer(&raw[0]))
	*s = flow.Sample{
		Timestamp:    int64(r.TsNs) + monoToUnix,
		SrcAddr:      addrFrom(r.IpVersion, &r.SrcAddr),
		DstAddr:      addrFrom(r.IpVersion, &r.DstAddr),
		Ifindex:      r.Ifindex,
		WireLen:      r.WireLen,
		SamplingRate: r.Rate,
		VNI:          r.Vni,
		FragID:       r.FragId,
		SrcPort:      r.SrcPort,
		DstPort:      r.DstPort,
		EtherType:    r.EthType,
		VLAN:         r.Vlan,
		InnerVLAN:    r.InnerVlan,
		FragOffset:   r.FragOff,
		Segments:     r.GsoSegs,
		Proto:        r.Proto,
		TCPFlags:     r.TcpFlags,
		TOS:          r.Tos,
		TTL:          r.Ttl,
		IPVersion:    r.IpVersion,
		Direction:    flow.Direction(r.Direction),
		Outcome:      flow.Outcome(r.Outcome),
		Flags:        flow.Flags(r.Flags),
	}
	if r.OuterIpVersion != 0 {
		s.OuterSrc = addrFrom(r.OuterIpVersion, &r.OuterSrc)
		s.OuterDst = addrFrom(r.OuterIpVersion, &r.OuterDst)
	}
	if n := int(r.HeadLen); n > 0 && len(raw) >= recordSize+n && arena != nil {
		start := len(*arena)
		*arena = append(*arena, raw[recordSize:recordSize+n]...)
		s.Head = (*arena)[start : start+n : start+n]
	}
	return nil
}

func addrFrom(version uint8, b *[16]uint8) netip.Addr {
	switch version {
	case 4:
		return netip.AddrFrom4([4]byte(b[12:16]))
	case 6:
		return netip.AddrFrom16(*b)
	}
	return netip.Addr{}
}
