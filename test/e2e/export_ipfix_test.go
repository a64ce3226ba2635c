package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
)

// nfdumpRecord is a flow as nfdump 1.7.1 prints it with -o json.
type nfdumpRecord struct {
	First   string `json:"first"`
	Last    string `json:"last"`
	Packets uint64 `json:"in_packets"`
	Bytes   uint64 `json:"in_bytes"`
	Proto   uint8  `json:"proto"`
	SrcPort uint16 `json:"src_port"`
	DstPort uint16 `json:"dst_port"`
	Src4    string `json:"src4_addr"`
	Dst4    string `json:"dst4_addr"`
	Src6    string `json:"src6_addr"`
	Dst6    string `json:"dst6_addr"`
}

// TestExportIPFIXToNfcapdLive exports live UDP flows at 1-in-1 sampling
// over IPFIX/UDP to a real nfcapd in the sensor namespace, and reads them
// back with nfdump: every test flow once, with the 5-tuple, packets,
// bytes and first/last times (to the millisecond) of vigil's
// flows.output record, and those exact.
func TestExportIPFIXToNfcapdLive(t *testing.T) {
	testutil.RequirePrivileged(t)
	nfdump := testutil.RequireTool(t, "nfdump")
	bin := testutil.Vigil(t)
	lab := labUp(t)
	dir := t.TempDir()
	flowsPath := filepath.Join(dir, "flows.jsonl")
	const metricsAddr, ipfixPort = "127.0.0.1:19122", 4739
	nf := testutil.StartNfcapd(t, ipfixPort, "nsenter", "--net=/run/netns/"+lab.Sensor.Name)
	cfg := exportConfig(t, metricsAddr, flowsPath, filepath.Join(dir, "spool"), 16,
		fmt.Sprintf("  ipfix:\n    - {address: \"127.0.0.1:%d\", transport: udp, observation_domain: 7}", ipfixPort))
	const ipfixSink = `sink="ipfix-0"`
	v := startVigil(t, lab, bin, metricsAddr, "--config", cfg)
	flows := newUDPFlows(t, lab)
	want := flows.send(60)
	file := waitFlowsFile(t, flowsPath, want)
	m := v.waitMetric("ipfix-0 sent everything spooled", exportTimeout, func(m promText) bool {
		sent := m.counter("vigil_export_records_sent_total", ipfixSink)
		return sent >= float64(len(want)) && sent == m.counter("vigil_export_records_spooled_total", ipfixSink)
	})
	sent := int(m.get(t, "vigil_export_records_sent_total", ipfixSink))
	nf.WaitProcessed(t, sent, arriveTimeout)
	v.stop()
	nf.Stop(t)

	cmd := exec.Command(nfdump, "-R", nf.Dir, "-o", "json")
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nfdump: %v\n%s", err, out)
	}
	var recs []nfdumpRecord
	if err := json.Unmarshal(out, &recs); err != nil {
		t.Fatalf("nfdump json: %v\n%s", err, out)
	}
	got := map[flowKey][]nfdumpRecord{}
	for _, r := range recs {
		k := flowKey{IPVersion: 4, Proto: r.Proto, SrcPort: r.SrcPort, DstPort: r.DstPort}
		src, dst := r.Src4, r.Dst4
		if r.Src6 != "" {
			k.IPVersion, src, dst = 6, r.Src6, r.Dst6
		}
		var err1, err2 error
		k.Src, err1 = netip.ParseAddr(src)
		k.Dst, err2 = netip.ParseAddr(dst)
		if err1 != nil || err2 != nil {
			t.Fatalf("nfdump record %+v: %v %v", r, err1, err2)
		}
		got[k] = append(got[k], r)
	}
	ms := func(s string) int64 {
		tm, err := time.Parse("2006-01-02T15:04:05.000", s)
		if err != nil {
			t.Fatalf("nfdump time %q: %v", s, err)
		}
		return tm.UnixMilli()
	}
	for k, w := range want {
		fr := file[k]
		if len(fr) != 1 {
			t.Errorf("%s: %d records in flows.output, want 1", k, len(fr))
			continue
		}
		checkExact(t, "flows.output", k, fr[0], w)
		g := got[k]
		if len(g) != 1 {
			t.Errorf("%s: %d records in nfdump, want 1", k, len(g))
			continue
		}
		if g[0].Packets != fr[0].Packets || g[0].Bytes != fr[0].Bytes ||
			ms(g[0].First) != fr[0].Start.UnixMilli() || ms(g[0].Last) != fr[0].End.UnixMilli() {
			t.Errorf("%s: nfdump %d packets %d bytes %s..%s; flows.output %d packets %d bytes %s..%s",
				k, g[0].Packets, g[0].Bytes, g[0].First, g[0].Last, fr[0].Packets, fr[0].Bytes,
				fr[0].Start.Format(time.RFC3339Nano), fr[0].End.Format(time.RFC3339Nano))
		}
	}
	if p := nf.Processed(); len(recs) != p {
		t.Errorf("nfdump read %d records, nfcapd processed %d", len(recs), p)
	}
}
