package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
)

// pingRule is a rule file with one rule that alerts on any ICMP echo to
// a host: the live reload test's probe that rules are running.
func pingRule(name string) string {
	return fmt.Sprintf(`rules:
  - name: %s
    description: echo requests to a host (reload test)
    severity: low
    filter: icmp && dst_port == 2048
    group_by: [dst_addr]
    window: 1s
    measures:
      pps: {rate: packets}
    thresholds:
      pps: 1
    quiet: 1s
`, name)
}

// ruleNames lists the running rules from GET /api/v1/rules.
func (v *vigilProc) ruleNames() []string {
	v.t.Helper()
	code, body, err := v.scrape("/api/v1/rules")
	if err != nil || code != http.StatusOK {
		v.t.Fatalf("GET /api/v1/rules: %d %v %s", code, err, body)
	}
	var rules []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal([]byte(body), &rules); err != nil {
		v.t.Fatalf("GET /api/v1/rules: %v\n%s", err, body)
	}
	var names []string
	for _, r := range rules {
		names = append(names, r.Name)
	}
	return names
}

// TestDetectRulesReload runs vigil with the built-in pack and a rule file
// (--rules) holding one ping rule, then:
//
//  1. pings: the ping rule raises its alert, so the file's rule runs;
//  2. breaks the rule file and POSTs /-/reload: 400 with the file, line
//     and field of the problem, a counted reload failure, and the
//     running rules unchanged: a ping after it still alerts;
//  3. renames the rule in a valid file and sends SIGHUP: the new rule
//     runs instead of the old one, whose alert has ended, and pings
//     raise the new rule's alert.
func TestDetectRulesReload(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := testutil.Vigil(t)
	lab := labUp(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "flows.jsonl")
	rules := filepath.Join(dir, "local.yaml")
	writeFile(t, rules, pingRule("ping_probe"))
	const addr = "127.0.0.1:19124"
	cfg := filepath.Join(dir, "vigil.yaml")
	writeFile(t, cfg, fmt.Sprintf("capture:\n  interfaces: [vsensor]\n  sampling: fixed\n  sample_rate: 1\nflows:\n  output: %q\nhttp:\n  listen: %s\n", out, addr))
	v := startVigil(t, lab, bin, addr, "--config", cfg, "--rules", rules)
	names := v.ruleNames()
	if !slices.Contains(names, "ping_probe") || !slices.Contains(names, "syn_flood") {
		t.Fatalf("running rules %v, want the pack and ping_probe", names)
	}
	pinger := lab.NewPinger(t, 4)
	ping := func(rule string, want int) {
		t.Helper()
		deadline := time.Now().Add(arriveTimeout)
		for {
			if _, err := pinger.Send([]int{56, 56, 56}); err != nil {
				t.Fatalf("ping: %v", err)
			}
			n := 0
			for _, a := range readAlerts(t, out) {
				if a.Rule == rule && a.State == "start" {
					n++
				}
			}
			if n >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %d-th %s alert after %v of pings; alerts: %+v", want, rule, arriveTimeout, readAlerts(t, out))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	ping("ping_probe", 1)

	// 2. A bad rule file: refused, the running rules kept.
	failures0 := v.metrics().counter("vigil_config_reload_failures_total")
	writeFile(t, rules, strings.Replace(pingRule("ping_probe"), "pps: 1\n", "pps: lots\n", 1))
	code, body, err := v.request("POST", "/-/reload")
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusBadRequest || !strings.Contains(body, rules+":11:") || !strings.Contains(body, "rules[0].thresholds.pps") {
		t.Errorf("POST /-/reload with a bad rule file: %d %q, want 400 naming %s:11 and rules[0].thresholds.pps", code, body, rules)
	}
	if got := v.metrics().counter("vigil_config_reload_failures_total"); got != failures0+1 {
		t.Errorf("reload failures %v, want %v", got, failures0+1)
	}
	if got := v.ruleNames(); !slices.Equal(got, names) {
		t.Errorf("rules after a failed reload %v, want %v", got, names)
	}
	time.Sleep(1500 * time.Millisecond) // the first alert's quiet period: it ends
	ping("ping_probe", 2)

	// 3. A good file with the rule renamed, by SIGHUP.
	reloads0 := v.metrics().counter("vigil_config_reloads_total")
	writeFile(t, rules, pingRule("ping_probe_renamed"))
	v.signal(syscall.SIGHUP)
	v.waitMetric("the SIGHUP reload done", reloadTimeout, func(m promText) bool {
		return m.counter("vigil_config_reloads_total") > reloads0
	})
	got := v.ruleNames()
	if !slices.Contains(got, "ping_probe_renamed") || slices.Contains(got, "ping_probe") {
		t.Errorf("rules after the reload %v, want ping_probe_renamed instead of ping_probe", got)
	}
	ping("ping_probe_renamed", 1)
	v.stop()

	starts, ends := map[string]int{}, map[string]int{}
	for _, a := range readAlerts(t, out) {
		switch a.State {
		case "start":
			starts[a.ID]++
		case "end":
			ends[a.ID]++
		}
	}
	for id, n := range starts {
		if n != 1 || ends[id] != 1 {
			t.Errorf("alert %s: %d starts and %d ends, want 1 and 1", id, n, ends[id])
		}
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatal(err)
	}
}
