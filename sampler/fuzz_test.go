package sampler

// Fuzz targets: the Go parser on its own (no panics, invariants that hold
// for any input), and the Go parser against the BPF program.

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

func addWireSeeds(f *testing.F) {
	for _, c := range wireCases(f) {
		f.Add(c.frame, uint8(c.decap))
	}
}

func FuzzParseFrame(f *testing.F) {
	addWireSeeds(f)
	junk := bytes.Repeat([]byte{0xff}, 16)
	f.Fuzz(func(t *testing.T, frame []byte, d uint8) {
		decap := Decap(d) & fxDecapBoth
		orig := bytes.Clone(frame)
		s := goParse(frame, decap)
		if !bytes.Equal(frame, orig) {
			t.Fatal("ParseFrame wrote into the frame")
		}
		if again := goParse(frame, decap); !cmp.Equal(again, s, sampleDiffOpts) {
			t.Fatalf("two parses differ (-first +second):\n%s", cmp.Diff(s, again, sampleDiffOpts))
		}
		if err := sampleInvariants(frame, decap, s); err != nil {
			t.Fatalf("frame % x, decap %#x: %v\nsample %+v", frame, decap, err, s)
		}
		// Bytes after a frame that parsed to an end cannot change it.
		if s.Outcome != flow.OutcomeTruncated {
			if longer := goParse(append(bytes.Clone(frame), junk...), decap); !cmp.Equal(longer, s, sampleDiffOpts) {
				t.Fatalf("frame % x: trailing bytes changed the sample (-before +after):\n%s", frame, cmp.Diff(s, longer, sampleDiffOpts))
			}
		}
		// Without decapsulation the parse is the outer packet's.
		plain := goParse(frame, 0)
		if err := decapConsistent(s, plain); err != nil {
			t.Fatalf("frame % x, decap %#x: %v\nwith decap %+v\nwithout %+v", frame, decap, err, s, plain)
		}
	})
}

// decapConsistent relates the parse of a frame with decapsulation (s) to
// its parse without (plain).
func decapConsistent(s, plain flow.Sample) error {
	if !s.Tunneled() {
		if s.Outcome == flow.OutcomeTruncated && plain.Outcome == flow.OutcomeOK &&
			plain.Proto == protoUDP && (plain.DstPort == vxlanPort || plain.DstPort == genevePort) {
			plain.Outcome = flow.OutcomeTruncated // a tunnel header cut short
		}
		if !cmp.Equal(s, plain, sampleDiffOpts) {
			return fmt.Errorf("not decapsulated, yet differs from the plain parse:\n%s", cmp.Diff(s, plain, sampleDiffOpts))
		}
		return nil
	}
	port := uint16(vxlanPort)
	if s.Flags&flow.FlagGENEVE != 0 {
		port = genevePort
	}
	if plain.Outcome != flow.OutcomeOK || plain.Proto != protoUDP || plain.DstPort != port ||
		s.OuterSrc != plain.SrcAddr || s.OuterDst != plain.DstAddr {
		return fmt.Errorf("decapsulated from an outer packet that is not UDP to port %d between the outer addresses", port)
	}
	return nil
}

// sampleInvariants checks what must hold of ParseFrame's sample of any
// frame.
func sampleInvariants(frame []byte, decap Decap, s flow.Sample) error {
	const tunnels = flow.FlagVXLAN | flow.FlagGENEVE
	const frags = flow.FlagFragment | flow.FlagNonFirstFragment | flow.FlagMoreFragments
	src, dst := s.SrcAddr, s.DstAddr
	ports := s.SrcPort != 0 || s.DstPort != 0
	switch {
	case int(s.Outcome) >= flow.NumOutcomes:
		return fmt.Errorf("outcome %d out of range", s.Outcome)
	case s.Timestamp != 0 || s.Ifindex != 0 || s.WireLen != 0 || s.SamplingRate != 0 || s.Segments != 0 ||
		s.Direction != 0 || s.Head != nil:
		return fmt.Errorf("ParseFrame set a capture field")
	case len(frame) < 14 && !cmp.Equal(s, flow.Sample{Outcome: flow.OutcomeTruncated}, sampleDiffOpts):
		return fmt.Errorf("a frame shorter than Ethernet gave more than truncated")
	case s.IPVersion == 0 && (src.IsValid() || dst.IsValid() || ports || s.Proto != 0 || s.TOS != 0 || s.TTL != 0 || s.FragID != 0):
		return fmt.Errorf("IP fields without an IP version")
	case s.IPVersion == 4 && !(src.Is4() && dst.Is4()), s.IPVersion == 6 && !(src.Is6() && dst.Is6()):
		return fmt.Errorf("addresses %v, %v for IP version %d", src, dst, s.IPVersion)
	case s.IPVersion != 0 && s.IPVersion != 4 && s.IPVersion != 6:
		return fmt.Errorf("IP version %d", s.IPVersion)
	case s.IPVersion == 4 && s.EtherType != ethPIPv4, s.IPVersion == 6 && s.EtherType != ethPIPv6:
		return fmt.Errorf("IP version %d under EtherType %#04x", s.IPVersion, s.EtherType)
	case s.Outcome == flow.OutcomeNotIP && (s.IPVersion != 0 || s.EtherType == ethPIPv4 || s.EtherType == ethPIPv6):
		return fmt.Errorf("not_ip with IP version %d, EtherType %#04x", s.IPVersion, s.EtherType)
	case (s.Outcome == flow.OutcomeOK || s.Outcome == flow.OutcomeTunnel || s.Outcome == flow.OutcomeFragment) && s.IPVersion == 0:
		return fmt.Errorf("%v without an IP header", s.Outcome)
	case s.Outcome == flow.OutcomeTunnel && !s.Tunneled():
		return fmt.Errorf("tunnel outcome without a tunnel flag")
	case s.Flags&tunnels == tunnels:
		return fmt.Errorf("both tunnel flags")
	case s.Flags&flow.FlagVXLAN != 0 && decap&DecapVXLAN == 0, s.Flags&flow.FlagGENEVE != 0 && decap&DecapGENEVE == 0:
		return fmt.Errorf("decapsulated a tunnel that is not enabled")
	case s.Flags&^(tunnels|frags) != 0:
		return fmt.Errorf("unknown flags %#x", s.Flags)
	case s.Tunneled() && !(s.OuterSrc.IsValid() && s.OuterDst.IsValid() && s.OuterSrc.Is4() == s.OuterDst.Is4()):
		return fmt.Errorf("tunnel endpoints %v, %v", s.OuterSrc, s.OuterDst)
	case !s.Tunneled() && (s.OuterSrc.IsValid() || s.OuterDst.IsValid() || s.VNI != 0):
		return fmt.Errorf("tunnel fields without a tunnel flag")
	case s.VNI >= 1<<24:
		return fmt.Errorf("VNI %#x wider than 24 bits", s.VNI)
	case (s.Flags&flow.FlagNonFirstFragment != 0) != (s.Outcome == flow.OutcomeFragment):
		return fmt.Errorf("non-first fragment flag and outcome %v disagree", s.Outcome)
	case s.Outcome == flow.OutcomeFragment && (s.FragOffset == 0 || ports || s.TCPFlags != 0):
		return fmt.Errorf("non-first fragment with offset %d, ports %d/%d", s.FragOffset, s.SrcPort, s.DstPort)
	case s.Flags&frags != 0 && s.Flags&flow.FlagFragment == 0:
		return fmt.Errorf("fragment detail flags without the fragment flag")
	case s.Flags&flow.FlagFragment == 0 && (s.FragID != 0 || s.FragOffset != 0):
		return fmt.Errorf("fragment fields without the fragment flag")
	case s.FragOffset%8 != 0:
		return fmt.Errorf("fragment offset %d not a multiple of 8", s.FragOffset)
	case s.VLAN > 0xfff || s.InnerVLAN > 0xfff:
		return fmt.Errorf("VLAN IDs %d, %d", s.VLAN, s.InnerVLAN)
	case (s.Proto == protoICMP || s.Proto == protoICMPv6) && s.SrcPort != 0:
		return fmt.Errorf("ICMP with source port %d", s.SrcPort)
	case s.TCPFlags != 0 && s.Proto != protoTCP:
		return fmt.Errorf("TCP flags on protocol %d", s.Proto)
	case ports && s.Proto != protoTCP && s.Proto != protoUDP && s.Proto != protoSCTP && s.Proto != protoICMP && s.Proto != protoICMPv6:
		return fmt.Errorf("ports on protocol %d", s.Proto)
	}
	return nil
}

// FuzzParseFrameBPF: the Go parser and the XDP program agree on any frame
// BPF_PROG_RUN takes.
func FuzzParseFrameBPF(f *testing.F) {
	testutil.RequirePrivileged(f)
	addWireSeeds(f)
	rigs := diffRigs{}
	for _, decap := range []Decap{0, DecapVXLAN, DecapGENEVE, fxDecapBoth} {
		rigs.get(f, decap)
	}
	xdp := runHooks(f)[0]
	f.Fuzz(func(t *testing.T, frame []byte, d uint8) {
		if len(frame) < 14 || len(frame) > 3000 { // what an XDP test run takes
			return
		}
		rigs.check(t, xdp, frame, Decap(d)&fxDecapBoth, "fuzz")
	})
}
