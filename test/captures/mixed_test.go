package captures

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

var update = flag.Bool("update", false, "rewrite the captures in "+TestdataDir+" from the generators")

// TestdataDir is where the hand-made captures live, relative to this
// package.
const TestdataDir = "../replay/testdata"

// TestMixedGolden checks that the committed captures are exactly what the
// generators write (run `go generate ./test/captures` after changing
// them), that generating twice gives the same bytes, and that the files
// stay small.
func TestMixedGolden(t *testing.T) {
	first, err := Mixed()
	if err != nil {
		t.Fatal(err)
	}
	second, err := Mixed()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.MkdirAll(TestdataDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range first {
		t.Run(c.Name, func(t *testing.T) {
			data, err := c.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			again, err := second[i].Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, again) {
				t.Fatal("generating twice gave different bytes")
			}
			if len(data) > 64<<10 {
				t.Errorf("%d bytes: keep test captures under 64 KiB", len(data))
			}
			path := filepath.Join(TestdataDir, c.Name)
			if *update {
				if err := os.WriteFile(path, data, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			onDisk, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go generate ./test/captures)", err)
			}
			if !bytes.Equal(onDisk, data) {
				t.Fatalf("%s differs from what the generator writes (%d bytes on disk, %d generated): run go generate ./test/captures", path, len(onDisk), len(data))
			}
		})
	}
}

// TestMixedMargins checks that no packet of the hand-made captures sits
// near an expiry boundary, so that ExpectedSlices is unambiguous.
func TestMixedMargins(t *testing.T) {
	cs, err := Mixed()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if err := c.CheckMargins(IdleTimeout, ActiveTimeout, Margin); err != nil {
			t.Error(err)
		}
	}
}

// TestMixedCoverage checks that the set holds what test/replay relies on.
func TestMixedCoverage(t *testing.T) {
	cs, err := Mixed()
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]int{}
	protos := map[[2]int]int{} // {ip version, proto}
	formats := map[Format]int{}
	links := map[layers.LinkType]int{}
	var vlan, frag int
	for _, c := range cs {
		formats[c.Format]++
		links[c.Link]++
		for _, ss := range c.ExpectedSlices(IdleTimeout, ActiveTimeout) {
			for _, s := range ss {
				reasons[s.EndReason]++
			}
		}
		for _, p := range c.Packets {
			v := 4
			if p.Key.Src.Is6() {
				v = 6
			}
			protos[[2]int{v, int(p.Key.Proto)}]++
			if p.VLAN != 0 {
				vlan++
			}
			if p.Key.Proto == 17 && p.Key.SrcPort == 0 {
				frag++
			}
		}
	}
	for _, r := range []string{"tcp_end", "active", "idle", "shutdown"} {
		if reasons[r] == 0 {
			t.Errorf("no record ends %q", r)
		}
	}
	for _, vp := range [][2]int{{4, 6}, {6, 6}, {4, 17}, {6, 17}, {4, 1}, {6, 58}} {
		if protos[vp] == 0 {
			t.Errorf("no IPv%d protocol %d packet", vp[0], vp[1])
		}
	}
	if formats[PCAP] == 0 || formats[PCAPNG] == 0 {
		t.Errorf("formats %v: want pcap and pcapng", formats)
	}
	for _, l := range []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeRaw, layers.LinkTypeLinuxSLL} {
		if links[l] == 0 {
			t.Errorf("no %s capture", l)
		}
	}
	if vlan == 0 || frag == 0 {
		t.Errorf("%d VLAN-tagged packets, %d non-first fragments: want some of each", vlan, frag)
	}
}

// TestMixedDecodes reads every capture back from its bytes and decodes each
// frame with gopacket: the time, the length and the flow key the
// generator recorded must be what the frame says.
func TestMixedDecodes(t *testing.T) {
	cs, err := Mixed()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		t.Run(c.Name, func(t *testing.T) {
			data, err := c.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			var src interface {
				ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
			}
			if c.Format == PCAPNG {
				src, err = pcapgo.NewNgReader(bytes.NewReader(data), pcapgo.DefaultNgReaderOptions)
			} else {
				src, err = pcapgo.NewReader(bytes.NewReader(data))
			}
			if err != nil {
				t.Fatal(err)
			}
			var first gopacket.Decoder = c.Link
			if c.Link == layers.LinkTypeRaw {
				first = layers.LayerTypeIPv4 // fixed below per packet
			}
			for i, want := range c.Packets {
				frame, ci, err := src.ReadPacketData()
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				if !ci.Timestamp.Equal(want.Time) || ci.Length != len(want.Data) || !bytes.Equal(frame, want.Data) {
					t.Fatalf("packet %d: read back %s len %d, wrote %s len %d", i, ci.Timestamp, ci.Length, want.Time, len(want.Data))
				}
				dec := first
				if c.Link == layers.LinkTypeRaw && frame[0]>>4 == 6 {
					dec = layers.LayerTypeIPv6
				}
				got, vlan, flags := decodeKey(gopacket.NewPacket(frame, dec, gopacket.Default))
				if diff := cmp.Diff(want.Key, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
					t.Errorf("packet %d key (-generator +decoded):\n%s", i, diff)
				}
				if vlan != want.VLAN || flags != want.TCPFlags {
					t.Errorf("packet %d: decoded VLAN %d flags %#x, generator says %d %#x", i, vlan, flags, want.VLAN, want.TCPFlags)
				}
			}
		})
	}
}

// decodeKey derives Vigil's flow key from a gopacket decoding.
func decodeKey(p gopacket.Packet) (k Key, vlan uint16, tcpFlags uint8) {
	if l, ok := p.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q); ok {
		vlan = l.VLANIdentifier
	}
	nonFirst := false
	if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		k.Src, _ = netip.AddrFromSlice(ip.SrcIP)
		k.Dst, _ = netip.AddrFromSlice(ip.DstIP)
		k.Proto = uint8(ip.Protocol)
		nonFirst = ip.FragOffset != 0
	}
	if ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
		k.Src, _ = netip.AddrFromSlice(ip.SrcIP)
		k.Dst, _ = netip.AddrFromSlice(ip.DstIP)
		k.Proto = uint8(ip.NextHeader)
		if f, ok := p.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment); ok {
			k.Proto = uint8(f.NextHeader)
			nonFirst = f.FragmentOffset != 0
		}
	}
	if nonFirst {
		return k, vlan, 0
	}
	if f := p.Layer(gopacket.LayerTypeFragment); f != nil && k.Proto == 17 {
		// A first fragment: gopacket does not look inside, we do.
		p = gopacket.NewPacket(f.LayerContents(), layers.LayerTypeUDP, gopacket.Default)
	}
	switch l := p.TransportLayer().(type) {
	case *layers.TCP:
		k.SrcPort, k.DstPort = uint16(l.SrcPort), uint16(l.DstPort)
		for i, set := range []bool{l.FIN, l.SYN, l.RST, l.PSH, l.ACK} {
			if set {
				tcpFlags |= 1 << i
			}
		}
	case *layers.UDP:
		k.SrcPort, k.DstPort = uint16(l.SrcPort), uint16(l.DstPort)
	}
	if l, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok {
		k.DstPort = uint16(l.TypeCode)
	}
	if l, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ok {
		k.DstPort = uint16(l.TypeCode)
	}
	return k, vlan, tcpFlags
}
