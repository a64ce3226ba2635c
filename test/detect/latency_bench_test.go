package detect_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/daemon"
	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/test/captures"
)

// BenchmarkDetectionLatency replays the generated SYN flood captures
// (100k packets/s against one host, amid background traffic) through
// the same pipeline as `vigil replay`, at 1-in-100 and 1-in-1, and
// reports the detection latency in event time: from the first attack
// packet to the syn_flood alert (ms-to-alert, target < 1000). ns/op is
// the wall time of a whole replay.
func BenchmarkDetectionLatency(b *testing.B) {
	for _, name := range []string{"syn_flood-v4", "syn_flood_spoofed-v4", "syn_flood-v6"} {
		var c captures.DetectionCase
		for _, dc := range captures.DetectionCases() {
			if dc.Name == name {
				c = dc
			}
		}
		path := filepath.Join(b.TempDir(), name+".pcap")
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		if err := c.Write(w); err != nil {
			b.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		f.Close()
		for _, rate := range []uint32{100, 1} {
			b.Run(name+"/rate="+map[uint32]string{1: "1", 100: "100"}[rate], func(b *testing.B) {
				var latency time.Duration
				for i := 0; i < b.N; i++ {
					latency = replayLatency(b, path, rate, c)
				}
				b.ReportMetric(float64(latency)/1e6, "ms-to-alert")
			})
		}
	}
}

// replayLatency replays path and returns the time from the case's first
// attack packet to its rule's start alert.
func replayLatency(b *testing.B, path string, rate uint32, c captures.DetectionCase) time.Duration {
	b.Helper()
	cfg := daemon.DefaultConfig()
	out := filepath.Join(b.TempDir(), "out.jsonl")
	cfg.Flows.Output = out
	if _, err := daemon.Replay(context.Background(), daemon.ReplayOptions{
		Files: []string{path}, Config: cfg, SampleRate: rate, Seed: 1, Output: out,
	}); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if !bytes.HasPrefix(sc.Bytes(), []byte(`{"kind":"alert",`)) {
			continue
		}
		var a alert
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			b.Fatal(err)
		}
		if a.Rule == c.Rule && a.State == flow.AlertStart.String() {
			return a.Time.Sub(c.AttackStart)
		}
	}
	b.Fatalf("%s at 1-in-%d: no %s alert", c.Name, rate, c.Rule)
	return 0
}
