package ipfix

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

// nfdumpFlow is a flow as nfdump 1.7.1 prints it with -o json.
type nfdumpFlow struct {
	Sampled  int    `json:"sampled"`
	First    string `json:"first"`
	Last     string `json:"last"`
	Packets  uint64 `json:"in_packets"`
	Bytes    uint64 `json:"in_bytes"`
	Proto    uint8  `json:"proto"`
	SrcPort  uint16 `json:"src_port"`
	DstPort  uint16 `json:"dst_port"`
	ICMPType uint8  `json:"icmp_type"`
	ICMPCode uint8  `json:"icmp_code"`
	TOS      uint8  `json:"src_tos"`
	Src4     string `json:"src4_addr"`
	Dst4     string `json:"dst4_addr"`
	Src6     string `json:"src6_addr"`
	Dst6     string `json:"dst6_addr"`
	Input    uint32 `json:"input_snmp"`
	Output   uint32 `json:"output_snmp"`
	Dir      uint8  `json:"direction"`
	SrcVLAN  uint16 `json:"src_vlan"`
	TCPFlags string `json:"tcp_flags"`
}

func runNfdump(t *testing.T, args ...string) []byte {
	t.Helper()
	bin := testutil.RequireTool(t, "nfdump")
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nfdump %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// nfdumpFlowKey is what the test compares per flow.
type nfdumpFlowKey struct {
	Src, Dst         string
	SrcPort, DstPort uint16
	Proto            uint8
	Packets, Bytes   uint64
	FirstMs, LastMs  int64
	Sampled          bool
	In, Out          uint32
	Dir              uint8
	VLAN             uint16
	TOS              uint8
}

func wantNfdump(r *flow.Record) nfdumpFlowKey {
	k := &r.Key
	w := nfdumpFlowKey{
		Src: k.Src().String(), Dst: k.Dst().String(),
		SrcPort: k.SrcPort, DstPort: k.DstPort, Proto: k.Proto,
		Packets: r.Packets, Bytes: r.Bytes,
		FirstMs: r.Start / 1e6, LastMs: r.End / 1e6,
		// nfdump marks every flow with a sampler as sampled, rate 1 too.
		Sampled: true,
		Dir:     uint8(k.Direction), VLAN: k.VLAN, TOS: r.TOS,
	}
	if k.Direction == flow.Egress {
		w.Out = k.Ifindex
	} else {
		w.In = k.Ifindex
	}
	return w
}

func gotNfdump(t *testing.T, f nfdumpFlow) nfdumpFlowKey {
	t.Helper()
	ms := func(s string) int64 {
		tm, err := time.Parse("2006-01-02T15:04:05.000", s)
		if err != nil {
			t.Fatalf("nfdump time %q: %v", s, err)
		}
		return tm.UnixMilli()
	}
	g := nfdumpFlowKey{
		Src: f.Src4, Dst: f.Dst4, SrcPort: f.SrcPort, DstPort: f.DstPort, Proto: f.Proto,
		Packets: f.Packets, Bytes: f.Bytes, FirstMs: ms(f.First), LastMs: ms(f.Last),
		Sampled: f.Sampled != 0, In: f.Input, Out: f.Output, Dir: f.Dir, VLAN: f.SrcVLAN, TOS: f.TOS,
	}
	if f.Proto == 1 || f.Proto == 58 {
		g.DstPort = uint16(f.ICMPType)<<8 | uint16(f.ICMPCode)
	}
	if f.Src6 != "" {
		g.Src, g.Dst = netip.MustParseAddr(f.Src6).String(), netip.MustParseAddr(f.Dst6).String()
	}
	return g
}

var nfdumpSamplerRE = regexp.MustCompile(`Assigned Sampler: id: (\d+), algorithm: (\d+), packet interval: (\d+), packet space: (\d+)`)

// TestIPFIXToNfcapd exports IPv4 and IPv6 flows at rates 1, 100 and 37,
// and one flow whose samples had two rates, through the UDP transport
// to a real nfcapd, and reads them back with nfdump: every flow with
// its addresses, ports, protocol, Vigil's estimated packets and bytes,
// times to the millisecond, and the sampling rates as nfdump's
// samplers.
func TestIPFIXToNfcapd(t *testing.T) {
	n := testutil.StartNfcapd(t, 0)
	clock := flow.NewManualClock(time.Now())
	tr := newTransport("udp", fmt.Sprintf("127.0.0.1:%d", n.Port), options{ObservationDomainID: 42, Clock: clock})
	defer tr.Close()

	// Every rate appears in the first Send, which fits in one message:
	// the selector records all come in the first message.
	var recs []flow.Record
	for i := range 60 {
		rate := []uint32{1, 100, 37}[i%3]
		recs = append(recs, ipfixTestRecord(i, i%2 == 1, rate))
	}
	// Samples at rates 10 and 30: mean 20, estimates not a multiple of
	// the sampled counts.
	mixed := ipfixTestRecord(60, false, 10)
	mixed.Samples, mixed.RateSum = 2, 40
	mixed.SampledPackets, mixed.SampledBytes = 2, 1000
	mixed.Packets, mixed.Bytes = 10+30, 400*10+600*30
	recs = append([]flow.Record{mixed}, recs...)

	items := ipfixItems(recs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	batches := [][][]byte{items[:4]}
	for i := 4; i < len(items); i += 16 {
		batches = append(batches, items[i:min(i+16, len(items))])
	}
	for _, b := range batches {
		if got, err := tr.Send(ctx, b); err != nil || got != len(b) {
			t.Fatalf("Send = %d, %v", got, err)
		}
	}
	n.WaitProcessed(t, len(recs), 10*time.Second)
	n.Stop(t)

	var flows []nfdumpFlow
	if err := json.Unmarshal(runNfdump(t, "-R", n.Dir, "-o", "json"), &flows); err != nil {
		t.Fatalf("nfdump json: %v", err)
	}
	got := map[nfdumpFlowKey]int{}
	for _, f := range flows {
		got[gotNfdump(t, f)]++
	}
	want := map[nfdumpFlowKey]int{}
	for i := range recs {
		want[wantNfdump(&recs[i])]++
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("flows in nfdump (-want +got):\n%s\nnfcapd:\n%s", diff, n.Log())
	}

	// The rates, as nfdump lists the exporter's samplers.
	files, _ := filepath.Glob(filepath.Join(n.Dir, "nfcapd.*"))
	if len(files) != 1 {
		t.Fatalf("nfcapd files: %v", files)
	}
	exporters := string(runNfdump(t, "-E", files[0]))
	samplers := map[string]string{}
	for _, m := range nfdumpSamplerRE.FindAllStringSubmatch(exporters, -1) {
		samplers[m[1]] = fmt.Sprintf("algorithm %s interval %s space %s", m[2], m[3], m[4])
	}
	wantSamplers := map[string]string{
		"1":   "algorithm 4 interval 1 space 0",
		"100": "algorithm 4 interval 1 space 99",
		"37":  "algorithm 4 interval 1 space 36",
		"20":  "algorithm 4 interval 1 space 19",
	}
	if diff := cmp.Diff(wantSamplers, samplers); diff != "" {
		t.Errorf("samplers (-want +got):\n%s\n%s", diff, exporters)
	}
	if !strings.Contains(exporters, "ID:  42") && !strings.Contains(exporters, "ID: 42") {
		t.Errorf("observation domain 42 not in nfdump -E:\n%s", exporters)
	}
	// nfdump counts only flow records in the sequence; RFC 7011 counts
	// the selector records too (docs/IPFIX.md). The 8 in the first
	// message (two per rate) make the second message's sequence number 8
	// more than nfdump expects: one "sequence error", and no loss.
	if !strings.Contains(n.Log(), "Flows: 61, Packets: ") || !strings.Contains(n.Log(), "Sequence Errors: 1,") {
		t.Errorf("nfcapd summary:\n%s", n.Log())
	}
}
