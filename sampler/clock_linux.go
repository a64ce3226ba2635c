package sampler

import "golang.org/x/sys/unix"

// monoToUnix returns realtime - monotonic in nanoseconds: added to the
// kernel's CLOCK_MONOTONIC sample timestamps it gives Unix time. The
// reader reads it again for every batch, so a step of the wall clock
// (NTP) reaches the samples within one batch.
func monoToUnix() int64 {
	var mono, real unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &real)
	return real.Nano() - mono.Nano()
}
