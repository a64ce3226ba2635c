package ipfix

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"

	"github.com/vigil-sensor/vigil/flow"
)

// ipfixFlow is a flow data record decoded by goflow2, field by field.
type ipfixFlow struct {
	Src, Dst          netip.Addr
	SrcPort, DstPort  uint16
	ICMPTypeCode      uint16
	Proto, TOS        uint8
	TCPFlags          uint16
	Octets, Packets   uint64
	StartMs, EndMs    uint64
	In, Out           uint32
	Direction         uint8
	VLAN, InnerVLAN   uint16
	EndReason         uint8
	MinTTL, MaxTTL    uint8
	Selector          uint32
	UnknownFieldTypes []uint16
}

// wantIPFIXFlow is what the encoder must put on the wire for r.
func wantIPFIXFlow(r *flow.Record) ipfixFlow {
	k := &r.Key
	rate := uint64(max(r.SamplingRate(), 1))
	w := ipfixFlow{
		Src: k.Src(), Dst: k.Dst(), SrcPort: k.SrcPort, DstPort: k.DstPort,
		Proto: k.Proto, TOS: r.TOS, TCPFlags: uint16(r.TCPFlags),
		Octets: (r.Bytes + rate/2) / rate, Packets: (r.Packets + rate/2) / rate,
		StartMs: uint64(r.Start / 1e6), EndMs: uint64(r.End / 1e6),
		Direction: uint8(k.Direction), VLAN: k.VLAN, InnerVLAN: k.InnerVLAN,
		EndReason: uint8(r.EndReason), MinTTL: r.MinTTL, MaxTTL: r.MaxTTL, Selector: uint32(rate),
	}
	if k.Proto == 1 || k.Proto == 58 {
		w.SrcPort, w.DstPort, w.ICMPTypeCode = 0, 0, k.DstPort
	}
	if k.Direction == flow.Egress {
		w.Out = k.Ifindex
	} else {
		w.In = k.Ifindex
	}
	return w
}

func ipfixUint(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

func decodeIPFIXFlow(t *testing.T, rec netflow.DataRecord) ipfixFlow {
	t.Helper()
	var f ipfixFlow
	for _, v := range rec.Values {
		b, ok := v.Value.([]byte)
		if !ok {
			t.Fatalf("field %d: value %T", v.Type, v.Value)
		}
		u := ipfixUint(b)
		switch v.Type {
		case ieSourceIPv4Address, ieSourceIPv6Address:
			f.Src, _ = netip.AddrFromSlice(b)
		case ieDestinationIPv4Address, ieDestinationIPv6Address:
			f.Dst, _ = netip.AddrFromSlice(b)
		case ieSourceTransportPort:
			f.SrcPort = uint16(u)
		case ieDestinationTransportPort:
			f.DstPort = uint16(u)
		case ieICMPTypeCodeIPv4, ieICMPTypeCodeIPv6:
			f.ICMPTypeCode = uint16(u)
		case ieProtocolIdentifier:
			f.Proto = uint8(u)
		case ieIPClassOfService:
			f.TOS = uint8(u)
		case ieTCPControlBits:
			f.TCPFlags = uint16(u)
		case ieOctetDeltaCount:
			f.Octets = u
		case iePacketDeltaCount:
			f.Packets = u
		case ieFlowStartMilliseconds:
			f.StartMs = u
		case ieFlowEndMilliseconds:
			f.EndMs = u
		case ieIngressInterface:
			f.In = uint32(u)
		case ieEgressInterface:
			f.Out = uint32(u)
		case ieFlowDirection:
			f.Direction = uint8(u)
		case ieVlanID:
			f.VLAN = uint16(u)
		case ieDot1qCustomerVlanID:
			f.InnerVLAN = uint16(u)
		case ieFlowEndReason:
			f.EndReason = uint8(u)
		case ieMinimumTTL:
			f.MinTTL = uint8(u)
		case ieMaximumTTL:
			f.MaxTTL = uint8(u)
		case ieSelectorID:
			f.Selector = uint32(u)
		default:
			f.UnknownFieldTypes = append(f.UnknownFieldTypes, v.Type)
		}
	}
	return f
}

// ipfixSelector is a selector options record decoded by goflow2, from
// either options template.
type ipfixSelector struct {
	Template                    uint16
	Scope, ID                   uint32
	Algorithm                   uint16
	Interval                    uint32
	Probability                 float64
	PacketInterval, PacketSpace uint32
}

func decodeIPFIXSelector(t *testing.T, template uint16, rec netflow.OptionsDataRecord) ipfixSelector {
	t.Helper()
	s := ipfixSelector{Template: template}
	if len(rec.ScopesValues) != 1 || rec.ScopesValues[0].Type != ieSelectorID {
		t.Fatalf("selector scope: %+v", rec.ScopesValues)
	}
	s.Scope = uint32(ipfixUint(rec.ScopesValues[0].Value.([]byte)))
	for _, v := range rec.OptionsValues {
		b := v.Value.([]byte)
		switch v.Type {
		case ieSelectorID:
			s.ID = uint32(ipfixUint(b))
		case ieSelectorAlgorithm:
			s.Algorithm = uint16(ipfixUint(b))
		case ieSamplingInterval:
			s.Interval = uint32(ipfixUint(b))
		case ieSamplingProbability:
			s.Probability = math.Float64frombits(ipfixUint(b))
		case ieSamplingPacketInterval:
			s.PacketInterval = uint32(ipfixUint(b))
		case ieSamplingPacketSpace:
			s.PacketSpace = uint32(ipfixUint(b))
		default:
			t.Fatalf("unexpected selector option field %d", v.Type)
		}
	}
	return s
}

// ipfixMessage is one decoded message, in the order of its sets.
type ipfixMessage struct {
	Len, Seq, Domain uint32
	ExportTime       uint32
	Templates        []netflow.TemplateRecord
	OptionsTemplates []netflow.IPFIXOptionsTemplateRecord
	Selectors        []ipfixSelector
	Flows            []ipfixFlow
	// Order lists the sets: "T" templates, "O" options templates,
	// "S<rate>" and "P<rate>" the selector records of the two options
	// templates, "D<id>" a data set.
	Order []string
}

// ipfixCollector decodes messages with goflow2, keeping templates
// across messages of one session as a collector does.
type ipfixCollector struct {
	t  *testing.T
	ts netflow.NetFlowTemplateSystem
}

func newIPFIXCollector(t *testing.T) *ipfixCollector {
	return &ipfixCollector{t: t, ts: netflow.CreateTemplateSystem()}
}

func (c *ipfixCollector) decode(b []byte) ipfixMessage {
	t := c.t
	t.Helper()
	var nf9 netflow.NFv9Packet
	var p netflow.IPFIXPacket
	if err := netflow.DecodeMessageVersion(bytes.NewBuffer(b), c.ts, &nf9, &p); err != nil {
		t.Fatalf("goflow2 decode: %v", err)
	}
	if p.Version != ipfixVersion || int(p.Length) != len(b) {
		t.Fatalf("header version %d length %d, message of %d bytes", p.Version, p.Length, len(b))
	}
	m := ipfixMessage{Len: uint32(p.Length), Seq: p.SequenceNumber, Domain: p.ObservationDomainId, ExportTime: p.ExportTime}
	for _, fs := range p.FlowSets {
		switch s := fs.(type) {
		case netflow.TemplateFlowSet:
			m.Templates = append(m.Templates, s.Records...)
			m.Order = append(m.Order, "T")
		case netflow.IPFIXOptionsTemplateFlowSet:
			m.OptionsTemplates = append(m.OptionsTemplates, s.Records...)
			m.Order = append(m.Order, "O")
		case netflow.OptionsDataFlowSet:
			for _, r := range s.Records {
				sel := decodeIPFIXSelector(t, s.Id, r)
				m.Selectors = append(m.Selectors, sel)
				kind := "S"
				if s.Id == TemplateSpacing {
					kind = "P"
				}
				m.Order = append(m.Order, fmt.Sprintf("%s%d", kind, sel.Scope))
			}
		case netflow.DataFlowSet:
			for _, r := range s.Records {
				m.Flows = append(m.Flows, decodeIPFIXFlow(t, r))
			}
			m.Order = append(m.Order, fmt.Sprintf("D%d", s.Id))
		case netflow.RawFlowSet:
			t.Fatalf("set %d without a template (collector has not seen it)", s.Id)
		default:
			t.Fatalf("unexpected set %T", fs)
		}
	}
	return m
}

// udpCollector is a loopback UDP socket that collects datagrams.
type udpCollector struct {
	pc net.PacketConn
}

func newUDPCollector(t *testing.T) *udpCollector {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.(*net.UDPConn).SetReadBuffer(8 << 20); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return &udpCollector{pc: pc}
}

func (u *udpCollector) addr() string { return u.pc.LocalAddr().String() }

// read returns the datagrams that arrive until none came for 100 ms.
func (u *udpCollector) read(t *testing.T) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 70000)
	for range 100000 {
		_ = u.pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, err := u.pc.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return out
			}
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(buf[:n]))
	}
	t.Fatal("too many datagrams")
	return nil
}

// tcpCollector accepts IPFIX connections and splits each stream into
// messages by their length field.
type tcpCollector struct {
	ln    net.Listener
	conns chan net.Conn
}

func newTCPCollector(t *testing.T, rcvbuf int) *tcpCollector {
	lc := net.ListenConfig{}
	if rcvbuf > 0 {
		// Set on the listener so the accepted socket's window starts small.
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &tcpCollector{ln: ln, conns: make(chan net.Conn, 16)}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				close(c.conns)
				return
			}
			c.conns <- conn
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return c
}

func (c *tcpCollector) accept(t *testing.T) net.Conn {
	t.Helper()
	select {
	case conn := <-c.conns:
		t.Cleanup(func() { conn.Close() })
		return conn
	case <-time.After(5 * time.Second):
		t.Fatal("no connection")
		return nil
	}
}

// readMessage reads one IPFIX message from a stream.
func readIPFIXMessage(t *testing.T, r io.Reader) []byte {
	t.Helper()
	hdr := make([]byte, ipfixHeaderLen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		t.Fatalf("reading message header: %v", err)
	}
	n := int(binary.BigEndian.Uint16(hdr[2:]))
	if binary.BigEndian.Uint16(hdr) != ipfixVersion || n < ipfixHeaderLen {
		t.Fatalf("bad header %x", hdr)
	}
	msg := make([]byte, n)
	copy(msg, hdr)
	if _, err := io.ReadFull(r, msg[ipfixHeaderLen:]); err != nil {
		t.Fatalf("reading message: %v", err)
	}
	return msg
}
