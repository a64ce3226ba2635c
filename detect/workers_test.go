package detect

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/vigil-sensor/vigil/flow"
)

// TestWorkersMatchOneEngine: an engine of 2 and of 3 workers raises
// exactly the alerts, with the same counters, as one engine, over the
// random rule sets of TestDispatchMatchesNaive (each key is its owner's,
// chained rules read every worker's alerts). The chained rule reads the
// alerts of a batch in rule order, each rule's in the order of its keys'
// owners, not of the batch's events: its alerts are the same ones (rule,
// key, state), their figures may differ.
func TestWorkersMatchOneEngine(t *testing.T) {
	split := func(as []flow.Alert) (plain []flow.Alert, chained map[string]int) {
		chained = map[string]int{}
		for _, a := range as {
			if a.Rule == "chained" {
				chained[fmt.Sprint(a.Key, a.State)]++
				continue
			}
			plain = append(plain, a)
		}
		return plain, chained
	}
	for seed := range uint64(6) {
		r := rand.New(rand.NewPCG(seed, 77))
		set := engLoad(t, dispRules(t, r, 60), Options{})
		batches, sources := dispBatches(r, dispTraffic{batches: 80, step: 200_000})
		wantA, wantS := dispRun(t, set, false, batches, sources)
		want, wantC := split(wantA)
		if len(wantC) == 0 {
			t.Fatalf("seed %d: the chained rule raised nothing", seed)
		}
		for _, n := range []int{2, 3} {
			gotA, gotS := dispRunWorkers(t, set, false, n, batches, sources)
			got, gotC := split(gotA)
			if d := gocmp.Diff(wantS, gotS); d != "" {
				t.Fatalf("seed %d, %d workers: rule counters differ (-one +workers):\n%s", seed, n, d)
			}
			if !reflect.DeepEqual(want, got) {
				t.Fatalf("seed %d, %d workers: alerts differ (-one +workers):\n%s", seed, n, gocmp.Diff(want, got))
			}
			if d := gocmp.Diff(wantC, gotC); d != "" {
				t.Fatalf("seed %d, %d workers: chained alerts differ (-one +workers):\n%s", seed, n, d)
			}
		}
	}
}

// TestWorkersShareTheAlertGate: the rate limits hold across workers, as
// TestRateLimits and TestGlobalRateLimit check them on one engine.
func TestWorkersShareTheAlertGate(t *testing.T) {
	set := engLoad(t, `
rules:
  - name: one
    group_by: [dst_addr]
    measures: {n: {sum: samples}}
    thresholds: {n: 1}
  - name: two
    group_by: [src_addr]
    measures: {n: {sum: samples}}
    thresholds: {n: 1}
`, Options{})
	for _, cfg := range []EngineConfig{
		{AlertsPerSecond: 10, RuleAlertsPerSecond: 1000, Workers: 2},
		{AlertsPerSecond: 1000, RuleAlertsPerSecond: 7, Workers: 3},
	} {
		rec := &engRecorder{}
		e := NewEngine(set, cfg, rec.emit)
		var evs []Event
		for i := range 200 {
			a := netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}).String()
			evs = append(evs, engSyn(engMS(0), a, a, 1))
		}
		e.Events(SourceSamples, evs)
		want := 2 * int(cfg.AlertsPerSecond)
		if cfg.RuleAlertsPerSecond < cfg.AlertsPerSecond {
			want = 2 * 2 * int(cfg.RuleAlertsPerSecond) // two rules, a burst of twice the rate each
		}
		if n := len(rec.alerts); n != want {
			t.Errorf("%+v: %d alerts, want %d", cfg, n, want)
		}
		suppressed := uint64(0)
		for _, s := range e.Stats() {
			suppressed += s.Suppressed
		}
		if suppressed != uint64(400-want) {
			t.Errorf("%+v: %d suppressed, want %d", cfg, suppressed, 400-want)
		}
		if es := e.EngineStats(); es.Workers != cfg.Workers {
			t.Errorf("%d workers, want %d", es.Workers, cfg.Workers)
		}
	}
}
