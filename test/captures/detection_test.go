package captures

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// rec is one packet of a detection capture as gopacket decodes it.
type rec struct {
	t            int64 // microseconds since the first packet's second
	src, dst     netip.Addr
	sport, dport uint16 // ICMP: 0 and type<<8|code
	proto, flags uint8
	frag         bool // a fragment, first or not
	nonFirst     bool
	l4           int // bytes after the TCP or UDP header (first fragment: of the whole datagram)
	length       int // frame length
}

// readBack generates c through a pipe and decodes every packet, checking
// time order and, on one packet in 101, the checksums. It returns the
// packets and the generator's summary.
func readBack(t *testing.T, c DetectionCase) ([]rec, *CaptureSummary) {
	t.Helper()
	pr, pw := io.Pipe()
	var sum *CaptureSummary
	done := make(chan error, 1)
	go func() {
		s, err := c.Generate(pw)
		sum = s
		pw.CloseWithError(err)
		done <- err
	}()
	defer pr.Close()
	r, err := pcapgo.NewReader(pr)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet || r.Resolution().ToDuration() != time.Microsecond {
		t.Fatalf("link type %s, resolution %s", r.LinkType(), r.Resolution())
	}
	var (
		eth    layers.Ethernet
		ip4    layers.IPv4
		ip6    layers.IPv6
		fr     layers.IPv6Fragment
		tcp    layers.TCP
		udp    layers.UDP
		icmp4  layers.ICMPv4
		icmp6  layers.ICMPv6
		types  []gopacket.LayerType
		recs   []rec
		prev   time.Time
		parser = gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &ip6, &fr, &tcp, &udp, &icmp4, &icmp6)
	)
	parser.IgnoreUnsupported = true
	for i := 0; ; i++ {
		data, ci, err := r.ZeroCopyReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ci.Timestamp.Before(prev) {
			t.Fatalf("packet %d at %s before the previous one at %s", i+1, ci.Timestamp, prev)
		}
		prev = ci.Timestamp
		if err := parser.DecodeLayers(data, &types); err != nil {
			t.Fatalf("packet %d: %v", i+1, err)
		}
		x := rec{t: ci.Timestamp.Sub(detectBase).Microseconds(), length: ci.Length}
		var frag []byte
		for _, lt := range types {
			switch lt {
			case layers.LayerTypeIPv4:
				x.src, _ = netip.AddrFromSlice(ip4.SrcIP)
				x.dst, _ = netip.AddrFromSlice(ip4.DstIP)
				x.proto = uint8(ip4.Protocol)
				if ip4.Flags&layers.IPv4MoreFragments != 0 || ip4.FragOffset != 0 {
					x.frag, x.nonFirst, frag = true, ip4.FragOffset != 0, ip4.Payload
				}
			case layers.LayerTypeIPv6:
				x.src, _ = netip.AddrFromSlice(ip6.SrcIP)
				x.dst, _ = netip.AddrFromSlice(ip6.DstIP)
				x.proto = uint8(ip6.NextHeader)
			case layers.LayerTypeIPv6Fragment:
				x.proto = uint8(fr.NextHeader)
				x.frag, x.nonFirst, frag = true, fr.FragmentOffset != 0, fr.Payload
			case layers.LayerTypeTCP:
				x.sport, x.dport, x.l4 = uint16(tcp.SrcPort), uint16(tcp.DstPort), len(tcp.Payload)
				x.flags = tcp.Contents[13] & 0x1f
			case layers.LayerTypeUDP:
				x.sport, x.dport, x.l4 = uint16(udp.SrcPort), uint16(udp.DstPort), len(udp.Payload)
			case layers.LayerTypeICMPv4:
				x.dport = uint16(icmp4.TypeCode)
			case layers.LayerTypeICMPv6:
				x.dport = uint16(icmp6.TypeCode)
			}
		}
		if x.frag && !x.nonFirst && x.proto == 17 && len(frag) >= 8 {
			x.sport, x.dport = uint16(frag[0])<<8|uint16(frag[1]), uint16(frag[2])<<8|uint16(frag[3])
			x.l4 = (int(frag[4])<<8 | int(frag[5])) - 8
		}
		if !x.src.IsValid() || (x.proto == 6 && x.flags == 0) {
			t.Fatalf("packet %d not decoded: %v", i+1, types)
		}
		if i%101 == 0 {
			checkChecksums(t, i+1, data)
		}
		recs = append(recs, x)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return recs, sum
}

// checkChecksums verifies a frame's checksums with gopacket (UDP: by
// serializing the same header and payload again). Only the outer layers
// count: gopacket guesses more layers inside some UDP payloads.
func checkChecksums(t *testing.T, n int, data []byte) {
	t.Helper()
	type verifier interface {
		VerifyChecksum() (error, gopacket.ChecksumVerificationResult)
	}
	var netl gopacket.NetworkLayer
	var v verifier
	checked := false
	for _, l := range gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default).Layers() {
		switch l := l.(type) {
		case *layers.IPv4:
			netl = l
			if _, r := l.VerifyChecksum(); !r.Valid {
				t.Errorf("packet %d: bad IPv4 checksum %#x, want %#x", n, r.Actual, r.Correct)
			}
		case *layers.IPv6:
			netl = l
		case *layers.TCP:
			_ = l.SetNetworkLayerForChecksum(netl)
			v = l
		case *layers.ICMPv4:
			v = l
		case *layers.ICMPv6:
			_ = l.SetNetworkLayerForChecksum(netl)
			v = l
		case *layers.UDP:
			again := &layers.UDP{SrcPort: l.SrcPort, DstPort: l.DstPort}
			_ = again.SetNetworkLayerForChecksum(netl)
			buf := gopacket.NewSerializeBuffer()
			if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, again, gopacket.Payload(l.Payload)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes()[:8], l.Contents) {
				t.Errorf("packet %d: UDP header % x, want % x", n, l.Contents, buf.Bytes()[:8])
			}
			checked = true
		}
		if v != nil {
			if err, r := v.VerifyChecksum(); err != nil || !r.Valid {
				t.Errorf("packet %d: bad checksum %#x, want %#x (%v)", n, r.Actual, r.Correct, err)
			}
			checked = true
		}
		if checked || l.LayerType() == gopacket.LayerTypeFragment {
			return
		}
	}
	t.Errorf("packet %d: no transport layer", n)
}

// TestDetectionCases reads every attack capture back and checks it
// against the brief of the rule pack: the attack's rates, shape, family
// and key, the background's rate, and the generator's own summary.
func TestDetectionCases(t *testing.T) {
	cases := DetectionCases()
	if len(cases) != 2*19 {
		t.Fatalf("%d cases, want 38 (18 rules, syn_flood twice; IPv4 and IPv6)", len(cases))
	}
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.Name] {
			t.Fatalf("two cases named %s", c.Name)
		}
		seen[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			recs, sum := readBack(t, c)
			var attack, background []rec
			var bytes uint64
			for _, r := range recs {
				bytes += uint64(r.length)
				if c.Attack(r.src) || c.Attack(r.dst) {
					attack = append(attack, r)
				} else {
					background = append(background, r)
				}
			}
			if uint64(len(recs)) != sum.Packets || bytes != sum.Bytes || uint64(len(attack)) != sum.AttackPackets {
				t.Errorf("read %d packets %d bytes, %d of the attack; generator says %d, %d, %d",
					len(recs), bytes, len(attack), sum.Packets, sum.Bytes, sum.AttackPackets)
			}
			if len(attack) == 0 {
				t.Fatal("no attack packet")
			}
			if first := at(attack[0].t); !first.Equal(sum.FirstAttack) || first.Before(at(attackAt)) {
				t.Errorf("first attack packet at %s, generator says %s", first, sum.FirstAttack)
			}
			for _, r := range attack {
				if fam(r.src) != c.Family || fam(r.dst) != c.Family {
					t.Fatalf("attack packet %s > %s is not IPv%d", r.src, r.dst, c.Family)
				}
			}
			checkKey(t, c, attack)
			checkAddresses(t, c, recs)
			checkBackground(t, c, background)
			check := ruleChecks[caseKind(c)]
			if check == nil {
				t.Fatalf("no check for rule %s", c.Rule)
			}
			check(t, c, attack)
		})
	}
}

func fam(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// checkKey checks that the attack packets carry the key's values.
func checkKey(t *testing.T, c DetectionCase, attack []rec) {
	t.Helper()
	if len(c.Key) == 0 {
		t.Fatal("no key")
	}
	for field, v := range c.Key {
		found := false
		for _, r := range attack {
			switch field {
			case "src_addr":
				found = r.src.String() == v
			case "dst_addr":
				found = r.dst.String() == v
			case "dst_prefix":
				p := netip.MustParsePrefix(v)
				found = p.Contains(r.dst) && p.Bits() == map[int]int{4: 24, 6: 64}[c.Family] && p == p.Masked()
			case "src_port":
				found = strconv.Itoa(int(r.sport)) == v
			case "dst_port":
				found = strconv.Itoa(int(r.dport)) == v
			default:
				t.Fatalf("unknown key field %s", field)
			}
			if found {
				break
			}
		}
		if !found {
			t.Errorf("key %s=%s: no attack packet has it", field, v)
		}
		if a, err := netip.ParseAddr(v); err == nil && (fam(a) != c.Family || !c.Attack(a)) {
			t.Errorf("key %s=%s is not an IPv%d address of the attack", field, v, c.Family)
		}
	}
}

// TestDetectionGeneration generates every capture once, within the
// time budget of the rule pack's test, and checks that generation is
// deterministic.
func TestDetectionGeneration(t *testing.T) {
	start := time.Now()
	var packets, byteCount uint64
	for _, c := range append(DetectionCases(), BenignCases()...) {
		s, err := c.Generate(io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		packets += s.Packets
		byteCount += s.Bytes
		t.Logf("%-28s %7d packets %10d bytes, %7d of the attack", c.Name, s.Packets, s.Bytes, s.AttackPackets)
	}
	took := time.Since(start)
	t.Logf("all captures: %d packets, %d bytes in %s", packets, byteCount, took)
	if limit := 20 * time.Second * raceSlowdown; took > limit {
		t.Errorf("generating every capture took %s, more than %s", took, limit)
	}
	digest := func(c DetectionCase) [32]byte {
		h := sha256.New()
		if err := c.Write(h); err != nil {
			t.Fatal(err)
		}
		return [32]byte(h.Sum(nil))
	}
	cases := DetectionCases()
	a, b := digest(cases[5]), digest(DetectionCases()[5])
	if a != b {
		t.Errorf("%s: two generations differ", cases[5].Name)
	}
	if a == digest(cases[25]) {
		t.Errorf("%s and %s are the same bytes", cases[5].Name, cases[25].Name)
	}
}
