// Package captures generates deterministic packet captures for Vigil's
// tests and benchmarks: a small set of hand-made captures that
// test/replay compares against tshark (written to test/replay/testdata,
// regenerated with `go generate ./test/captures`), and a large synthetic
// capture for benchmarks (Large, and the gencap command).
//
// Every capture knows what it holds: the unidirectional flow key of each
// packet as Vigil defines it (docs/FLOWS.md), its wire length, its VLAN
// and TCP flags. Tests derive their expectations from that knowledge and
// from tshark, never from the code under test.
package captures

//go:generate go test -run TestMixedGolden -update .

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Key is a unidirectional flow key as Vigil reports it: for ICMP and
// ICMPv6 SrcPort is 0 and DstPort is type*256+code; for non-first IP
// fragments both ports are 0.
type Key struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
}

func (k Key) String() string {
	return fmt.Sprintf("%d %s", k.Proto,
		net.JoinHostPort(k.Src.String(), fmt.Sprint(k.SrcPort))+" > "+net.JoinHostPort(k.Dst.String(), fmt.Sprint(k.DstPort)))
}

// Reverse returns the key of the other direction (meaningless for ICMP).
func (k Key) Reverse() Key {
	return Key{Src: k.Dst, Dst: k.Src, SrcPort: k.DstPort, DstPort: k.SrcPort, Proto: k.Proto}
}

// TCP flag bits, as in the TCP header and in Vigil's tcp_flags.
const (
	FIN = 1 << 0
	SYN = 1 << 1
	RST = 1 << 2
	PSH = 1 << 3
	ACK = 1 << 4
)

// Packet is one frame of a capture and what the generator knows about it.
type Packet struct {
	Time     time.Time
	Key      Key
	VLAN     uint16 // outer 802.1Q VLAN ID, 0 if untagged
	TCPFlags uint8
	Data     []byte // the frame as written; its length is the wire length
}

// Format is a capture file format.
type Format int

// Formats.
const (
	PCAP   Format = iota // libpcap, microsecond timestamps
	PCAPNG               // pcapng, nanosecond timestamps
)

// Capture is one generated capture file.
type Capture struct {
	Name    string // file name, e.g. "mixed-v4.pcap"
	Format  Format
	Link    layers.LinkType // Ethernet, Raw or LinuxSLL
	Packets []Packet        // in time order
}

// Counts are packets and bytes (wire length, layer 2 included).
type Counts struct {
	Packets, Bytes uint64
}

// Truth is the generator's own per-key totals.
func (c *Capture) Truth() map[Key]Counts {
	m := make(map[Key]Counts)
	for _, p := range c.Packets {
		n := m[p.Key]
		n.Packets++
		n.Bytes += uint64(len(p.Data))
		m[p.Key] = n
	}
	return m
}

// End returns the time of the last packet.
func (c *Capture) End() time.Time { return c.Packets[len(c.Packets)-1].Time }

// Slice is one flow record the generator expects at sampling rate 1.
type Slice struct {
	Start, Last time.Time
	Packets     uint64
	Bytes       uint64
	VLAN        uint16
	TCPFlags    uint8  // OR of the TCP flags of its packets
	EndReason   string // "tcp_end", "active", "idle", "shutdown"
}

// ExpectedSlices models Vigil's expiry policy (docs/FLOWS.md) on the
// capture at sampling rate 1: a record ends with the packet that carries
// FIN or RST ("tcp_end"); a packet more than idle after the previous one
// of its key starts a new record and the previous one ended "idle"; a
// packet at least active after the start of its record starts a new one
// and the previous one ended "active"; a record still open at the end of
// the capture ended "idle" if the capture went on for more than idle after
// its last packet, else "shutdown". The hand-made captures keep every
// packet time well away from these boundaries (see margin), so the model
// does not depend on how exactly an implementation compares times.
func (c *Capture) ExpectedSlices(idle, active time.Duration) map[Key][]Slice {
	out := make(map[Key][]Slice)
	open := make(map[Key]bool)
	for _, p := range c.Packets {
		ss := out[p.Key]
		if open[p.Key] {
			cur := &ss[len(ss)-1]
			switch {
			case p.Time.Sub(cur.Last) > idle:
				cur.EndReason = "idle"
				open[p.Key] = false
			case p.Time.Sub(cur.Start) >= active:
				cur.EndReason = "active"
				open[p.Key] = false
			}
		}
		if !open[p.Key] {
			ss = append(ss, Slice{Start: p.Time, VLAN: p.VLAN})
			open[p.Key] = true
		}
		cur := &ss[len(ss)-1]
		cur.Last = p.Time
		cur.Packets++
		cur.Bytes += uint64(len(p.Data))
		cur.TCPFlags |= p.TCPFlags
		if p.Key.Proto == 6 && p.TCPFlags&(FIN|RST) != 0 {
			cur.EndReason = "tcp_end"
			open[p.Key] = false
		}
		out[p.Key] = ss
	}
	end := c.End()
	for k, ss := range out {
		if !open[k] {
			continue
		}
		cur := &ss[len(ss)-1]
		if end.Sub(cur.Last) > idle {
			cur.EndReason = "idle"
		} else {
			cur.EndReason = "shutdown"
		}
	}
	return out
}

// CheckMargins reports packet times that sit within margin of an expiry
// boundary of the model in ExpectedSlices, where an implementation that
// compares with < instead of <=, or expires on a timer tick, could
// legitimately disagree with the model. It also reports records that end
// idle (or at the end of the capture) after their active timeout has
// passed: an implementation that scans its table on a clock would call
// those "active". The hand-made captures have none of these.
func (c *Capture) CheckMargins(idle, active, margin time.Duration) error {
	near := func(d, b time.Duration) bool { return d > b-margin && d < b+margin }
	type st struct{ start, last time.Time }
	open := make(map[Key]*st)
	for _, p := range c.Packets {
		s := open[p.Key]
		if s != nil {
			gap, age := p.Time.Sub(s.last), p.Time.Sub(s.start)
			if near(gap, idle) || (gap <= idle && near(age, active)) {
				return fmt.Errorf("%s: %s: packet at %s is within %s of an expiry boundary", c.Name, p.Key, p.Time.Format(time.RFC3339Nano), margin)
			}
			if gap > idle && s.start.Add(active).Before(s.last.Add(idle+margin)) {
				return fmt.Errorf("%s: %s: record from %s reaches its active timeout before its idle timeout", c.Name, p.Key, s.start.Format(time.RFC3339Nano))
			}
			if gap > idle || age >= active {
				s = nil
			}
		}
		if s == nil {
			s = &st{start: p.Time}
			open[p.Key] = s
		}
		s.last = p.Time
		if p.Key.Proto == 6 && p.TCPFlags&(FIN|RST) != 0 {
			delete(open, p.Key)
		}
	}
	end := c.End()
	for k, s := range open {
		if near(end.Sub(s.last), idle) {
			return fmt.Errorf("%s: %s: capture ends within %s of the idle timeout of its last record", c.Name, k, margin)
		}
		t := s.last.Add(idle)
		if end.Before(t) {
			t = end
		}
		if s.start.Add(active).Before(t.Add(margin)) {
			return fmt.Errorf("%s: %s: last record from %s reaches its active timeout before it ends", c.Name, k, s.start.Format(time.RFC3339Nano))
		}
	}
	return nil
}

// Write writes the capture in its format.
func (c *Capture) Write(w io.Writer) error {
	switch c.Format {
	case PCAP:
		pw := pcapgo.NewWriter(w)
		if err := pw.WriteFileHeader(65535, c.Link); err != nil {
			return err
		}
		for _, p := range c.Packets {
			if p.Time.Nanosecond()%1000 != 0 {
				return fmt.Errorf("%s: packet time %s is finer than the microseconds pcap keeps", c.Name, p.Time)
			}
			ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: len(p.Data)}
			if err := pw.WritePacket(ci, p.Data); err != nil {
				return err
			}
		}
		return nil
	case PCAPNG:
		intf := pcapgo.NgInterface{
			Name:                "gen0",
			Description:         "vigil test capture",
			OS:                  "linux",
			LinkType:            c.Link,
			SnapLength:          0,
			TimestampResolution: 9,
		}
		nw, err := pcapgo.NewNgWriterInterface(w, intf, pcapgo.NgWriterOptions{
			SectionInfo: pcapgo.NgSectionInfo{Application: "vigil test/captures", OS: "linux", Hardware: "any"},
		})
		if err != nil {
			return err
		}
		for _, p := range c.Packets {
			ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: len(p.Data), InterfaceIndex: 0}
			if err := nw.WritePacket(ci, p.Data); err != nil {
				return err
			}
		}
		return nw.Flush()
	}
	return fmt.Errorf("unknown format %d", c.Format)
}

// Bytes returns the capture file's contents.
func (c *Capture) Bytes() ([]byte, error) {
	var b bytes.Buffer
	if err := c.Write(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
