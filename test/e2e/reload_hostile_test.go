package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

// TestReloadHostileFiles reloads files that once crashed or bloated the
// daemon: a YAML tag on a list-typed key (a goccy/go-yaml panic: SIGHUP
// killed the daemon with SIGSEGV, POST /-/reload dropped the connection
// uncounted), the same in a rule file, and 40 KB of nested lists (the
// parser's memory grew with the square of the depth: 1.3 GB). Each
// reload, by SIGHUP and by POST /-/reload, must fail, be counted, keep
// the running configuration, and leave the daemon's memory where it was.
func TestReloadHostileFiles(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := testutil.Vigil(t)
	lab := labUp(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "vigil.yaml")
	rulesPath := filepath.Join(dir, "rules.yaml")
	cfg := fileConfig{
		ifaces: []string{netlab.SensorIf}, rate: 5, idle: "10m", active: "1h",
		output: filepath.Join(dir, "flows.jsonl"), listen: "127.0.0.1:19121", level: "info",
	}
	good := cfg.String()
	writeFile(t, cfgPath, good)
	v := startVigil(t, lab, bin, cfg.listen, "--config", cfgPath)
	rss0 := vmRSS(t, v.cmd.Process.Pid)

	hostile := map[string]string{
		"tag on a list": strings.Replace(good, "interfaces: ["+netlab.SensorIf+"]", "interfaces: !!seq", 1),
		"unknown tag":   strings.Replace(good, "interfaces: ["+netlab.SensorIf+"]", "interfaces: !x ["+netlab.SensorIf+"]", 1),
		"nested lists":  good + "extra: " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "\n",
		"rule file tag": good + "detect:\n  rules: [" + rulesPath + "]\n",
	}
	writeFile(t, rulesPath, "rules:\n  - name: tagged\n    severity: high\n    group_by: !!seq\n")
	failures := v.metrics().counter("vigil_config_reload_failures_total")
	n := 0
	for name, text := range hostile {
		for _, how := range []string{"SIGHUP", "POST"} {
			writeFile(t, cfgPath, text)
			switch how {
			case "SIGHUP":
				v.signal(syscall.SIGHUP)
			case "POST":
				time.Sleep(1100 * time.Millisecond) // under the endpoint's rate limit
				code, body, err := v.request("POST", "/-/reload")
				if err != nil {
					t.Fatalf("%s by POST: %v (the connection must not drop)", name, err)
				}
				if code < 400 {
					t.Errorf("%s by POST: %d %q, want an error status", name, code, body)
				}
			}
			n++
			want := failures + float64(n)
			v.waitMetric(fmt.Sprintf("%s by %s counted", name, how), reloadTimeout, func(m promText) bool {
				return m.counter("vigil_config_reload_failures_total") >= want
			})
			if !v.running() {
				t.Fatalf("vigil exited reloading %s by %s: %v\n%s", name, how, v.err, grepVigil(v.stderr.String()))
			}
		}
	}
	m := v.metrics()
	if got := m.get(t, "vigil_sampling_rate"); got != 5 {
		t.Errorf("vigil_sampling_rate %v after failed reloads, want 5 kept", got)
	}
	if rss := vmRSS(t, v.cmd.Process.Pid); rss > rss0+64<<20 {
		t.Errorf("RSS grew from %d to %d KiB over the hostile reloads", rss0>>10, rss>>10)
	}
	writeFile(t, cfgPath, good)
	v.stop()
}

// vmRSS reads a process's resident set size in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
