package main

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// writeSteadyCapture writes seconds of one UDP flow at pps packets per
// second.
func writeSteadyCapture(t *testing.T, pps, seconds int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "steady.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	w := pcapgo.NewWriterNanos(bw)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 1, 1}}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, eth, ip, &layers.UDP{SrcPort: 5000, DstPort: 53}, gopacket.Payload(make([]byte, 64))); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	for i := range pps * seconds {
		ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * time.Second / time.Duration(pps)), CaptureLength: len(buf.Bytes()), Length: len(buf.Bytes())}
		if err := w.WritePacket(ci, buf.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return path
}

// Mistaken sampling flags are usage errors, found before any file is
// opened (the file here does not exist).
func TestReplaySamplingFlagErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pcap")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--sample-rate", "10", "--sample-budget", "1000"}, "exclude each other"},
		{[]string{"--sample-budget", "1000", "--sample-rate", "1"}, "exclude each other"},
		{[]string{"--sample-budget", "0"}, "--sample-budget 0: must be at least 1"},
		{[]string{"--sample-budget", "-5"}, "--sample-budget -5: must be at least 1"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(append(append([]string{"replay"}, tc.args...), missing), &stdout, &stderr)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("replay %v: error %v (exit status %d), want a usage error saying %q", tc.args, err, exitCode(err), tc.want)
		}
	}
}

// With --sample-budget the summary says what the controller did: 10,000
// packets/s for 3 s at a budget of 1,000 samples/s go from 1 in 1 to
// about 1 in 10. Without it, replay stays 1 in 1 and says nothing of it.
func TestReplaySampleBudgetSummary(t *testing.T) {
	capture := writeSteadyCapture(t, 10_000, 3)
	out := filepath.Join(t.TempDir(), "flows.json")
	var stdout, stderr bytes.Buffer
	if err := run([]string{"replay", "--no-detect", "--flows-out", out, "--sample-budget", "1000", capture}, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	re := regexp.MustCompile(`^vigil replay: 30000 packets, \d+ bytes, (\d+) samples, .*; adaptive sampling at 1000 samples/s: (\d+) rate changes, 1 in 1 to 1 in (\d+), 1 in (\d+) at the end\n$`)
	m := re.FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("summary %q does not match %s", stderr.String(), re)
	}
	samples, _ := strconv.Atoi(m[1])
	changes, _ := strconv.Atoi(m[2])
	hi, _ := strconv.Atoi(m[3])
	last, _ := strconv.Atoi(m[4])
	// The first 100 ms at 1 in 1 (1,000 samples), then about 1,000/s.
	if changes < 1 || hi < 8 || hi > 12 || last < 8 || last > 12 || samples < 2900 || samples > 4100 {
		t.Errorf("summary %q: want rate changes up to about 1 in 10 and about 4,000 samples", stderr.String())
	}

	stderr.Reset()
	if err := run([]string{"replay", "--no-detect", "--flows-out", out, capture}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	// 106-byte frames: 14 Ethernet, 20 IP, 8 UDP, 64 payload.
	if want := "vigil replay: 30000 packets, 3180000 bytes, 30000 samples, 1 flow records, 0 alert reports; self-check: the samples stand for 30000 packets (±0.0%)\n"; stderr.String() != want {
		t.Errorf("fixed replay summary %q, want %q", stderr.String(), want)
	}
}
