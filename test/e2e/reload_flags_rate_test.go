package e2e

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

// TestReloadKeepsFlagOverrides starts vigil with --config and flags
// that override the file (--sample-rate, --interface, --flows-out),
// then reloads a file that changes those keys and the idle timeout: the
// flags must still win after the reload (rate unchanged, the file's
// extra interface not attached, records still written where
// --flows-out says) while the idle timeout from the file applies.
func TestReloadKeepsFlagOverrides(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := testutil.Vigil(t)
	lab := labUp(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "vigil.yaml")
	flagOut := filepath.Join(dir, "flag-flows.jsonl")
	const extraIf, extraPeer = "vsensor2", "vpeer2"
	if err := lab.AddVeth(extraIf, extraPeer, nil, nil); err != nil {
		t.Fatal(err)
	}
	cfg := fileConfig{
		ifaces: []string{netlab.SensorIf}, rate: 2, idle: "10m", active: "1h",
		output: filepath.Join(dir, "file-flows.jsonl"), listen: "127.0.0.1:19121", level: "info",
	}
	writeFile(t, cfgPath, cfg.String())
	v := startVigil(t, lab, bin, cfg.listen, "--config", cfgPath,
		"--sample-rate", "1", "--interface", netlab.SensorIf, "--flows-out", flagOut)
	m := v.metrics()
	if got := m.get(t, "vigil_sampling_rate"); got != 1 {
		t.Fatalf("vigil_sampling_rate %v at start, want the flag's 1 (the file says 2)", got)
	}
	reloads0 := m.counter("vigil_config_reloads_total")

	cfg.ifaces = []string{netlab.SensorIf, extraIf}
	cfg.rate, cfg.idle = 3, "1s"
	writeFile(t, cfgPath, cfg.String())
	v.signal(syscall.SIGHUP)
	v.waitMetric("reload counted", reloadTimeout, func(m promText) bool {
		return m.counter("vigil_config_reloads_total") > reloads0
	})
	time.Sleep(time.Second) // give a wrongly applied change time to show
	m = v.metrics()
	if got := m.get(t, "vigil_config_last_reload_success"); got != 1 {
		t.Errorf("vigil_config_last_reload_success %v, want 1", got)
	}
	if got := m.get(t, "vigil_sampling_rate"); got != 1 {
		t.Errorf("vigil_sampling_rate %v after a reload, want the flag's 1 (the file says 3)", got)
	}
	if _, ok := m.sum("vigil_attach_mode", `interface="`+extraIf+`"`); ok {
		t.Errorf("%s attached after a reload, but --interface %s overrides the file's interfaces", extraIf, netlab.SensorIf)
	}

	idle0 := m.counter("vigil_flows_expired_total", `reason="idle"`)
	sink := lab.NewSink(t, 4, 7401)
	s := lab.NewSender(t, 4, 7401, 10)
	if sent, err := s.Send(100); err != nil || sent != 100 {
		t.Fatalf("sent %d of 100: %v", sent, err)
	}
	waitSinks(t, map[*netlab.Sink]uint64{sink: 100})
	time.Sleep(readerFlush)
	v.waitMetric("the flow expired idle (idle_timeout 1s from the reloaded file)", reloadTimeout, func(m promText) bool {
		return m.counter("vigil_flows_expired_total", `reason="idle"`) > idle0 && m.get(t, "vigil_flows_active") == 0
	})
	v.stop()

	if recs := readFlowsFile(t, cfg.output); len(recs) != 0 {
		t.Errorf("%d records in the file's flows.output; --flows-out overrides it", len(recs))
	}
	rs := byKey(readFlowsFile(t, flagOut))[udpKey(s)]
	if len(rs) != 1 || rs[0].EndReason != "idle" {
		t.Fatalf("%d records of the flow in --flows-out, want 1 ending idle: %+v", len(rs), rs)
	}
	checkEstimate(t, "the flow", rs[0].Packets, rs[0].SampledPackets, rs[0].Bytes, rs[0].SampledBytes, rs[0].SamplingRate, 100, s.FrameLen())
	if rs[0].SamplingRate != 1 {
		t.Errorf("sampling_rate %d, want 1", rs[0].SamplingRate)
	}
}

// TestReloadRateMidFlow changes sample_rate from 1 to 10 by SIGHUP in
// the middle of a 4 s UDP flow (vigil run --config FILE --log-json).
// The flow's one record must weigh every sample by the rate it was
// taken at: sampling_rate is the rounded mean of the samples' rates
// (packets / sampled_packets), strictly between 1 and 10, the packet
// estimate is within the 5-sigma bound of what was sent (only the part
// sent at 1-in-10 varies; packets - sampled_packets = 9 x the samples
// taken at 10 tells how many), bytes are packets x the frame length, and
// vigil_sampling_rate reads 10. The log stays JSON, and the reload is
// logged.
func TestReloadRateMidFlow(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := testutil.Vigil(t)
	lab := labUp(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "vigil.yaml")
	cfg := fileConfig{
		ifaces: []string{netlab.SensorIf}, rate: 1, idle: "10m", active: "1h",
		output: filepath.Join(dir, "flows.jsonl"), listen: "127.0.0.1:19122", level: "info",
	}
	writeFile(t, cfgPath, cfg.String())
	v := startVigil(t, lab, bin, cfg.listen, "--config", cfgPath, "--log-json")
	reloads0 := v.metrics().counter("vigil_config_reloads_total")

	sink := lab.NewSink(t, 4, 7601)
	s := lab.NewSender(t, 4, 7601, 500)
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := s.SendPaced(context.Background(), 2000, 4*time.Second, nil)
		done <- result{n, err}
	}()
	time.Sleep(2 * time.Second)
	cfg.rate = 10
	writeFile(t, cfgPath, cfg.String())
	v.signal(syscall.SIGHUP)
	v.waitMetric("reload counted", reloadTimeout, func(m promText) bool {
		return m.counter("vigil_config_reloads_total") > reloads0
	})
	res := <-done
	if res.err != nil {
		t.Fatalf("sending: %v", res.err)
	}
	waitSinks(t, map[*netlab.Sink]uint64{sink: uint64(res.n)})
	time.Sleep(quiet)
	if got := v.metrics().get(t, "vigil_sampling_rate"); got != 10 {
		t.Errorf("vigil_sampling_rate %v, want 10", got)
	}
	v.stop()
	checkJSONLog(t, v.stderr.String())
	if !strings.Contains(v.stderr.String(), cfgPath) {
		t.Errorf("the reload of %s is not logged:\n%s", cfgPath, v.stderr.String())
	}

	rs := byKey(readFlowsFile(t, cfg.output))[udpKey(s)]
	if len(rs) != 1 {
		t.Fatalf("%d records of the flow, want 1", len(rs))
	}
	r := rs[0]
	t.Logf("sent %d, sampled %d, estimate %d, sampling_rate %d", res.n, r.SampledPackets, r.Packets, r.SamplingRate)
	if want := uint32((r.Packets + r.SampledPackets/2) / r.SampledPackets); r.SamplingRate != want {
		t.Errorf("sampling_rate %d, want the rounded mean of the samples' rates %d (packets %d / samples %d)",
			r.SamplingRate, want, r.Packets, r.SampledPackets)
	}
	if r.SamplingRate <= 1 || r.SamplingRate >= 10 {
		t.Errorf("sampling_rate %d for a flow sampled at 1 then at 10", r.SamplingRate)
	}
	if r.SampledBytes != r.SampledPackets*uint64(s.FrameLen()) || r.Bytes != r.Packets*uint64(s.FrameLen()) {
		t.Errorf("bytes %d / sampled %d for %d / %d packets of %d bytes", r.Bytes, r.SampledBytes, r.Packets, r.SampledPackets, s.FrameLen())
	}
	// With S1 samples at rate 1 and S2 at rate 10: packets = S1 + 10 S2
	// and sampled = S1 + S2, so packets - sampled = 9 S2. Every packet
	// sent before the change was sampled: S1 of them; the rest, n2, were
	// sampled 1 in 10, and only that part of the estimate varies.
	if (r.Packets-r.SampledPackets)%9 != 0 {
		t.Fatalf("packets %d - sampled %d is not a multiple of 9: samples weighed by rates other than 1 and 10", r.Packets, r.SampledPackets)
	}
	s2 := (r.Packets - r.SampledPackets) / 9
	s1 := r.SampledPackets - s2
	n2 := res.n - int(s1)
	if s1 == 0 || s2 == 0 || n2 < int(s2) {
		t.Fatalf("%d samples at rate 1 and %d at rate 10 of %d packets: impossible", s1, s2, res.n)
	}
	bound := binomialBound(n2, 10)
	t.Logf("%d packets at 1-in-1, %d at 1-in-10 (%d samples), 5-sigma bound %.0f", s1, n2, s2, bound)
	if diff := math.Abs(float64(r.Packets) - float64(res.n)); diff > bound {
		t.Errorf("estimate %d packets, sent %d: off by %.0f, more than the 5-sigma bound %.0f", r.Packets, res.n, diff, bound)
	}
}
