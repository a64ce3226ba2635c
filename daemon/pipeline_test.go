package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/sampler"
)

// captureBatches reads a capture with the pcap source, as Replay does,
// and returns copies of its batches.
func captureBatches(t *testing.T, path string, rate uint32) [][]flow.Sample {
	t.Helper()
	src, err := sampler.NewPcapSource(sampler.PcapConfig{SampleRate: rate, Seed: 1, BatchSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	var out [][]flow.Sample
	if err := src.ReadFileFunc(context.Background(), path, func(b []flow.Sample) error {
		out = append(out, slices.Clone(b))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// releases counts how often each batch was given back to its source.
type releases struct {
	mu sync.Mutex
	n  map[*flow.Sample]int
}

func (r *releases) release(b []flow.Sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n[&b[0]]++
}

func (r *releases) check(t *testing.T, batches [][]flow.Sample) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, b := range batches {
		if n := r.n[&b[0]]; n != 1 {
			t.Errorf("batch %d released %d times, want once", i, n)
		}
	}
}

func testPipeline(t *testing.T, cfg Config, opts pipelineOptions) (*pipeline, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "flows.json")
	p, err := newPipeline(&cfg, "", out, func(uint32) string { return "cap0" }, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p, out
}

// ruleConfig runs one rule file instead of the built-in pack.
func ruleConfig(t *testing.T, rules string) Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Detect.BuiltinRules = false
	cfg.Detect.Rules = []string{path}
	return cfg
}

// Every consumer sees every batch and each batch goes back once, after
// the last of them; the table's records do not depend on how many
// workers feed it.
func TestPipelineFanOut(t *testing.T) {
	capture := writeUDPCapture(t, 37, 60)
	batches := captureBatches(t, capture, 1)
	var want []byte
	for _, workers := range []int{1, 2, 4, 16} {
		cfg := DefaultConfig()
		cfg.Flows.Workers = workers
		rel := &releases{n: map[*flow.Sample]int{}}
		var detected, fed int
		var mu sync.Mutex
		p, out := testPipeline(t, cfg, pipelineOptions{
			Release: rel.release,
			detectSamples: func(b []flow.Sample) {
				mu.Lock()
				detected += len(b)
				mu.Unlock()
			},
			onSamples: func(b []flow.Sample) { fed += len(b) },
		})
		latest := int64(0)
		for _, b := range batches {
			latest = feed(p, b, latest)
		}
		rel.check(t, batches)
		if err := p.Close(latest); err != nil {
			t.Fatal(err)
		}
		if fed != 37*60 || detected != fed || p.Dropped() != 0 {
			t.Errorf("workers %d: %d samples fed, %d evaluated, %d dropped; want %d, all evaluated", workers, fed, detected, p.Dropped(), 37*60)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(got), "\n"); n != 37 {
			t.Errorf("workers %d: %d records, want 37", workers, n)
		}
		if want == nil {
			want = got
		} else if string(got) != string(want) {
			t.Errorf("workers %d: records differ from 1 worker's", workers)
		}
	}
}

// Live, detection that is behind misses whole batches and counts every
// sample of them; the table still gets everything, and every batch goes
// back to the ring buffer exactly once.
func TestPipelineLossyDetectionCountsDrops(t *testing.T) {
	capture := writeUDPCapture(t, 10, 800)
	batches := captureBatches(t, capture, 1)
	if len(batches) <= detectQueue+1 {
		t.Fatalf("%d batches: too few to fill the detection queue", len(batches))
	}
	rel := &releases{n: map[*flow.Sample]int{}}
	unblock := make(chan struct{})
	var evaluated int
	p, out := testPipeline(t, DefaultConfig(), pipelineOptions{
		Lossy: true, Release: rel.release,
		detectSamples: func(b []flow.Sample) { <-unblock; evaluated += len(b) },
	})
	total := 0
	for _, b := range batches {
		p.Submit(b)
		total += len(b)
	}
	close(unblock)
	p.Sync()
	rel.check(t, batches)
	if err := p.Close(batches[len(batches)-1][0].Timestamp); err != nil {
		t.Fatal(err)
	}
	dropped := int(p.Dropped())
	if dropped == 0 || dropped+evaluated != total {
		t.Errorf("%d samples evaluated + %d dropped, want %d with some dropped", evaluated, dropped, total)
	}
	// At most the queue and the batch in hand were kept.
	if kept := total - dropped; kept > (detectQueue+1)*64 {
		t.Errorf("%d samples kept for detection, more than the queue holds", kept)
	}
	var packets uint64
	for _, r := range readRecords(t, out) {
		packets += r.Packets
	}
	if packets != uint64(total) {
		t.Errorf("records hold %d packets, want all %d", packets, total)
	}
}

// An alert is in the output as soon as it starts, before any flush of
// flows.
func TestPipelineAlertsWrittenAtOnce(t *testing.T) {
	cfg := ruleConfig(t, `rules:
  - name: dns_source
    description: a source sending to port 53
    severity: low
    filter: dst_port == 53
    group_by: [src_addr]
    window: 1s
    measures:
      pps: {rate: packets}
    thresholds:
      pps: 50
`)
	capture := writeUDPCapture(t, 2, 300)
	batches := captureBatches(t, capture, 1)
	p, out := testPipeline(t, cfg, pipelineOptions{})
	latest := int64(0)
	started := false
	for _, b := range batches {
		latest = feed(p, b, latest)
		if p.Alerts() > 0 {
			started = true
			break
		}
	}
	if !started {
		t.Fatal("no alert while feeding 100 pps per source")
	}
	var alerts int
	for _, r := range readRecords(t, out) {
		if r.Kind == "alert" {
			alerts++
		}
	}
	if alerts == 0 {
		t.Error("the alert was emitted but is not in the output yet")
	}
	if err := p.Close(latest); err != nil {
		t.Fatal(err)
	}
}

type outLine struct {
	Kind    string `json:"kind"`
	Packets uint64 `json:"packets"`
}

func readRecords(t *testing.T, path string) []outLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []outLine
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l outLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}
