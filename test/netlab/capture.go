package netlab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// Frame is one frame an AF_PACKET capture saw.
type Frame struct {
	Outgoing bool   // sent by the interface (PACKET_OUTGOING); else received
	Len      int    // whole frame length, Ethernet header included
	Head     []byte // the first CaptureHead bytes (fewer if the frame is shorter)
}

// CaptureHead is how many bytes of each frame a Capture keeps: enough
// for Ethernet, IPv6 with a few extension headers, and TCP.
const CaptureHead = 256

// MaxCaptureFrames bounds what one Capture keeps; past it, Stop fails.
const MaxCaptureFrames = 2_000_000

// Capture records the frames crossing one interface, both ways, with an
// AF_PACKET socket opened in the interface's namespace. It is
// independent of anything BPF does at the other end: on a veth it is
// the truth of what one end handed to the other.
//
// On the sending end, the capture sees frames before the veth transmits
// them: a frame the veth then drops (its peer's queue full) is in the
// capture but never reached the peer. Compare the veth's drop counters
// (Namespace.Stats) to know whether that happened.
type Capture struct {
	fd       int
	stopping atomic.Bool
	done     chan struct{}

	mu     sync.Mutex
	frames []Frame
	err    error
}

// StartCapture opens a capture on the named interface of the namespace
// and starts reading. Stop ends it; t.Cleanup closes it in any case.
func (n *Namespace) StartCapture(t testing.TB, ifname string) *Capture {
	t.Helper()
	c, err := n.startCapture(ifname)
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	t.Cleanup(func() { c.Stop() })
	return c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (n *Namespace) startCapture(ifname string) (*Capture, error) {
	link, err := n.Link(ifname)
	if err != nil {
		return nil, err
	}
	fd := -1
	err = n.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket in %s: %w", n.Name, err)
	}
	fail := func(what string, err error) (*Capture, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("capture on %s in %s: %s: %w", ifname, n.Name, what, err)
	}
	// A large buffer (forced past rmem_max, we are root), and a read
	// timeout so that the reader notices Stop.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
		return fail("SO_RCVBUFFORCE", err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50_000}); err != nil {
		return fail("SO_RCVTIMEO", err)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: link.Attrs().Index}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	// Frames queued between socket() and bind() may come from any
	// interface: drop them by reading the statistics afresh below and
	// draining what is queued now.
	buf := make([]byte, CaptureHead)
	for {
		_, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			break
		}
	}
	if _, err := unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err != nil {
		return fail("PACKET_STATISTICS", err)
	}
	c := &Capture{fd: fd, done: make(chan struct{})}
	go c.read(link.Attrs().Index)
	return c, nil
}

func (c *Capture) read(ifindex int) {
	defer close(c.done)
	buf := make([]byte, CaptureHead)
	for {
		// MSG_TRUNC: the return value is the frame's full length.
		n, from, err := unix.Recvfrom(c.fd, buf, unix.MSG_TRUNC)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				if c.stopping.Load() && errors.Is(err, unix.EAGAIN) {
					return // queue drained
				}
				continue
			}
			c.setErr(fmt.Errorf("reading capture: %w", err))
			return
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok || ll.Ifindex != ifindex {
			continue
		}
		f := Frame{
			Outgoing: ll.Pkttype == unix.PACKET_OUTGOING,
			Len:      n,
			Head:     append([]byte(nil), buf[:min(n, len(buf))]...),
		}
		c.mu.Lock()
		if len(c.frames) >= MaxCaptureFrames {
			c.mu.Unlock()
			c.setErr(fmt.Errorf("capture holds more than %d frames", MaxCaptureFrames))
			return
		}
		c.frames = append(c.frames, f)
		c.mu.Unlock()
	}
}

func (c *Capture) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// Stop ends the capture once the frames already queued on the socket
// are read, and returns every frame seen. It fails if the kernel dropped
// any frame (socket buffer full) or reading failed: the capture would
// not be the truth. Calling Stop again returns the same result.
func (c *Capture) Stop() ([]Frame, error) {
	if !c.stopping.Swap(true) {
		<-c.done
		st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
		if err != nil {
			c.setErr(fmt.Errorf("PACKET_STATISTICS: %w", err))
		} else if st.Drops != 0 {
			c.setErr(fmt.Errorf("the kernel dropped %d of %d frames of the capture", st.Drops, st.Packets))
		}
		unix.Close(c.fd)
	}
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames, c.err
}

// FrameInfo is what a flow meter reads from a frame.
type FrameInfo struct {
	IPVersion int // 4 or 6; 0 for a frame that is not IP
	Src, Dst  netip.Addr
	Proto     uint8
	// TCP, UDP and SCTP ports; ICMP and ICMPv6: SrcPort 0 and DstPort
	// type<<8 | code. Zero for non-first fragments.
	SrcPort, DstPort uint16
	TCPFlags         uint8
	TOS              uint8 // IPv4 TOS or IPv6 traffic class
	TTL              uint8 // IPv4 TTL or IPv6 hop limit
}

// ParseFrame reads the flow fields of an untagged Ethernet frame
// (IPv4, or IPv6 with hop-by-hop, routing, fragment and destination
// options headers). ok is false if the frame is not IP or is cut
// inside a header it needs.
func ParseFrame(b []byte) (fi FrameInfo, ok bool) {
	if len(b) < 14 {
		return fi, false
	}
	etype := binary.BigEndian.Uint16(b[12:14])
	b = b[14:]
	var l4 []byte
	nonFirst := false
	switch etype {
	case 0x0800:
		if len(b) < 20 || b[0]>>4 != 4 {
			return fi, false
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl {
			return fi, false
		}
		fi.IPVersion = 4
		fi.TOS = b[1]
		fi.TTL = b[8]
		fi.Proto = b[9]
		fi.Src = netip.AddrFrom4([4]byte(b[12:16]))
		fi.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		nonFirst = binary.BigEndian.Uint16(b[6:8])&0x1fff != 0
		l4 = b[ihl:]
	case 0x86dd:
		if len(b) < 40 || b[0]>>4 != 6 {
			return fi, false
		}
		fi.IPVersion = 6
		fi.TOS = byte(binary.BigEndian.Uint16(b[0:2]) >> 4)
		fi.TTL = b[7]
		fi.Src = netip.AddrFrom16([16]byte(b[8:24]))
		fi.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		next := b[6]
		l4 = b[40:]
	ext:
		for range 8 {
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(l4) < 8 {
					return fi, false
				}
				hl := (int(l4[1]) + 1) * 8
				if len(l4) < hl {
					return fi, false
				}
				next, l4 = l4[0], l4[hl:]
			case 44: // fragment
				if len(l4) < 8 {
					return fi, false
				}
				nonFirst = binary.BigEndian.Uint16(l4[2:4])&0xfff8 != 0
				next, l4 = l4[0], l4[8:]
			default:
				break ext
			}
		}
		fi.Proto = next
	default:
		return fi, false
	}
	if nonFirst {
		return fi, true
	}
	switch fi.Proto {
	case 6:
		if len(l4) < 14 {
			return fi, false
		}
		fi.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		fi.DstPort = binary.BigEndian.Uint16(l4[2:4])
		fi.TCPFlags = l4[13]
	case 17, 132:
		if len(l4) < 4 {
			return fi, false
		}
		fi.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		fi.DstPort = binary.BigEndian.Uint16(l4[2:4])
	case 1, 58:
		if len(l4) < 2 {
			return fi, false
		}
		fi.DstPort = uint16(l4[0])<<8 | uint16(l4[1])
	}
	return fi, true
}
