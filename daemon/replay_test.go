package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// writeUDPCapture writes flows UDP flows of perFlow packets each, one
// packet every 10 ms, and returns the file's path.
func writeUDPCapture(t *testing.T, flows, perFlow int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "udp.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	for i := range perFlow {
		for fl := range flows {
			eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
			ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, byte(fl + 1)}, DstIP: net.IP{10, 0, 1, 1}}
			udp := &layers.UDP{SrcPort: layers.UDPPort(10000 + fl), DstPort: 53}
			_ = udp.SetNetworkLayerForChecksum(ip)
			buf := gopacket.NewSerializeBuffer()
			if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(make([]byte, 100))); err != nil {
				t.Fatal(err)
			}
			ts := start.Add(time.Duration(i*flows+fl) * 10 * time.Millisecond)
			ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(buf.Bytes()), Length: len(buf.Bytes())}
			if err := w.WritePacket(ci, buf.Bytes()); err != nil {
				t.Fatal(err)
			}
		}
	}
	return path
}

type flowLine struct {
	Kind           string `json:"kind"`
	SrcAddr        string `json:"src_addr"`
	Packets        uint64 `json:"packets"`
	SampledPackets uint64 `json:"sampled_packets"`
	SamplingRate   uint32 `json:"sampling_rate"`
	EndReason      string `json:"end_reason"`
	Interface      string `json:"interface"`
}

func replayLines(t *testing.T, capture string, rate uint32, seed uint64) ([]flowLine, []byte) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "flows.json")
	st, err := Replay(context.Background(), ReplayOptions{
		Files: []string{capture}, Config: DefaultConfig(), SampleRate: rate, Seed: seed, Output: out, Interface: "cap0",
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var lines []flowLine
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var l flowLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if uint64(len(lines)) != st.Flows {
		t.Errorf("%d lines, stats say %d flows", len(lines), st.Flows)
	}
	return lines, raw
}

func TestReplayFlushesEveryFlowAtEndOfInput(t *testing.T) {
	capture := writeUDPCapture(t, 5, 200)
	lines, _ := replayLines(t, capture, 1, 1)
	if len(lines) != 5 {
		t.Fatalf("%d flows, want 5", len(lines))
	}
	for _, l := range lines {
		if l.Kind != "flow" || l.Packets != 200 || l.SampledPackets != 200 || l.SamplingRate != 1 || l.EndReason != "shutdown" || l.Interface != "cap0" {
			t.Errorf("flow %+v, want 200 packets at rate 1 ended by shutdown on cap0", l)
		}
	}
}

func TestReplaySamplingIsSeeded(t *testing.T) {
	capture := writeUDPCapture(t, 4, 2500)
	_, a := replayLines(t, capture, 10, 7)
	_, b := replayLines(t, capture, 10, 7)
	if string(a) != string(b) {
		t.Error("the same seed gave different flows")
	}
	lines, c := replayLines(t, capture, 10, 8)
	if string(a) == string(c) {
		t.Error("different seeds gave identical flows")
	}
	var total uint64
	for _, l := range lines {
		if l.SamplingRate != 10 {
			t.Errorf("sampling rate %d, want 10", l.SamplingRate)
		}
		total += l.Packets
	}
	// 10,000 packets at 1 in 10: 1000 samples expected, sd 30; 5 sd.
	if total < 10*(1000-150) || total > 10*(1000+150) {
		t.Errorf("estimated %d packets of 10000, outside 5 standard deviations", total)
	}
}

// TestReplayBadFileKeepsTheOthers replays a good capture, one that is
// not a capture, one cut short mid-packet and a second good one. The bad
// files are errors that name them; every flow of the good files, and
// of the cut file up to its cut, is still written.
func TestReplayBadFileKeepsTheOthers(t *testing.T) {
	good := writeUDPCapture(t, 5, 200)
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pcap")
	if err := os.WriteFile(garbage, []byte("this is not a capture\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// 24-byte header, then 1000 packets of 16+142 bytes: cut inside the
	// 501st.
	cut := filepath.Join(dir, "cut.pcap")
	if err := os.WriteFile(cut, raw[:24+500*158+80], 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "flows.json")
	st, err := Replay(context.Background(), ReplayOptions{
		Files: []string{good, garbage, cut, good}, Config: DefaultConfig(), SampleRate: 1, Seed: 1, Output: out,
	})
	if err == nil {
		t.Fatal("no error for a file that is not a capture and one cut short")
	}
	for _, want := range []string{garbage, cut + ": reading packet 501"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if want := uint64(1000 + 500 + 1000); st.Packets != want { // garbage holds none
		t.Errorf("%d packets read, want %d", st.Packets, want)
	}
	lines, rerr := os.ReadFile(out)
	if rerr != nil {
		t.Fatal(rerr)
	}
	var packets uint64
	for _, l := range bytes.Split(bytes.TrimSpace(lines), []byte("\n")) {
		var f flowLine
		if err := json.Unmarshal(l, &f); err != nil {
			t.Fatalf("bad line %q: %v", l, err)
		}
		packets += f.Packets
	}
	if want := uint64(1000 + 500 + 1000); packets != want {
		t.Errorf("flow records hold %d packets, want %d: every packet before a fault", packets, want)
	}
}
