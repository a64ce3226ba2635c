package sampler

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The live clock is CLOCK_MONOTONIC plus an offset to Unix time. The
// offset follows the wall clock forward (NTP stepping a slow clock), but
// never back: a wall clock stepped back by an hour would date every new
// sample an hour before what the flow table and the detection windows
// have already seen, so that flows stop expiring and every sample is
// late for an hour. Samples, ticks and shutdown all read this clock, so
// they agree; a step back is counted (ClockStepsBack, in the metric
// vigil_clock_steps_back_total), and dates stay ahead of the wall clock
// by that step until the sensor restarts.
var (
	liveOffset     atomic.Int64
	liveBehind     atomic.Bool // the wall clock is behind liveOffset now
	clockStepsBack atomic.Uint64
)

// stepTolerance is how far back the offset may read without counting as
// a step: the two clock reads are not atomic.
const stepTolerance = int64(time.Millisecond)

// monoToUnix returns the live clock's offset: added to the kernel's
// CLOCK_MONOTONIC sample timestamps it gives Unix time. The reader reads
// it again for every batch, so a step forward of the wall clock reaches
// the samples within one batch.
func monoToUnix() int64 {
	cur := wallMinusMono()
	for {
		old := liveOffset.Load()
		if old != 0 && cur < old {
			if cur < old-stepTolerance && liveBehind.CompareAndSwap(false, true) {
				clockStepsBack.Add(1)
			}
			return old
		}
		if liveOffset.CompareAndSwap(old, cur) {
			if cur > old+stepTolerance {
				liveBehind.Store(false)
			}
			return cur
		}
	}
}

// wallMinusMono reads the wall clock's offset; a variable for tests,
// which cannot step the machine's clock.
var wallMinusMono = func() int64 {
	var mono, real unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &real)
	return real.Nano() - mono.Nano()
}

// Now is the live clock in Unix nanoseconds: the wall clock, except
// that it never runs back when the wall clock is stepped back.
func Now() int64 {
	var mono unix.Timespec
	off := monoToUnix()
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	return mono.Nano() + off
}

// ClockStepsBack is how many times the wall clock was seen stepped back
// past the live clock (which then did not follow it).
func ClockStepsBack() uint64 { return clockStepsBack.Load() }
