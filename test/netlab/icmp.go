package netlab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Pinger sends ICMP echo requests (IPv4) or ICMPv6 echo requests from a
// raw socket in the peer namespace to the sensor end's address, and
// counts the echo replies that come back. No ping binary needed.
type Pinger struct {
	Src, Dst netip.Addr
	conn     *net.IPConn
	id       uint16
	seq      uint16
	noBufs   atomic.Uint64
	replies  atomic.Uint64
	done     chan struct{}
}

var pingerID atomic.Uint32

// Echo request and reply types.
const (
	ICMPEchoRequest   = 8
	ICMPEchoReply     = 0
	ICMPv6EchoRequest = 128
	ICMPv6EchoReply   = 129
)

// NewPinger opens a raw ICMP (family 4) or ICMPv6 (family 6) socket in
// the peer namespace, bound to the peer's address. It is closed by
// t.Cleanup.
func (l *Lab) NewPinger(t testing.TB, family int) *Pinger {
	t.Helper()
	src, dst, network := PeerIPv4, SensorIPv4, "ip4:icmp"
	if family == 6 {
		src, dst, network = PeerIPv6, SensorIPv6, "ip6:ipv6-icmp"
	}
	var conn *net.IPConn
	err := l.Peer.Do(func() error {
		var err error
		conn, err = net.ListenIP(network, &net.IPAddr{IP: src.AsSlice()})
		return err
	})
	if err != nil {
		t.Fatalf("netlab: opening raw %s socket in %s: %v", network, l.Peer.Name, err)
	}
	conn.SetReadBuffer(4 << 20)
	p := &Pinger{Src: src, Dst: dst, conn: conn, id: uint16(0x5600 + pingerID.Add(1)), done: make(chan struct{})}
	go p.readReplies()
	t.Cleanup(func() {
		conn.Close()
		<-p.done
	})
	return p
}

// FrameLen is the Ethernet frame length of an echo request with payload
// bytes of data after the 8-byte ICMP header.
func (p *Pinger) FrameLen(payload int) int {
	ip := 20
	if p.Dst.Is6() {
		ip = 40
	}
	return 14 + ip + 8 + payload
}

// Type is the echo request's ICMP type: 8, or 128 for ICMPv6.
func (p *Pinger) Type() uint8 {
	if p.Dst.Is6() {
		return ICMPv6EchoRequest
	}
	return ICMPEchoRequest
}

// Replies is the number of echo replies to this Pinger received so far.
func (p *Pinger) Replies() uint64 { return p.replies.Load() }

// NoBufs is how many sends were refused with ENOBUFS and retried (see
// Sender.NoBufs).
func (p *Pinger) NoBufs() uint64 { return p.noBufs.Load() }

// Send sends one echo request per element of payloads, with that many
// bytes of data (0..1400), back to back. It returns how many were sent;
// fewer only with an error.
func (p *Pinger) Send(payloads []int) (int, error) {
	if len(payloads) > MaxPackets {
		return 0, fmt.Errorf("packet count %d out of range 0..%d", len(payloads), MaxPackets)
	}
	deadline := time.Now().Add(SendTimeout)
	dst := &net.IPAddr{IP: p.Dst.AsSlice()}
	for i, size := range payloads {
		if size < 0 || size > 1400 {
			return i, fmt.Errorf("payload %d bytes out of range 0..1400", size)
		}
		p.seq++
		msg := make([]byte, 8+size)
		msg[0] = p.Type()
		binary.BigEndian.PutUint16(msg[4:6], p.id)
		binary.BigEndian.PutUint16(msg[6:8], p.seq)
		for j := range size {
			msg[8+j] = byte(j)
		}
		if p.Dst.Is4() {
			binary.BigEndian.PutUint16(msg[2:4], checksum(msg))
		} // ICMPv6: the kernel computes the checksum for raw ICMPv6 sockets
		for try := 0; ; try++ {
			p.conn.SetWriteDeadline(deadline)
			_, err := p.conn.WriteToIP(msg, dst)
			if err == nil {
				break
			}
			if !errors.Is(err, syscall.ENOBUFS) || try >= maxRetries || time.Now().After(deadline) {
				return i, fmt.Errorf("sending echo request %d of %d: %w", i+1, len(payloads), err)
			}
			p.noBufs.Add(1)
			time.Sleep(50 * time.Microsecond)
		}
	}
	return len(payloads), nil
}

// WaitReplies waits until n echo replies have arrived, at most timeout,
// and reports whether they did.
func (p *Pinger) WaitReplies(n uint64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for p.Replies() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

func (p *Pinger) readReplies() {
	defer close(p.done)
	reply := byte(ICMPEchoReply)
	if p.Dst.Is6() {
		reply = ICMPv6EchoReply
	}
	buf := make([]byte, 2048)
	for {
		// IPv4: the IP header is stripped by the net package.
		n, from, err := p.conn.ReadFromIP(buf)
		if err != nil {
			return
		}
		if n < 8 || buf[0] != reply || binary.BigEndian.Uint16(buf[4:6]) != p.id {
			continue
		}
		if a, ok := netip.AddrFromSlice(from.IP); !ok || a.Unmap() != p.Dst {
			continue
		}
		p.replies.Add(1)
	}
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
