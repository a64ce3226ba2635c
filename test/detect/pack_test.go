// Package detect_test replays the generated attack and benign captures
// of test/captures through `vigil replay` with the embedded rule pack, at
// sampling rates 1 and 100, and checks the alerts: each rule fires once
// per attack with the right key, and never on benign traffic.
package detect_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/captures"
)

var (
	intelOnce sync.Once
	intelErr  error
	intelPath string
)

func TestMain(m *testing.M) { testutil.Main(m) }

// vigil builds cmd/vigil once for all the tests of the package.
func vigil(t *testing.T) string { return testutil.Vigil(t) }

// intelList writes the intel list (Spamhaus DROP format) once.
func intelList(t *testing.T) string {
	t.Helper()
	intelOnce.Do(func() {
		intelPath = filepath.Join(testutil.SharedDir(t), "drop.txt")
		f, err := os.Create(intelPath)
		if err != nil {
			intelErr = err
			return
		}
		intelErr = captures.WriteIntelList(f)
		if err := f.Close(); intelErr == nil {
			intelErr = err
		}
	})
	if intelErr != nil {
		t.Fatal(intelErr)
	}
	return intelPath
}

// alert is an alert line of `vigil replay` (docs/FLOWS.md).
type alert struct {
	Kind         string            `json:"kind"`
	ID           string            `json:"id"`
	Rule         string            `json:"rule"`
	State        string            `json:"state"`
	Severity     string            `json:"severity"`
	Key          map[string]string `json:"key"`
	Time         time.Time         `json:"time"`
	Start        time.Time         `json:"start"`
	End          time.Time         `json:"end"`
	SamplingRate uint32            `json:"sampling_rate"`
	Techniques   []string          `json:"techniques"`
}

// replay writes the capture of c and a configuration with the intel and
// watched lists, runs `vigil replay` at the sampling rate, and returns
// the alert lines of its output.
func replay(t *testing.T, c captures.DetectionCase, rate int) []alert {
	t.Helper()
	dir := t.TempDir()
	capture := filepath.Join(dir, "capture.pcap")
	f, err := os.Create(capture)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out := replayFile(t, capture, rate)
	// The capture is large; the output is read, not kept.
	_ = os.Remove(capture)
	return readAlerts(t, out)
}

// replayFile runs `vigil replay` of capture at the sampling rate, with
// the intel and watched lists, and returns the path of its output.
func replayFile(t *testing.T, capture string, rate int) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cfg.yaml")
	yaml := fmt.Sprintf(`detect:
  lists:
    - name: intel
      path: %s
      format: spamhaus
    - name: watched
      entries: ["10.1.0.50", "2001:db8:1::50"]
`, intelList(t))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.jsonl")
	cmd := exec.Command(vigil(t), "replay", "--config", cfg, "--sample-rate", fmt.Sprint(rate), "--seed", "1",
		"--flows-out", out, "--quiet", capture)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstderr:\n%s", cmd, err, stderr.Bytes())
	}
	return out
}

// readAlerts returns the alert lines of a replay's output.
func readAlerts(t *testing.T, out string) []alert {
	t.Helper()
	of, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer of.Close()
	var alerts []alert
	sc := bufio.NewScanner(of)
	sc.Buffer(nil, 1<<20)
	flowPrefix := []byte(`{"kind":"flow",`)
	for sc.Scan() {
		if bytes.HasPrefix(sc.Bytes(), flowPrefix) {
			continue
		}
		var a alert
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("output line %q: %v", sc.Text(), err)
		}
		if a.Kind == "alert" {
			alerts = append(alerts, a)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return alerts
}

// ofAttack reports whether an alert key holds an address or prefix of
// the attack.
func ofAttack(c captures.DetectionCase, key map[string]string) bool {
	for _, v := range key {
		if a, err := netip.ParseAddr(v); err == nil && c.Attack(a) {
			return true
		}
		if p, err := netip.ParsePrefix(v); err == nil &&
			(c.Attack(p.Addr()) || slices.ContainsFunc(c.AttackHosts, p.Contains)) {
			return true
		}
	}
	return false
}

var rates = []int{1, 100}

// sem caps the replays running at once: captures reach a million packets.
var sem = make(chan struct{}, 2)

// TestRulePack replays each attack at sampling rates 1 and 100: its rule
// starts exactly one alert, with the case's key, no earlier than the
// attack; every alert started ends by the end of the replay; and no alert
// of any rule is about background traffic only.
func TestRulePack(t *testing.T) {
	for _, c := range captures.DetectionCases() {
		for _, rate := range rates {
			t.Run(fmt.Sprintf("%s/rate=%d", c.Name, rate), func(t *testing.T) {
				t.Parallel()
				sem <- struct{}{}
				defer func() { <-sem }()
				alerts := replay(t, c, rate)
				var starts []alert
				ended := map[string]bool{}
				for _, a := range alerts {
					switch a.State {
					case "start":
						if a.Rule == c.Rule {
							starts = append(starts, a)
						}
					case "end":
						ended[a.ID] = true
					case "update":
					default:
						t.Errorf("alert %s of %s: state %q", a.ID, a.Rule, a.State)
					}
					if !ofAttack(c, a.Key) {
						t.Errorf("%s alert %s (%s) on background traffic: key %v", a.Rule, a.ID, a.State, a.Key)
					}
				}
				for _, a := range alerts {
					if a.State == "start" && !ended[a.ID] {
						t.Errorf("%s alert %s (key %v) started at %s and never ended", a.Rule, a.ID, a.Key, a.Time)
					}
				}
				if len(starts) != 1 {
					t.Fatalf("%d %s alerts started, want 1: %+v", len(starts), c.Rule, starts)
				}
				s := starts[0]
				if diff := cmp.Diff(c.Key, s.Key); diff != "" {
					t.Errorf("%s key (-want +got):\n%s", c.Rule, diff)
				}
				if s.Time.Before(c.AttackStart) {
					t.Errorf("%s started at %s, before the attack at %s", c.Rule, s.Time, c.AttackStart)
				}
				t.Logf("%s at 1:%d: %s detected %s after the attack began (event time), severity %s, sampling rate %d, techniques %v",
					c.Name, rate, c.Rule, s.Time.Sub(c.AttackStart), s.Severity, s.SamplingRate, s.Techniques)
			})
		}
	}
}

// TestRulePackBenign replays the benign captures at sampling rates 1 and
// 100: no alert at all.
func TestRulePackBenign(t *testing.T) {
	for _, c := range captures.BenignCases() {
		for _, rate := range rates {
			t.Run(fmt.Sprintf("%s/rate=%d", c.Name, rate), func(t *testing.T) {
				t.Parallel()
				sem <- struct{}{}
				defer func() { <-sem }()
				for _, a := range replay(t, c, rate) {
					t.Errorf("%s alert %s (%s) at %s, key %v", a.Rule, a.ID, a.State, a.Time, a.Key)
				}
			})
		}
	}
}
