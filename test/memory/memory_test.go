//go:build linux

// Package memory measures the whole daemon's memory with a million
// active flows: it replays generated captures through the built vigil
// binary and reads the child's peak resident set. It takes about a
// gigabyte of disk in a temporary directory, two cores for half a
// minute and, before the fix of issue item 6, a gigabyte of memory, so
// it lives in its own package and is skipped under -short.
//
//	go test -count=1 -v ./test/memory
//
// VIGIL_MEMORY_BIN runs another vigil binary instead of the one built
// from this tree (to measure a build before a change in the same run).
package memory

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

const (
	million = 1_000_000
	// rssBound is the whole daemon's budget for 1M active flows
	// (docs/FLOWS.md, Memory).
	rssBound = 300 << 20
	// waveSpan is the capture time over which a wave's flows start;
	// the second wave starts at wave2At, past the first's idle timeout.
	waveSpan = 5 * time.Second
	wave2At  = 20 * time.Second
)

// config holds a million flows and more (no eviction: if the mass
// expiry failed, the second wave would double the table) with an idle
// timeout that ends the first wave before the second.
const config = `flows:
  max_flows: 4000000
  idle_timeout: 10s
  active_timeout: 10m
`

// TestMillionFlowsRSS replays one million concurrent UDP flows (one
// packet each, all active until the end of the capture, then flushed),
// and then a capture where those million idle out mid-capture and a
// second million follows, and bounds vigil's peak resident set in both.
func TestMillionFlowsRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("replays 1-2 M flows through the daemon (about 10 s, 1 GB of disk)")
	}
	bin := os.Getenv("VIGIL_MEMORY_BIN")
	if bin == "" {
		bin = testutil.Vigil(t)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vigil.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		waves int
	}{
		{"1M active flows", 1},
		{"1M flows, mass expiry, 1M more", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			capture := filepath.Join(dir, fmt.Sprintf("waves%d.pcap", tc.waves))
			writeWaves(t, capture, tc.waves)
			start := time.Now()
			cmd := exec.Command(bin, "replay", "--config", cfg, "--sample-rate", "1", "--no-detect", "--flows-out", os.DevNull, capture)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("vigil replay: %v\n%s", err, out)
			}
			want := fmt.Sprintf(" %d flow records", tc.waves*million)
			if !strings.Contains(string(out), want) {
				t.Fatalf("vigil replay did not write %d records:\n%s", tc.waves*million, out)
			}
			peak := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10 // KiB on Linux
			t.Logf("%s: peak RSS %.1f MiB (%d bytes per flow), replay %.1f s", tc.name, float64(peak)/(1<<20), peak/million, time.Since(start).Seconds())
			if peak > rssBound {
				t.Errorf("%s: peak RSS %.1f MiB, over the %d MiB bound", tc.name, float64(peak)/(1<<20), rssBound>>20)
			}
			os.Remove(capture)
		})
	}
}

// writeWaves writes a pcap of waves waves of a million UDP flows from
// distinct source addresses, one 60-byte frame each: wave w starts at
// w×wave2At and spreads its flows over waveSpan.
func writeWaves(t *testing.T, path string, waves int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4) // microseconds
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 1) // Ethernet
	w.Write(hdr)
	const frameLen = 60
	rec := make([]byte, 16+frameLen)
	frame := rec[16:]
	copy(frame[0:], []byte{0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00})
	ip := frame[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 17 // IPv4, TTL, UDP
	binary.BigEndian.PutUint16(ip[2:], 20+8+18)
	copy(ip[16:], []byte{192, 0, 2, 1})
	udp := frame[34:42]
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], 53)
	binary.BigEndian.PutUint16(udp[4:], 8+18)
	binary.LittleEndian.PutUint32(rec[8:], frameLen)
	binary.LittleEndian.PutUint32(rec[12:], frameLen)
	base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	for wave := range waves {
		for i := range million {
			at := base + int64(wave)*wave2At.Microseconds() + int64(i)*waveSpan.Microseconds()/million
			binary.LittleEndian.PutUint32(rec[0:], uint32(at/1e6))
			binary.LittleEndian.PutUint32(rec[4:], uint32(at%1e6))
			copy(ip[12:16], []byte{10, byte(wave<<5 | i>>16), byte(i >> 8), byte(i)})
			ip[10], ip[11] = 0, 0
			binary.BigEndian.PutUint16(ip[10:], checksum(ip))
			w.Write(rec)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
