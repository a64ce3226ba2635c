package detect

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
)

// TestWheelMatchesFullSweep: sweeping threshold rules by their wheels
// drops exactly the keys a scan of every key drops: the same alerts and
// counters (keys held included) over random rule sets, with late flow
// records, out-of-order samples and clock jumps of up to a minute.
func TestWheelMatchesFullSweep(t *testing.T) {
	for seed := range uint64(8) {
		r := rand.New(rand.NewPCG(seed, 55))
		set := engLoad(t, dispRules(t, r, 50), Options{})
		batches, sources := dispBatches(r, dispTraffic{batches: 120, step: 300_000, lateOdds: 10, lateN: 20, lateUnit: int64(time.Second), jumpEvery: 17})
		dispFullSweep = true
		wantA, wantS := dispRun(t, set, false, batches, sources)
		dispFullSweep = false
		gotA, gotS := dispRun(t, set, false, batches, sources)
		if d := gocmp.Diff(wantS, gotS); d != "" {
			t.Fatalf("seed %d: rule counters differ (-scan +wheel):\n%s", seed, d)
		}
		if !reflect.DeepEqual(wantA, gotA) {
			t.Fatalf("seed %d: alerts differ (-scan +wheel):\n%s", seed, gocmp.Diff(wantA, gotA))
		}
	}
}
