package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

// The bits of CAP_NET_ADMIN (12), CAP_PERFMON (38) and CAP_BPF (39).
const runtimeCapMask = 1<<12 | 1<<38 | 1<<39

// TestRunAsRootDropsCapabilities starts vigil as root with every
// capability in the lab's sensor namespace. Once it serves, every
// thread must hold exactly CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON
// (effective, permitted, bounding), nothing inheritable or ambient. With
// only those, POST /-/reload (with the token from
// http.reload_token_file; without it, or from a page of another site, it
// is refused and counted) must still attach a new interface, and
// SIGTERM detach cleanly.
func TestRunAsRootDropsCapabilities(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := testutil.Vigil(t)
	lab := labUp(t)
	dir := t.TempDir()
	const listen = "127.0.0.1:19150"
	const extraIf, extraPeer = "vsensor3", "vpeer3"
	tokenPath := filepath.Join(dir, "reload.token")
	writeFile(t, tokenPath, "e2e-reload-token\n")
	if err := os.Chmod(tokenPath, 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "vigil.yaml")
	config := func(ifaces ...string) string {
		return fmt.Sprintf("capture:\n  interfaces: [%s]\nflows:\n  output: %q\nhttp:\n  listen: %s\n  reload_token_file: %s\nlog:\n  stats_interval: 0s\n",
			strings.Join(ifaces, ", "), filepath.Join(dir, "flows.jsonl"), listen, tokenPath)
	}
	writeFile(t, cfgPath, config(netlab.SensorIf))
	v := startVigil(t, lab, bin, listen, "--config", cfgPath)

	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", v.cmd.Process.Pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of vigil: %v %v", tasks, err)
	}
	for _, status := range tasks {
		caps := testutil.ProcCaps(t, status)
		for field, want := range map[string]uint64{
			"CapEff": runtimeCapMask, "CapPrm": runtimeCapMask, "CapBnd": runtimeCapMask,
			"CapInh": 0, "CapAmb": 0,
		} {
			if got := caps[field]; got != want {
				t.Errorf("%s: %s %016x, want %016x", status, field, got, want)
			}
		}
	}
	if !strings.Contains(v.stderr.String(), "msg=\"dropped capabilities\"") {
		t.Errorf("the drop was not logged:\n%s", v.stderr.String())
	}

	if err := lab.AddVeth(extraIf, extraPeer, nil, nil); err != nil {
		t.Fatal(err)
	}
	writeFile(t, cfgPath, config(netlab.SensorIf, extraIf))
	for _, c := range []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{"no token", nil, http.StatusUnauthorized},
		{"wrong token", map[string]string{"Authorization": "Bearer nope"}, http.StatusUnauthorized},
		{"page of another site", map[string]string{"Authorization": "Bearer e2e-reload-token", "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"token", map[string]string{"Authorization": "Bearer e2e-reload-token"}, http.StatusOK},
	} {
		code, body, err := v.requestWith("POST", "/-/reload", c.headers)
		if err != nil || code != c.want {
			t.Fatalf("POST /-/reload, %s: %d %q %v, want %d\n%s", c.name, code, body, err, c.want, v.stderr.String())
		}
	}
	m := v.waitMetric(extraIf+" attached after the reload", reloadTimeout, func(m promText) bool {
		_, ok := m.sum("vigil_attach_mode", `interface="`+extraIf+`"`)
		return ok
	})
	for reason, want := range map[string]float64{"unauthorized": 2, "cross_origin": 1, "content_type": 0, "rate_limited": 0} {
		if got := m.counter("vigil_http_reload_refused_total", `reason="`+reason+`"`); got != want {
			t.Errorf("vigil_http_reload_refused_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	v.stop()
	if !strings.Contains(v.stderr.String(), "msg=detached") {
		t.Errorf("no detach logged:\n%s", v.stderr.String())
	}
}
