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
//   - a jump of more than MaxStep either way is suspect: the packet gets
//     the clock's time (Clamped) until Confirm packets in a row make the
//     same jump, and then the clock follows it (Jumps). A jump forward
//     is a quiet stretch of the capture, and its time is kept; a jump
//     back is a capture that stepped its clock back, or files given out
//     of order, and the guard adds what it takes to carry on from the
//     clock, so that time still never runs backwards;
//   - a timestamp past Latest (the wall clock and a margin, in a replay)
//     cannot be true and is never followed. Before the clock has a
//     time, such a packet has none to take: it is counted (Untimed) and
//     its caller does not sample it.
//
// Until Confirm packets have been timed the clock follows a jump
// forward at once, so a bad first packet dated in the past does not pin
// the clock there. The zero value is not ready: use NewTimeGuard.
type TimeGuard struct {
	MaxStep int64        // the largest jump (ns) believed without confirmation
	Confirm int          // packets in a row that make a suspect jump true
	Latest  func() int64 // no timestamp past this is true; nil: no bound

	clock  int64 // the latest time given out
	offset int64 // added to every timestamp since the capture stepped back
	timed  int   // packets timed since the start, up to Confirm
	run    int   // suspect packets in a row
	runDir int   // +1: the run jumps forward, -1: back
	stats  TimeStats
}

// TimeStats counts what the guard changed.
type TimeStats struct {
	Reordered uint64 // packets dated before the clock: given its time
	Clamped   uint64 // packets in a suspect jump: given the clock's time
	Untimed   uint64 // impossible timestamps before the clock had a time: not sampled
	Jumps     uint64 // jumps the capture confirmed and the clock followed
}

// Total is every packet whose timestamp the guard did not keep.
func (s TimeStats) Total() uint64 { return s.Reordered + s.Clamped + s.Untimed }

// DefaultMaxStep is a minute: a wider gap in a capture costs the two
// packets that confirm it their time (they get the time before the gap,
// and are counted); a bad timestamp less than a minute ahead cannot make
// more than a minute of packets late.
const DefaultMaxStep = int64(time.Minute)

// DefaultConfirm is three packets: a bad timestamp is rarely repeated on
// two packets in a row, and a real jump costs two packets their time.
const DefaultConfirm = 3

// futureMargin is how far past the wall clock a replayed timestamp may
// be: a capture taken on a machine whose clock ran fast, in another
// time zone by mistake, or whose file was written ahead of this one.
const futureMargin = 30 * 24 * time.Hour

// WallBound is the Latest of a replay: the wall clock plus 30 days.
func WallBound() int64 { return time.Now().Add(futureMargin).UnixNano() }

// NewTimeGuard returns a guard with the defaults and latest as its bound.
func NewTimeGuard(latest func() int64) *TimeGuard {
	return &TimeGuard{MaxStep: DefaultMaxStep, Confirm: DefaultConfirm, Latest: latest}
}

// Time returns the time to give a packet stamped ts, and false for an
// impossible timestamp that has no time to take.
func (g *TimeGuard) Time(ts int64) (int64, bool) {
	t := ts + g.offset
	if t < ts || (g.Latest != nil && t > g.Latest()) { // t < ts: past the end of int64
		g.run = 0
		if g.timed == 0 {
			g.stats.Untimed++
			return 0, false
		}
		g.stats.Clamped++
		return g.clock, true
	}
	if g.timed == 0 {
		g.timed = 1
		g.clock = t
		return t, true
	}
	switch {
	case t > g.clock+g.MaxStep:
		if g.timed < g.Confirm {
			return g.accept(t), true
		}
		if g.suspect(+1) {
			g.stats.Jumps++
			return g.accept(t), true
		}
	case t < g.clock-g.MaxStep:
		if g.suspect(-1) {
			g.stats.Jumps++
			g.offset += g.clock - t
			return g.accept(g.clock), true
		}
	case t < g.clock:
		g.run = 0
		g.stats.Reordered++
		g.timed = min(g.timed+1, g.Confirm)
		return g.clock, true
	default:
		return g.accept(t), true
	}
	g.stats.Clamped++
	return g.clock, true
}

// suspect counts a packet that jumps in direction dir and reports
// whether it is the one that confirms the jump.
func (g *TimeGuard) suspect(dir int) bool {
	if g.runDir != dir {
		g.run, g.runDir = 0, dir
	}
	g.run++
	if g.run < g.Confirm {
		return false
	}
	g.run = 0
	return true
}

func (g *TimeGuard) accept(t int64) int64 {
	g.run = 0
	g.clock = t
	g.timed = min(g.timed+1, g.Confirm)
	return t
}

// Stats returns what the guard changed so far.
func (g *TimeGuard) Stats() TimeStats { return g.stats }
