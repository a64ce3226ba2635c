package sampler

import (
	"reflect"
	"testing"
	"unsafe"

	"github.com/vigil-sensor/vigil/flow"
)

// The record is defined once in C; these tests pin what Go assumes of it:
// its size, the offsets decodeRecord reads, and that the enums flow
// declares are the C enums.
func TestRecordLayout(t *testing.T) {
	var r sensorVigilSample
	want := []struct {
		field  string
		offset uintptr
	}{
		{"TsNs", 0}, {"Ifindex", 8}, {"WireLen", 12}, {"Rate", 16}, {"Vni", 20},
		{"FragId", 24}, {"SrcPort", 28}, {"DstPort", 30}, {"SrcAddr", 32}, {"DstAddr", 48},
		{"OuterSrc", 64}, {"OuterDst", 80}, {"EthType", 96}, {"Vlan", 98}, {"InnerVlan", 100},
		{"FragOff", 102}, {"GsoSegs", 104}, {"HeadLen", 106}, {"Proto", 108}, {"TcpFlags", 109},
		{"Tos", 110}, {"Ttl", 111}, {"IpVersion", 112}, {"Direction", 113}, {"Outcome", 114},
		{"Flags", 115}, {"OuterIpVersion", 116},
	}
	typ := reflect.TypeOf(r)
	for _, w := range want {
		f, ok := typ.FieldByName(w.field)
		if !ok {
			t.Errorf("field %s missing from the generated record", w.field)
			continue
		}
		if f.Offset != w.offset {
			t.Errorf("%s at offset %d, want %d", w.field, f.Offset, w.offset)
		}
	}
	if got := unsafe.Sizeof(r); got != 120 {
		t.Errorf("record is %d bytes, want 120 (8-byte aligned, no tail padding)", got)
	}
	if recordHeadSize != recordSize+MaxHeadBytes {
		t.Errorf("head record is %d bytes, want %d", recordHeadSize, recordSize+MaxHeadBytes)
	}
}

func TestEnumsMatchC(t *testing.T) {
	outcomes := map[flow.Outcome]sensorVigilOutcome{
		flow.OutcomeOK:        sensorVigilOutcomeVIGIL_OUTCOME_OK,
		flow.OutcomeNotIP:     sensorVigilOutcomeVIGIL_OUTCOME_NOT_IP,
		flow.OutcomeTruncated: sensorVigilOutcomeVIGIL_OUTCOME_TRUNCATED,
		flow.OutcomeBadHeader: sensorVigilOutcomeVIGIL_OUTCOME_BAD_HEADER,
		flow.OutcomeFragment:  sensorVigilOutcomeVIGIL_OUTCOME_FRAGMENT,
		flow.OutcomeTunnel:    sensorVigilOutcomeVIGIL_OUTCOME_TUNNEL,
	}
	for g, c := range outcomes {
		if uint32(g) != uint32(c) {
			t.Errorf("outcome %s is %d in Go, %d in C", g, g, c)
		}
	}
	if flow.NumOutcomes != int(sensorVigilOutcomeVIGIL_OUTCOME_MAX) {
		t.Errorf("flow.NumOutcomes %d, C has %d", flow.NumOutcomes, sensorVigilOutcomeVIGIL_OUTCOME_MAX)
	}
	if len(sensorVigilStats{}.Outcome) < flow.NumOutcomes {
		t.Errorf("stats has %d outcome slots for %d outcomes", len(sensorVigilStats{}.Outcome), flow.NumOutcomes)
	}
	flags := map[flow.Flags]sensorVigilFlag{
		flow.FlagFragment:         sensorVigilFlagVIGIL_F_FRAGMENT,
		flow.FlagNonFirstFragment: sensorVigilFlagVIGIL_F_NONFIRST_FRAG,
		flow.FlagMoreFragments:    sensorVigilFlagVIGIL_F_MORE_FRAGS,
		flow.FlagVXLAN:            sensorVigilFlagVIGIL_F_VXLAN,
		flow.FlagGENEVE:           sensorVigilFlagVIGIL_F_GENEVE,
	}
	for g, c := range flags {
		if uint32(g) != uint32(c) {
			t.Errorf("flag %#x in Go is %#x in C", g, c)
		}
	}
	if uint32(flow.Ingress) != uint32(sensorVigilDirectionVIGIL_DIR_INGRESS) ||
		uint32(flow.Egress) != uint32(sensorVigilDirectionVIGIL_DIR_EGRESS) {
		t.Error("directions differ between Go and C")
	}
}

// TestObjectNames checks the maps, programs and variables Go uses exist
// in the object with the types Go expects, without loading it.
func TestObjectNames(t *testing.T) {
	spec, err := loadSensor()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{sensorProgVigilXdp, sensorProgVigilTcIngress, sensorProgVigilTcEgress} {
		if spec.Programs[name] == nil {
			t.Errorf("program %s missing", name)
		}
	}
	if got := spec.Maps[sensorMapIfStats].MaxEntries; got != 2*ifSlots {
		t.Errorf("if_stats has %d entries, want 2*ifSlots = %d", got, 2*ifSlots)
	}
	for name, size := range map[string]uint32{
		sensorVarSampleCfg: 8, sensorVarCfgDecap: 4, sensorVarCfgHeadLen: 4, sensorVarCfgWakeupBytes: 4,
	} {
		v := spec.Variables[name]
		if v == nil {
			t.Errorf("variable %s missing", name)
			continue
		}
		if v.Size() != size {
			t.Errorf("variable %s is %d bytes, want %d", name, v.Size(), size)
		}
	}
	if spec.Variables[sensorVarSampleCfg].Constant() {
		t.Error("sample_cfg must be writable at run time, not a constant")
	}
	if !spec.Variables[sensorVarCfgDecap].Constant() {
		t.Error("cfg_decap should be a load-time constant, so the verifier prunes disabled paths")
	}
}

func TestPackRate(t *testing.T) {
	for _, n := range []uint32{1, 2, 3, 10, 100, 1000, 65535, 1 << 20} {
		w := packRate(n)
		if uint32(w) != n {
			t.Errorf("rate %d packed as %d", n, uint32(w))
		}
		// P(sample) = (t+1)/2^32 must be within 2^-32 of 1/n.
		thr := w >> 32
		p := float64(thr+1) / (1 << 32)
		if d := p - 1/float64(n); d < 0 || d > 1.0/(1<<32) {
			t.Errorf("rate %d: threshold %d gives p=%g, want %g", n, thr, p, 1/float64(n))
		}
	}
}
