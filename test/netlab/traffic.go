package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Limits that keep every send bounded.
const (
	MaxPackets  = 1_000_000        // most packets one call sends
	SendTimeout = 30 * time.Second // longest one Send call runs
	maxRetries  = 1000             // consecutive ENOBUFS before giving up
)

// Sender sends UDP datagrams of a fixed size from an unconnected socket
// in one end's namespace to the other end. (An unconnected socket, since
// a connected one loses every other datagram to an unreachable port.)
type Sender struct {
	Src, Dst netip.AddrPort // the flow's addresses and ports; protocol 17
	conn     *net.UDPConn
	payload  []byte
	noBufs   atomic.Uint64
}

// NewSender opens a UDP socket in the peer namespace, bound to the
// peer's address of the family (4 or 6) and an ephemeral port, sending
// payload-byte datagrams to the sensor end's dstPort. It is closed by
// t.Cleanup.
func (l *Lab) NewSender(t testing.TB, family int, dstPort uint16, payload int) *Sender {
	t.Helper()
	src, dst := PeerIPv4, SensorIPv4
	if family == 6 {
		src, dst = PeerIPv6, SensorIPv6
	}
	s, err := newSender(l.Peer, src, netip.AddrPortFrom(dst, dstPort), payload)
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	t.Cleanup(func() { s.conn.Close() })
	return s
}

func newSender(ns *Namespace, src netip.Addr, dst netip.AddrPort, payload int) (*Sender, error) {
	if payload < 0 || payload > 1400 {
		return nil, fmt.Errorf("payload %d bytes out of range 0..1400", payload)
	}
	network := "udp4"
	if src.Is6() {
		network = "udp6"
	}
	var conn *net.UDPConn
	err := ns.Do(func() error {
		var err error
		conn, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening UDP socket in %s: %w", ns.Name, err)
	}
	buf := make([]byte, payload)
	for i := range buf {
		buf[i] = byte(i)
	}
	port := conn.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	return &Sender{
		Src:     netip.AddrPortFrom(src, port),
		Dst:     dst,
		conn:    conn,
		payload: buf,
	}, nil
}

// FrameLen is the Ethernet frame length of each datagram on the veth.
func (s *Sender) FrameLen() int {
	ip := 20
	if s.Dst.Addr().Is6() {
		ip = 40
	}
	return 14 + ip + 8 + len(s.payload)
}

// NoBufs is how many sends the kernel refused with ENOBUFS (a queue on
// the way was full) and were retried. Such a datagram left the socket
// but was dropped before the receiving end: an egress hook may have seen
// it, an ingress hook did not.
func (s *Sender) NoBufs() uint64 { return s.noBufs.Load() }

// sendOne sends one datagram, retrying on ENOBUFS after a short pause,
// so that every datagram counted as sent reached the veth's peer.
func (s *Sender) sendOne(deadline time.Time) error {
	for try := 0; ; try++ {
		s.conn.SetWriteDeadline(deadline)
		_, err := s.conn.WriteToUDPAddrPort(s.payload, s.Dst)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.ENOBUFS) || try >= maxRetries || time.Now().After(deadline) {
			return err
		}
		s.noBufs.Add(1)
		time.Sleep(50 * time.Microsecond)
	}
}

// Send sends n datagrams back to back (the receiving end processes each
// in the sender's softirq, so it keeps up). It returns how many were
// sent; fewer than n only with an error.
func (s *Sender) Send(n int) (int, error) {
	if n < 0 || n > MaxPackets {
		return 0, fmt.Errorf("packet count %d out of range 0..%d", n, MaxPackets)
	}
	deadline := time.Now().Add(SendTimeout)
	for i := range n {
		if err := s.sendOne(deadline); err != nil {
			return i, fmt.Errorf("sending datagram %d of %d: %w", i+1, n, err)
		}
	}
	return n, nil
}

// SendPaced sends at about pps datagrams per second for d (at most
// SendTimeout), or until ctx ends, and returns how many were sent. The
// sent counter is updated as it goes, so another goroutine can read it
// while traffic flows.
func (s *Sender) SendPaced(ctx context.Context, pps int, d time.Duration, sent *atomic.Int64) (int, error) {
	if pps <= 0 || pps > MaxPackets {
		return 0, fmt.Errorf("rate %d pps out of range 1..%d", pps, MaxPackets)
	}
	d = min(d, SendTimeout)
	start := time.Now()
	end := start.Add(d)
	deadline := end.Add(time.Second)
	n := 0
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now()
		if now.After(end) {
			return n, nil
		}
		due := int(now.Sub(start).Seconds() * float64(pps))
		for ; n < due && n < MaxPackets; n++ {
			if err := s.sendOne(deadline); err != nil {
				return n, fmt.Errorf("sending datagram %d: %w", n+1, err)
			}
			if sent != nil {
				sent.Add(1)
			}
		}
		select {
		case <-ctx.Done():
			return n, nil
		case <-tick.C:
		}
	}
}

// Sink is a UDP socket in the sensor namespace that reads and discards
// what arrives on a port, so the kernel does not answer the traffic
// with ICMP port unreachable.
type Sink struct {
	conn     *net.UDPConn
	received atomic.Uint64
	done     chan struct{}
}

// NewSink opens a sink on the sensor end's address of the family (4 or
// 6) and port. It is closed by t.Cleanup.
func (l *Lab) NewSink(t testing.TB, family int, port uint16) *Sink {
	t.Helper()
	addr, network := SensorIPv4, "udp4"
	if family == 6 {
		addr, network = SensorIPv6, "udp6"
	}
	var conn *net.UDPConn
	err := l.Sensor.Do(func() error {
		var err error
		conn, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, port)))
		return err
	})
	if err != nil {
		t.Fatalf("netlab: opening sink in %s: %v", l.Sensor.Name, err)
	}
	conn.SetReadBuffer(4 << 20)
	s := &Sink{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 2048)
		for {
			if _, _, err := conn.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			s.received.Add(1)
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-s.done
	})
	return s
}

// Received is the number of datagrams the sink has read.
func (s *Sink) Received() uint64 { return s.received.Load() }
