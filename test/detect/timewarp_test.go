package detect_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/vigil-sensor/vigil/test/captures"
)

// TestBadTimestampsDoNotBlindDetection replays attacks with one packet
// dated wrong: 2100 before the first packet, 2100 halfway through, and a
// day back halfway through. Before capture time was guarded, a packet
// from 2100 moved the clock to 2100, so every later packet was late for
// every window (no alert at all) and its flow ran from 2026 to 2100.
// Each attack's rule must still fire on its key, and every flow record
// must lie within the capture's real time span.
func TestBadTimestampsDoNotBlindDetection(t *testing.T) {
	y2100 := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	variants := []struct {
		name string
		warp func(pkts []pkt) []pkt
	}{
		{"2100 first", func(p []pkt) []pkt { return insert(p, 0, y2100) }},
		{"2100 halfway", func(p []pkt) []pkt { return insert(p, len(p)/2, y2100) }},
		{"a day back halfway", func(p []pkt) []pkt { return insert(p, len(p)/2, p[len(p)/2].ci.Timestamp.Add(-24*time.Hour)) }},
	}
	cases := map[string]captures.DetectionCase{}
	for _, c := range captures.DetectionCases() {
		cases[c.Name] = c
	}
	for _, name := range []string{"syn_flood-v4", "port_scan-v4"} {
		c, ok := cases[name]
		if !ok {
			t.Fatalf("no detection case %s", name)
		}
		var buf bytes.Buffer
		if err := c.Write(&buf); err != nil {
			t.Fatal(err)
		}
		pkts := readPcap(t, buf.Bytes())
		first, last := pkts[0].ci.Timestamp, pkts[len(pkts)-1].ci.Timestamp
		for _, v := range variants {
			t.Run(name+"/"+v.name, func(t *testing.T) {
				capture := filepath.Join(t.TempDir(), "warped.pcap")
				writePcap(t, capture, v.warp(pkts))
				out := replayFile(t, capture, 1)
				started := 0
				for _, a := range readAlerts(t, out) {
					if a.Rule == c.Rule && a.State == "start" && ofAttack(c, a.Key) {
						started++
					}
				}
				if started == 0 {
					t.Errorf("%s did not fire on the attack", c.Rule)
				}
				checkFlowTimes(t, out, first, last)
			})
		}
	}
}

type pkt struct {
	ci   gopacket.CaptureInfo
	data []byte
}

// insert puts a copy of packet i, dated at, before it.
func insert(p []pkt, i int, at time.Time) []pkt {
	bad := p[i]
	bad.ci.Timestamp = at
	return append(p[:i:i], append([]pkt{bad}, p[i:]...)...)
}

func readPcap(t *testing.T, raw []byte) []pkt {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var out []pkt
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		out = append(out, pkt{ci, data})
	}
	if len(out) == 0 {
		t.Fatal("empty capture")
	}
	return out
}

func writePcap(t *testing.T, path string, pkts []pkt) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(65535, 1); err != nil { // Ethernet, as the cases
		t.Fatal(err)
	}
	for _, p := range pkts {
		if err := w.WritePacket(p.ci, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkFlowTimes fails for a flow record that starts before the
// capture's first packet or ends after its last.
func checkFlowTimes(t *testing.T, out string, first, last time.Time) {
	t.Helper()
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	flows, bad := 0, 0
	for sc.Scan() {
		if !bytes.HasPrefix(sc.Bytes(), []byte(`{"kind":"flow",`)) {
			continue
		}
		var r struct{ Start, End time.Time }
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		flows++
		if r.Start.Before(first) || r.End.After(last) {
			if bad++; bad <= 3 {
				t.Errorf("flow from %v to %v: outside the capture's %v to %v", r.Start, r.End, first, last)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if flows == 0 {
		t.Error("no flow records")
	}
	if bad > 3 {
		t.Errorf("%d flow records outside the capture's time span in all", bad)
	}
}
