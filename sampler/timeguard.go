package sampler

import "time"

// TimeGuard keeps a capture's bad timestamps from moving its clock. The
// clock of a replay is the capture's own time, and everything after it
// trusts that clock: flows expire by it, and detection drops what is
// older than its windows. One packet dated 2100 would end every flow
// and make every later packet late; one dated a day back would stretch
// its flow over that day. The guard gives every packet a time that
// never runs backwards and moves only as far as the capture agrees:
//
//   - a timestamp before the clock (packets merged out of order) gets
//     the clock's time (Reordered);
//   - a jump of more than MaxStep either way is suspect: the packet is
//     held (TimeHold) until Confirm packets in a row make the same jump,
//     and then the clock follows it (Jumps) and the held packets keep
//     their times; a packet back near the clock first refutes it, and
//     the held packets get the clock's time (Clamped). A jump forward is
//     a quiet stretch of the capture; a jump back is a capture that
//     stepped its clock back, or files given out of order, and the guard
//     adds what it takes to carry on from the clock, so that time still
//     never runs backwards;
//   - a timestamp past Latest (the wall clock and a margin, in a replay)
//     cannot be true and is never followed: it gets the clock's time
//     (Clamped); before the clock has a time there is none to take, and
//     the packet is counted (Untimed) and not sampled (TimeDrop).
//
// Until Confirm packets have been timed the clock follows a jump
// forward at once, so a bad first packet dated in the past does not pin
// the clock there. What is held at the end of the input is taken as a
// real jump (End). The zero value is not ready: use NewTimeGuard.
type TimeGuard struct {
	MaxStep int64 // the largest jump (ns) believed without confirmation
	Confirm int   // packets in a row that make a suspect jump true
	Latest  int64 // no timestamp past this (ns since the epoch) is true; math.MaxInt64: no bound

	clock   int64   // the latest time given out
	offset  int64   // added to every timestamp since the capture stepped back
	timed   int     // packets timed since the start, up to Confirm
	runDir  int     // +1: the held packets jump forward, -1: back
	held    []int64 // times (offset added) of the packets held, in order
	release []int64 // times of the held packets the last call resolved
	stats   TimeStats
}

// TimeAction is what to do with a packet.
type TimeAction int

// What Time says to do with a packet.
const (
	TimeKeep TimeAction = iota // use the time returned, now
	TimeHold                   // hold the packet: Released gives its time later
	TimeDrop                   // no time to give: count the packet, do not sample it
)

// TimeStats counts what the guard changed.
type TimeStats struct {
	Reordered uint64 // packets dated before the clock: given its time
	Clamped   uint64 // packets in a jump the capture did not confirm, or impossible: given the clock's time
	Untimed   uint64 // impossible timestamps before the clock had a time: not sampled
	Jumps     uint64 // jumps the capture confirmed and the clock followed
}

// Total is every packet whose timestamp the guard did not keep.
func (s TimeStats) Total() uint64 { return s.Reordered + s.Clamped + s.Untimed }

// DefaultMaxStep is a minute: a wider gap in a capture holds the two
// packets after it until a third confirms it; a bad timestamp less than
// a minute ahead cannot make more than a minute of packets late.
const DefaultMaxStep = int64(time.Minute)

// DefaultConfirm is three packets: a bad timestamp is rarely repeated on
// three packets in a row.
const DefaultConfirm = 3

// futureMargin is how far past the wall clock a replayed timestamp may
// be: a capture taken on a machine whose clock ran fast, in another
// time zone by mistake, or whose file was written ahead of this one.
const futureMargin = 30 * 24 * time.Hour

// WallBound is the Latest of a replay: the wall clock plus 30 days, read
// once (a replay lasts minutes, and the clock costs a packet's worth).
func WallBound() int64 { return time.Now().Add(futureMargin).UnixNano() }

// NewTimeGuard returns a guard with the defaults and latest as its bound.
func NewTimeGuard(latest int64) *TimeGuard {
	return &TimeGuard{MaxStep: DefaultMaxStep, Confirm: DefaultConfirm, Latest: latest}
}

// Time says what to do with a packet stamped ts and, for TimeKeep, the
// time to give it. Before using it, the caller gives the packets it
// holds the times Released returns, in order: they come before this one.
func (g *TimeGuard) Time(ts int64) (int64, TimeAction) {
	g.release = g.release[:0]
	t := ts + g.offset
	if t < ts || t > g.Latest { // t < ts: past the end of int64
		if g.timed == 0 {
			g.stats.Untimed++
			return 0, TimeDrop
		}
		g.refute()
		g.stats.Clamped++
		return g.clock, TimeKeep
	}
	if g.timed == 0 {
		return g.accept(t), TimeKeep
	}
	switch {
	case t > g.clock+g.MaxStep && g.timed < g.Confirm:
		return g.accept(t), TimeKeep
	case t > g.clock+g.MaxStep:
		return g.suspect(+1, t)
	case t < g.clock-g.MaxStep:
		return g.suspect(-1, t)
	case t < g.clock:
		g.refute()
		g.stats.Reordered++
		g.timed = min(g.timed+1, g.Confirm)
		return g.clock, TimeKeep
	}
	g.refute()
	return g.accept(t), TimeKeep
}

// Released returns the times of the held packets the last call of Time
// or End resolved, in the order they were held; valid until the next
// call.
func (g *TimeGuard) Released() []int64 { return g.release }

// End resolves what is held at the end of the input: the capture ends
// after the jump, which is taken as real. It returns Released.
func (g *TimeGuard) End() []int64 {
	g.release = g.release[:0]
	if len(g.held) > 0 {
		g.confirm()
	}
	return g.release
}

// suspect holds a packet that jumps in direction dir, or confirms the
// jump with it.
func (g *TimeGuard) suspect(dir int, t int64) (int64, TimeAction) {
	if g.runDir != dir {
		g.refute()
		g.runDir = dir
	}
	if len(g.held)+1 < g.Confirm {
		g.held = append(g.held, t)
		return 0, TimeHold
	}
	g.held = append(g.held, t)
	g.confirm()
	last := g.release[len(g.release)-1]
	g.release = g.release[:len(g.release)-1] // the last is this packet's
	return last, TimeKeep
}

// confirm follows the jump the held packets make: forward as they are,
// back by carrying on from the clock.
func (g *TimeGuard) confirm() {
	delta := int64(0)
	if g.runDir < 0 {
		delta = g.clock - g.held[0]
		if delta < 0 || g.offset+delta < g.offset { // past the end of int64: no time to follow
			g.refute()
			return
		}
		g.offset += delta
	}
	g.stats.Jumps++
	for _, t := range g.held {
		t = max(t+delta, g.clock)
		if t > g.Latest {
			t = g.clock // carried past the bound by the step back
		}
		g.release = append(g.release, g.accept(t))
	}
	g.held = g.held[:0]
}

// refute gives the held packets the clock's time: the capture came back
// to it, so the jump was not true.
func (g *TimeGuard) refute() {
	for range g.held {
		g.release = append(g.release, g.clock)
		g.stats.Clamped++
	}
	g.held = g.held[:0]
}

func (g *TimeGuard) accept(t int64) int64 {
	g.clock = t
	g.timed = min(g.timed+1, g.Confirm)
	return t
}

// Stats returns what the guard changed so far.
func (g *TimeGuard) Stats() TimeStats { return g.stats }
