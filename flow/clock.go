package flow

import (
	"sync/atomic"
	"time"
)

// Clock tells the table what time it is when it expires flows.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock, for live capture.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// ManualClock is a clock that moves only when told to: tests use it to
// expire flows without sleeping, and replay sets it to capture time.
// It is safe for concurrent use.
type ManualClock struct{ ns atomic.Int64 }

// NewManualClock returns a clock stopped at t.
func NewManualClock(t time.Time) *ManualClock {
	c := &ManualClock{}
	c.Set(t)
	return c
}

// Now returns the clock's time.
func (c *ManualClock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Set moves the clock to t.
func (c *ManualClock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// SetNano moves the clock to ns nanoseconds since the Unix epoch, if
// that is later than its time: capture time never runs backwards.
func (c *ManualClock) SetNano(ns int64) {
	for {
		cur := c.ns.Load()
		if ns <= cur || c.ns.CompareAndSwap(cur, ns) {
			return
		}
	}
}

// Advance moves the clock forward by d.
func (c *ManualClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
