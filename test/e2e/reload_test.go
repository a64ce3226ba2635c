package e2e

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

const (
	// reloadTimeout bounds the wait for vigil to act on a SIGHUP.
	reloadTimeout = 10 * time.Second
	// readerFlush is twice the ring buffer reader's 100 ms flush
	// interval: after it, what arrived is in the flow table.
	readerFlush = 200 * time.Millisecond
)

// fileConfig is a complete configuration file for the reload tests.
type fileConfig struct {
	ifaces       []string
	rate         int
	idle, active string
	output       string
	listen       string
	level        string
}

func (c fileConfig) String() string {
	return fmt.Sprintf(`# vigil reload test
capture:
  interfaces: [%s]
  attach_mode: auto
  egress: false
  sampling: fixed
  sample_rate: %d
flows:
  idle_timeout: %s
  active_timeout: %s
  max_flows: 100000
  output: %q
http:
  listen: %s
log:
  level: %s
  format: text
`, strings.Join(c.ifaces, ", "), c.rate, c.idle, c.active, c.output, c.listen, c.level)
}

// TestReloadOnSIGHUP runs vigil with --config only and changes the file
// under it, sending SIGHUP each time:
//
//  1. 10 min idle timeout at 1-in-1: flow A (UDP) stays in the table.
//  2. Valid file: sample_rate 7, idle_timeout 1s, a second interface,
//     log.level warn. vigil_config_reloads_total +1, reload failures
//     unchanged, vigil_config_last_reload_success 1, vigil_sampling_rate
//     7, the new interface attached, and flow A now expires idle. Flow
//     B, sent after, expires idle too.
//  3. A file with an unknown key (and sample_rate 3, idle_timeout 1h):
//     vigil keeps running and healthy, logs an error naming file:line
//     of the bad key (and no INFO line: the level is warn),
//     vigil_config_reload_failures_total +1, last_reload_success 0,
//     reloads unchanged, the rate stays 7, and the 1 s idle timeout
//     stays (flow D expires).
//  4. The flows file is renamed away (log rotation) and the file made
//     valid again without the second interface, active_timeout 2s and
//     log.level info: after SIGHUP the interface is detached, INFO lines
//     are logged again, flow E goes to a new file at the original path,
//     and flow F, sent for 5 s, is cut into active-timeout slices.
//
// After SIGTERM (exit 0): the rotated file holds A (exact, rate 1), B
// and D (rate 7, within 5 sigma), all ending "idle", and not E or F;
// the new file holds E (idle) and F's slices (each shorter than 2 s, in
// order, all but the last ending "active", the sum within 5 sigma) and
// none of A, B, D.
func TestReloadOnSIGHUP(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := testutil.Vigil(t)
	lab := labUp(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "vigil.yaml")
	flowsPath := filepath.Join(dir, "flows.jsonl")
	rotated := flowsPath + ".1"
	const extraIf, extraPeer = "vsensor2", "vpeer2"
	cfg := fileConfig{
		ifaces: []string{netlab.SensorIf}, rate: 1, idle: "10m", active: "1h",
		output: flowsPath, listen: "127.0.0.1:19120", level: "info",
	}

	writeFile(t, cfgPath, cfg.String())
	v := startVigil(t, lab, bin, cfg.listen, "--config", cfgPath)
	m := v.metrics()
	if got := m.get(t, "vigil_sampling_rate"); got != 1 {
		t.Fatalf("vigil_sampling_rate %v, want the file's 1", got)
	}
	reloads0 := m.counter("vigil_config_reloads_total")
	failures0 := m.counter("vigil_config_reload_failures_total")
	idleOf := func(m promText) float64 { return m.counter("vigil_flows_expired_total", `reason="idle"`) }
	active := func(m promText) float64 { return m.get(t, "vigil_flows_active") }

	// send sends n datagrams of a new UDP flow from the peer and waits
	// until they have arrived.
	send := func(port uint16, payload, n int) (flowKey, int) {
		t.Helper()
		sink := lab.NewSink(t, 4, port)
		s := lab.NewSender(t, 4, port, payload)
		if sent, err := s.Send(n); err != nil || sent != n {
			t.Fatalf("UDP %s: sent %d of %d: %v", udpKey(s), sent, n, err)
		}
		waitSinks(t, map[*netlab.Sink]uint64{sink: uint64(n)})
		return udpKey(s), s.FrameLen()
	}
	// expired waits until a flow sent after idleBefore was read has
	// expired idle and the table is empty.
	expired := func(what string, idleBefore float64) {
		t.Helper()
		time.Sleep(readerFlush) // the flow's samples are in the table
		v.waitMetric(what+" expired idle", reloadTimeout, func(m promText) bool {
			return idleOf(m) > idleBefore && active(m) == 0
		})
	}
	attached := func(m promText, ifname string) bool {
		_, ok := m.sum("vigil_attach_mode", `interface="`+ifname+`"`)
		return ok
	}

	// 1. Flow A stays: the idle timeout is 10 min.
	idleA := idleOf(m)
	keyA, lenA := send(7301, 120, 200)
	v.waitMetric("flow A in the table", reloadTimeout, func(m promText) bool { return active(m) >= 1 })
	time.Sleep(2 * time.Second)
	if m := v.metrics(); idleOf(m) != idleA || active(m) < 1 {
		t.Fatalf("flow A expired within 2s with a 10 min idle timeout:\n%s", grepVigil(string(m)))
	}

	// 2. A valid change.
	if err := lab.AddVeth(extraIf, extraPeer, nil, nil); err != nil {
		t.Fatal(err)
	}
	cfg.rate, cfg.idle, cfg.level = 7, "1s", "warn"
	cfg.ifaces = []string{netlab.SensorIf, extraIf}
	writeFile(t, cfgPath, cfg.String())
	v.signal(syscall.SIGHUP)
	m = v.waitMetric("reload counted", reloadTimeout, func(m promText) bool {
		return m.counter("vigil_config_reloads_total") > reloads0
	})
	if got := m.counter("vigil_config_reloads_total"); got != reloads0+1 {
		t.Errorf("vigil_config_reloads_total %v after one SIGHUP, was %v", got, reloads0)
	}
	if got := m.counter("vigil_config_reload_failures_total"); got != failures0 {
		t.Errorf("vigil_config_reload_failures_total %v after a valid reload, was %v", got, failures0)
	}
	if got := m.get(t, "vigil_config_last_reload_success"); got != 1 {
		t.Errorf("vigil_config_last_reload_success %v after a valid reload, want 1", got)
	}
	v.waitMetric("sampling rate 7", 2*time.Second, func(m promText) bool { return m.get(t, "vigil_sampling_rate") == 7 })
	v.waitMetric(extraIf+" attached", reloadTimeout, func(m promText) bool { return attached(m, extraIf) })
	expired("flow A (after idle_timeout 10m -> 1s)", idleA)
	idleB := idleOf(v.metrics())
	keyB, lenB := send(7302, 300, 7000)
	expired("flow B", idleB)

	// 3. A bad file: the running configuration stays.
	bad := fileConfig{
		ifaces: []string{netlab.SensorIf, extraIf}, rate: 3, idle: "1h", active: "1h",
		output: flowsPath, listen: cfg.listen, level: "debug",
	}.String()
	bad = strings.Replace(bad, "  max_flows: 100000\n", "  max_flows: 100000\n  idle_timout: 5s\n", 1)
	badLine := 1 + strings.Count(bad[:strings.Index(bad, "idle_timout")], "\n")
	writeFile(t, cfgPath, bad)
	logBefore := len(v.stderr.String())
	v.signal(syscall.SIGHUP)
	m = v.waitMetric("reload failure counted", reloadTimeout, func(m promText) bool {
		return m.counter("vigil_config_reload_failures_total") > failures0
	})
	if !v.running() {
		t.Fatalf("vigil exited on a bad configuration file: %v", v.err)
	}
	if code, _, err := v.scrape("/healthz"); err != nil || code != 200 {
		t.Errorf("/healthz after a bad reload: %d %v", code, err)
	}
	if got := m.counter("vigil_config_reload_failures_total"); got != failures0+1 {
		t.Errorf("vigil_config_reload_failures_total %v after one bad reload, was %v", got, failures0)
	}
	if got := m.counter("vigil_config_reloads_total"); got != reloads0+1 {
		t.Errorf("vigil_config_reloads_total %v after a failed reload, want %v", got, reloads0+1)
	}
	if got := m.get(t, "vigil_config_last_reload_success"); got != 0 {
		t.Errorf("vigil_config_last_reload_success %v after a failed reload, want 0", got)
	}
	if got := m.get(t, "vigil_sampling_rate"); got != 7 {
		t.Errorf("vigil_sampling_rate %v after a failed reload (file said 3), want 7 unchanged", got)
	}
	logged := v.stderr.String()[logBefore:]
	fileLine := regexp.MustCompile(regexp.QuoteMeta(fmt.Sprintf("%s:%d", cfgPath, badLine)) + `\b`)
	found := false
	for _, l := range strings.Split(logged, "\n") {
		if fileLine.MatchString(l) && strings.Contains(l, "level=ERROR") {
			found = true
		}
		if strings.Contains(l, "level=INFO") || strings.Contains(l, "level=DEBUG") {
			t.Errorf("logged at log.level warn (reloaded): %s", l)
		}
	}
	if !found {
		t.Errorf("no error naming %s:%d (the unknown key idle_timout) logged after SIGHUP:\n%s", cfgPath, badLine, logged)
	}
	idleD := idleOf(m)
	keyD, lenD := send(7303, 50, 700)
	expired("flow D (idle_timeout must stay 1s)", idleD)
	if got := v.metrics().get(t, "vigil_sampling_rate"); got != 7 {
		t.Errorf("vigil_sampling_rate %v, want 7", got)
	}

	// 4. Log rotation: rename the output, reload a valid file.
	if err := os.Rename(flowsPath, rotated); err != nil {
		t.Fatalf("rotating the flows file (it should exist: flows A, B and D were written): %v", err)
	}
	cfg.ifaces, cfg.active, cfg.level = []string{netlab.SensorIf}, "2s", "info"
	writeFile(t, cfgPath, cfg.String())
	logBefore = len(v.stderr.String())
	v.signal(syscall.SIGHUP)
	m = v.waitMetric("second reload counted", reloadTimeout, func(m promText) bool {
		return m.counter("vigil_config_reloads_total") >= reloads0+2
	})
	if got := m.get(t, "vigil_config_last_reload_success"); got != 1 {
		t.Errorf("vigil_config_last_reload_success %v after a valid reload, want 1", got)
	}
	v.waitMetric(extraIf+" detached", reloadTimeout, func(m promText) bool { return !attached(m, extraIf) })
	if logged := v.stderr.String()[logBefore:]; !strings.Contains(logged, "level=INFO") {
		t.Errorf("no INFO line logged after log.level went back to info:\n%s", logged)
	}
	idleE := idleOf(m)
	keyE, lenE := send(7304, 80, 300)
	expired("flow E", idleE)

	// Flow F lasts 5 s: the 2 s active timeout cuts it.
	sinkF := lab.NewSink(t, 4, 7305)
	sf := lab.NewSender(t, 4, 7305, 40)
	fStart := time.Now()
	nF, err := sf.SendPaced(context.Background(), 1000, 5*time.Second, nil)
	if err != nil {
		t.Fatalf("flow F: %v", err)
	}
	fEnd := time.Now()
	waitSinks(t, map[*netlab.Sink]uint64{sinkF: uint64(nF)})
	v.waitMetric("flow F ended", reloadTimeout, func(m promText) bool { return active(m) == 0 })
	v.stop()

	old := byKey(readFlowsFile(t, rotated))
	cur := byKey(readFlowsFile(t, flowsPath))
	type expect struct {
		name     string
		key      flowKey
		n, frame int
		rate     uint32
		file     map[flowKey][]flowRecord
		fileName string
		other    map[flowKey][]flowRecord
	}
	for _, e := range []expect{
		{"A", keyA, 200, lenA, 1, old, "the rotated file", cur},
		{"B", keyB, 7000, lenB, 7, old, "the rotated file", cur},
		{"D", keyD, 700, lenD, 7, old, "the rotated file", cur},
		{"E", keyE, 300, lenE, 7, cur, "the new file", old},
	} {
		if n := len(e.other[e.key]); n != 0 {
			t.Errorf("flow %s (%s): %d record(s) in the wrong file", e.name, e.key, n)
		}
		rs := e.file[e.key]
		if len(rs) != 1 {
			t.Errorf("flow %s (%s): %d records in %s, want 1", e.name, e.key, len(rs), e.fileName)
			continue
		}
		r := rs[0]
		if r.EndReason != "idle" || r.SamplingRate != e.rate {
			t.Errorf("flow %s: end_reason %q sampling_rate %d, want idle at %d", e.name, r.EndReason, r.SamplingRate, e.rate)
		}
		checkEstimate(t, "flow "+e.name, r.Packets, r.SampledPackets, r.Bytes, r.SampledBytes, r.SamplingRate, e.n, e.frame)
	}

	keyF := udpKey(sf)
	if n := len(old[keyF]); n != 0 {
		t.Errorf("flow F: %d record(s) in the rotated file", n)
	}
	parts := cur[keyF]
	var sum, sampled, sumBytes, sampledBytes uint64
	nActive := 0
	for i, r := range parts {
		sum += r.Packets
		sampled += r.SampledPackets
		sumBytes += r.Bytes
		sampledBytes += r.SampledBytes
		if r.SamplingRate != 7 {
			t.Errorf("flow F slice %d: sampling_rate %d, want 7", i, r.SamplingRate)
		}
		if d := r.End.Sub(r.Start); d >= 2*time.Second {
			t.Errorf("flow F slice %d: lasts %s, longer than the 2s active timeout", i, d)
		}
		if i > 0 && !r.Start.After(parts[i-1].End) {
			t.Errorf("flow F slice %d starts at %s, before slice %d ends at %s", i, r.Start, i-1, parts[i-1].End)
		}
		switch {
		case r.EndReason == "active":
			nActive++
		case r.EndReason == "idle" && i == len(parts)-1:
		default:
			t.Errorf("flow F slice %d of %d: end_reason %q", i, len(parts), r.EndReason)
		}
		if r.Start.Before(fStart.Add(-clockSlack)) || r.End.After(fEnd.Add(clockSlack)) {
			t.Errorf("flow F slice %d: %s .. %s outside the sending time %s .. %s", i, r.Start, r.End, fStart, fEnd)
		}
	}
	t.Logf("flow F: %d packets in 5 s, %d slices (%d active), estimate %d", nF, len(parts), nActive, sum)
	if nActive < 2 {
		t.Errorf("flow F: %d slices ending active in 5 s with a 2 s active timeout, want at least 2", nActive)
	}
	checkEstimate(t, "flow F", sum, sampled, sumBytes, sampledBytes, 7, nF, sf.FrameLen())
}

// checkEstimate checks a flow's figures, sent as n frames of frame bytes
// and sampled 1 in rate: packets = rate x sampled, bytes = rate x
// sampled bytes, every sampled frame frame bytes long, and the packet
// estimate exact at rate 1, within the 5-sigma binomial bound above.
func checkEstimate(t *testing.T, what string, packets, sampled, nbytes, sampledBytes uint64, rate uint32, n, frame int) {
	t.Helper()
	r := uint64(rate)
	if packets != r*sampled || nbytes != r*sampledBytes || sampledBytes != sampled*uint64(frame) {
		t.Errorf("%s: %d packets / %d bytes from %d samples / %d bytes of %d-byte frames at rate %d: inconsistent",
			what, packets, nbytes, sampled, sampledBytes, frame, rate)
	}
	bound := 0.0
	if rate > 1 {
		bound = binomialBound(n, int(rate))
	}
	if diff := math.Abs(float64(packets) - float64(n)); diff > bound {
		t.Errorf("%s: estimate %d packets, sent %d (bound %.0f)", what, packets, n, bound)
	}
}
