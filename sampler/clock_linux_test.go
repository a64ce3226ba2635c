package sampler

import (
	"testing"
	"time"
)

// TestLiveClockDoesNotFollowAStepBack steps the wall clock as the live
// clock sees it (the machine's own clock is not touched): forward is
// followed, back is not, and each step back is counted once.
func TestLiveClockDoesNotFollowAStepBack(t *testing.T) {
	orig := wallMinusMono
	t.Cleanup(func() { wallMinusMono = orig; liveOffset.Store(0); liveBehind.Store(false) })
	base := orig()
	wall := base
	wallMinusMono = func() int64 { return wall }
	liveOffset.Store(0)
	steps := ClockStepsBack()

	if got := monoToUnix(); got != base {
		t.Fatalf("offset %d, want the wall clock's %d", got, base)
	}
	wall = base + int64(time.Hour) // NTP steps a slow clock forward
	if got := monoToUnix(); got != wall {
		t.Fatalf("a step forward: offset %d, want %d", got, wall)
	}
	ahead := wall
	wall = base // and back again
	for range 3 {
		if got := monoToUnix(); got != ahead {
			t.Fatalf("a step back: offset %d, want it kept at %d", got, ahead)
		}
	}
	if n := ClockStepsBack() - steps; n != 1 {
		t.Fatalf("%d steps back counted, want 1", n)
	}
	before := Now()
	wall = base - int64(time.Hour) // a second step back
	if now := Now(); now < before {
		t.Fatalf("Now ran back from %d to %d", before, now)
	}
	wall = ahead + int64(time.Minute) // the wall clock passes the live clock again
	if got := monoToUnix(); got != wall {
		t.Fatalf("offset %d, want %d once the wall clock is ahead", got, wall)
	}
	wall = ahead
	monoToUnix()
	if n := ClockStepsBack() - steps; n != 2 {
		t.Fatalf("%d steps back counted, want 2", n)
	}
}
