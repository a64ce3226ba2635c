package netlab

import (
	"fmt"
	"net/netip"
	"testing"
)

// FragSender sends UDP datagrams too large for the veth's MTU (1500),
// so that the peer's kernel fragments every one of them: IPv4
// fragments carry 1480 bytes of IP payload each, IPv6 fragments 1448
// (after the 8-byte fragment header). The first fragment holds the UDP
// header, so only it has ports.
type FragSender struct {
	*Sender
}

// fragMTU is the veth's MTU (the kernel's default for veth).
const fragMTU = 1500

// NewFragSender is NewSender for payloads of 1473..65000 bytes: more
// than one fragment per datagram in both families.
func (l *Lab) NewFragSender(t testing.TB, family int, dstPort uint16, payload int) *FragSender {
	t.Helper()
	if payload <= fragMTU-28 || payload > 65000 {
		t.Fatalf("netlab: fragmenting payload %d bytes out of range %d..65000", payload, fragMTU-27)
	}
	src, dst := PeerIPv4, SensorIPv4
	if family == 6 {
		src, dst = PeerIPv6, SensorIPv6
	}
	s, err := newSender(l.Peer, src, netip.AddrPortFrom(dst, dstPort), 0)
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	t.Cleanup(func() { s.conn.Close() })
	s.payload = make([]byte, payload)
	for i := range s.payload {
		s.payload[i] = byte(i)
	}
	return &FragSender{s}
}

// FrameLen panics: a FragSender sends several frames per datagram; see
// FragmentLens.
func (s *FragSender) FrameLen() int {
	panic(fmt.Sprintf("netlab: FragSender %s sends fragments: use FragmentLens", s.Dst))
}

// FragmentLens returns the Ethernet frame lengths of the fragments of
// one datagram, first fragment first.
func (s *FragSender) FragmentLens() []int {
	ipData := 8 + len(s.payload) // the UDP header travels in the first fragment
	hdr, per := 20, (fragMTU-20)&^7
	if s.Dst.Addr().Is6() {
		hdr, per = 48, (fragMTU-48)&^7 // IPv6 header and fragment header
	}
	var lens []int
	for ipData > 0 {
		n := min(ipData, per)
		lens = append(lens, 14+hdr+n)
		ipData -= n
	}
	return lens
}
