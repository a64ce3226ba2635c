package sampler

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/vigil-sensor/vigil/flow"
)

// synFrame is tcpSYN64 with source port sport.
func synFrame(sport uint16) []byte {
	f := tcpSYN64()
	binary.BigEndian.PutUint16(f[34:], sport)
	return f
}

var pcapEpoch = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

type capPacket struct {
	data []byte
	ci   gopacket.CaptureInfo
}

func capPackets(n int) []capPacket {
	out := make([]capPacket, n)
	for i := range out {
		f := synFrame(uint16(1000 + i))
		out[i] = capPacket{data: f, ci: gopacket.CaptureInfo{
			Timestamp: pcapEpoch.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(f), Length: len(f),
		}}
	}
	return out
}

func writePcap(t *testing.T, pkts []capPacket, lt layers.LinkType) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(65535, lt); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if err := w.WritePacket(p.ci, p.data); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func writePcapng(t *testing.T, pkts []capPacket) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if err := w.WritePacket(p.ci, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readAll(t *testing.T, src *PcapSource, capture []byte) []flow.Sample {
	t.Helper()
	out := make(chan []flow.Sample, 16)
	errc := make(chan error, 1)
	go func() {
		errc <- src.Read(context.Background(), bytes.NewReader(capture), out)
		close(out)
	}()
	var all []flow.Sample
	for b := range out {
		all = append(all, b...)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return all
}

func TestPcapSourceMatchesParser(t *testing.T) {
	pkts := capPackets(1500)
	for name, capture := range map[string][]byte{
		"pcap":   writePcap(t, pkts, layers.LinkTypeEthernet),
		"pcapng": writePcapng(t, pkts),
	} {
		t.Run(name, func(t *testing.T) {
			src, err := NewPcapSource(PcapConfig{SampleRate: 1, Ifindex: 7, BatchSize: 64})
			if err != nil {
				t.Fatal(err)
			}
			got := readAll(t, src, capture)
			if len(got) != len(pkts) {
				t.Fatalf("%d samples from %d packets at N=1", len(got), len(pkts))
			}
			for i, s := range got {
				var want flow.Sample
				outcome := ParseFrame(pkts[i].data, 0, &want)
				if s.Outcome != outcome || s.SrcAddr != want.SrcAddr || s.DstAddr != want.DstAddr ||
					s.SrcPort != want.SrcPort || s.DstPort != want.DstPort || s.Proto != want.Proto ||
					s.TCPFlags != want.TCPFlags || s.TTL != want.TTL {
					t.Fatalf("packet %d: sample %+v, parser says %+v (%s)", i, s, want, outcome)
				}
				if s.SrcPort != uint16(1000+i) {
					t.Fatalf("packet %d: source port %d, want %d (order lost?)", i, s.SrcPort, 1000+i)
				}
				if s.Timestamp != pkts[i].ci.Timestamp.UnixNano() {
					t.Fatalf("packet %d: timestamp %v, capture says %v", i, s.Time(), pkts[i].ci.Timestamp)
				}
				if s.WireLen != 64 || s.SamplingRate != 1 || s.Segments != 1 {
					t.Fatalf("packet %d: wire %d rate %d segs %d", i, s.WireLen, s.SamplingRate, s.Segments)
				}
				// pcapng carries the interface index of the capture (0 here).
				if wantIf := map[string]uint32{"pcap": 7, "pcapng": 0}[name]; s.Ifindex != wantIf {
					t.Fatalf("packet %d: ifindex %d, want %d", i, s.Ifindex, wantIf)
				}
			}
			st, is := src.Stats()
			if st.Packets() != uint64(len(pkts)) || st.Outcomes[flow.OutcomeOK] != uint64(len(pkts)) ||
				st.Samples != uint64(len(pkts)) || is.Bytes != 64*uint64(len(pkts)) {
				t.Errorf("stats %+v %+v", st, is)
			}
		})
	}
}

// A capture cut by its snap length (tcpdump -s 96): the wire length is
// the original one, the headers that were captured are parsed, and IP
// length fields are checked against the wire, not the capture.
func TestPcapSnapLength(t *testing.T) {
	var k frameKit
	udp := k.build(t, k.eth(layers.EthernetTypeIPv4), k.ip4(layers.IPProtocolUDP, fx.v4A, fx.v4B), k.udp(5353, 53), gopacket.Payload(make([]byte, 400)))
	udp6 := k.build(t, k.eth(layers.EthernetTypeIPv6), k.ip6(layers.IPProtocolUDP, fx.v6A, fx.v6B), k.udp(5353, 53), gopacket.Payload(make([]byte, 400)))
	syn := synFrame(4242)
	at := gopacket.CaptureInfo{Timestamp: pcapEpoch}
	cut := func(f []byte, n int) capPacket {
		ci := at
		ci.CaptureLength, ci.Length = n, len(f)
		return capPacket{data: f[:n], ci: ci}
	}
	pkts := []capPacket{
		cut(udp, 96),  // headers whole, payload cut
		cut(udp6, 96), // the same for IPv6
		cut(syn, 40),  // cut inside the TCP header
	}
	src, _ := NewPcapSource(PcapConfig{SampleRate: 1})
	got := readAll(t, src, writePcap(t, pkts, layers.LinkTypeEthernet))
	if len(got) != 3 {
		t.Fatalf("got %d samples, want 3", len(got))
	}
	for i, want := range []struct {
		outcome flow.Outcome
		wire    int
		dport   uint16
	}{{flow.OutcomeOK, len(udp), 53}, {flow.OutcomeOK, len(udp6), 53}, {flow.OutcomeTruncated, len(syn), 0}} {
		g := got[i]
		if g.Outcome != want.outcome || int(g.WireLen) != want.wire || g.DstPort != want.dport {
			t.Errorf("packet %d: outcome %v wire %d dport %d, want %v %d %d", i, g.Outcome, g.WireLen, g.DstPort, want.outcome, want.wire, want.dport)
		}
	}
}

// A pcapng file whose interfaces differ in link type (mergecap of an
// Ethernet and a raw IP capture): every packet is read with its own.
func TestPcapngMixedLinkTypes(t *testing.T) {
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{Name: "eth", LinkType: layers.LinkTypeEthernet, SnapLength: 65535}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	rawID, err := w.AddInterface(pcapgo.NgInterface{Name: "tun", LinkType: layers.LinkTypeRaw, SnapLength: 65535})
	if err != nil {
		t.Fatal(err)
	}
	eth := synFrame(1111)
	raw := synFrame(2222)[14:]
	for i, p := range []struct {
		data []byte
		ifc  int
	}{{eth, 0}, {raw, rawID}, {eth, 0}, {raw, rawID}} {
		ci := gopacket.CaptureInfo{Timestamp: pcapEpoch.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(p.data), Length: len(p.data), InterfaceIndex: p.ifc}
		if err := w.WritePacket(ci, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	src, _ := NewPcapSource(PcapConfig{SampleRate: 1})
	got := readAll(t, src, buf.Bytes())
	if len(got) != 4 {
		t.Fatalf("got %d samples, want 4", len(got))
	}
	for i, g := range got {
		want := uint16(1111)
		if i%2 == 1 {
			want = 2222
		}
		if g.Outcome != flow.OutcomeOK || g.SrcPort != want {
			t.Errorf("packet %d: outcome %v sport %d, want ok %d", i, g.Outcome, g.SrcPort, want)
		}
	}
}

func TestPcapSeededSampling(t *testing.T) {
	const n, rate = 20000, 10
	capture := writePcap(t, capPackets(n), layers.LinkTypeEthernet)
	ports := func(seed uint64) []uint16 {
		src, _ := NewPcapSource(PcapConfig{SampleRate: rate, Seed: seed})
		var p []uint16
		for _, s := range readAll(t, src, capture) {
			if s.SamplingRate != rate {
				t.Fatalf("sample carries rate %d, want %d", s.SamplingRate, rate)
			}
			p = append(p, s.SrcPort)
		}
		st, _ := src.Stats()
		if st.Packets() != n || st.Samples != uint64(len(p)) {
			t.Fatalf("stats %+v for %d samples", st, len(p))
		}
		return p
	}
	a, b, c := ports(1), ports(1), ports(2)
	// Binomial(20000, 0.1): mean 2000, sd 42.4; 5 sd either side.
	if len(a) < 1788 || len(a) > 2212 {
		t.Errorf("%d samples of %d at 1 in %d, outside 2000±212", len(a), n, rate)
	}
	if !slicesEqual(a, b) {
		t.Error("the same seed picked different packets")
	}
	if slicesEqual(a, c) {
		t.Error("different seeds picked the same packets")
	}
}

func slicesEqual(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Raw IP and Linux cooked captures parse from the IP header.
func TestPcapOtherLinkTypes(t *testing.T) {
	eth := synFrame(5555)
	sll := make([]byte, 16, 16+50)
	binary.BigEndian.PutUint16(sll[14:], 0x0800)
	sll = append(sll, eth[14:]...)
	for _, tc := range []struct {
		lt   layers.LinkType
		data []byte
	}{
		{layers.LinkTypeRaw, eth[14:]},
		{layers.LinkTypeLinuxSLL, sll},
	} {
		ci := gopacket.CaptureInfo{Timestamp: pcapEpoch, CaptureLength: len(tc.data), Length: len(tc.data)}
		src, _ := NewPcapSource(PcapConfig{SampleRate: 1})
		got := readAll(t, src, writePcap(t, []capPacket{{tc.data, ci}}, tc.lt))
		if len(got) != 1 || got[0].Outcome != flow.OutcomeOK || got[0].SrcPort != 5555 || got[0].DstPort != 80 ||
			got[0].EtherType != 0x0800 || got[0].SrcAddr.String() != "10.0.0.1" {
			t.Errorf("%s: got %+v", tc.lt, got)
		}
	}
	src, _ := NewPcapSource(PcapConfig{})
	err := src.Read(context.Background(), bytes.NewReader(writePcap(t, nil, layers.LinkTypeIEEE802_11)), make(chan []flow.Sample, 1))
	if err == nil {
		t.Error("802.11 capture accepted; want an unsupported link type error")
	}
}

func TestPcapReadFileErrors(t *testing.T) {
	src, _ := NewPcapSource(PcapConfig{})
	missing := filepath.Join(t.TempDir(), "missing.pcap")
	if err := src.ReadFile(context.Background(), missing, make(chan []flow.Sample, 1)); err == nil {
		t.Error("missing file: no error")
	}
	junk := filepath.Join(t.TempDir(), "junk.pcap")
	if err := os.WriteFile(junk, []byte("this is not a capture file"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := src.ReadFile(context.Background(), junk, make(chan []flow.Sample, 1))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("junk.pcap")) {
		t.Errorf("junk file: error %v, want one naming the file", err)
	}
}
