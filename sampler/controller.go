package sampler

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// Limits are a sample budget and bounds on the rate N.
type Limits struct {
	Budget  float64 // samples per second; 0: none of its own
	MinRate uint32  // smallest N; 0: 1
	MaxRate uint32  // largest N; 0: MaxControllerRate
}

// MaxControllerRate is the largest N the controller sets unless told.
const MaxControllerRate = 1 << 24

// ControllerConfig is what the rate controller aims for.
type ControllerConfig struct {
	Limits                       // the global budget (required) and default bounds
	Interfaces map[uint32]Limits // by ifindex: an interface's own budget and bounds
}

// Validate reports the first problem of the configuration.
func (c *ControllerConfig) Validate() error {
	check := func(what string, l Limits, needBudget bool) error {
		switch {
		case l.Budget < 0 || math.IsNaN(l.Budget) || math.IsInf(l.Budget, 0):
			return fmt.Errorf("%s: budget %v is not a number of samples per second", what, l.Budget)
		case needBudget && l.Budget == 0:
			return fmt.Errorf("%s: budget must be positive", what)
		case l.MaxRate != 0 && l.MinRate > l.MaxRate:
			return fmt.Errorf("%s: min rate %d above max rate %d", what, l.MinRate, l.MaxRate)
		}
		return nil
	}
	if err := check("global", c.Limits, true); err != nil {
		return err
	}
	for ifindex, l := range c.Interfaces {
		if err := check(fmt.Sprintf("ifindex %d", ifindex), l, false); err != nil {
			return err
		}
	}
	return nil
}

// Counters are what the controller observes: cumulative counters, read
// from the capture path at Time.
type Counters struct {
	Time       time.Time
	Interfaces []InterfaceFrames
	Drops      uint64 // samples lost so far: ring buffer full, channel full
}

// InterfaceFrames is the number of frames the programs ran on for one
// interface so far, both directions: each frame is one sampling draw.
type InterfaceFrames struct {
	Ifindex uint32
	Frames  uint64
}

// RateChange is a new rate for an interface.
type RateChange struct {
	Ifindex  uint32
	From, To uint32
}

// Controller tuning. A rise in traffic is followed at once, within one
// step; a fall only once it has lasted holdDown, and by at most
// maxStepDown per step, so a lull in bursty traffic does not flood the
// daemon on the next burst. Rates within deadBand of their target stay.
const (
	holdDown    = 200 * time.Millisecond
	maxStepDown = 3.0 // per 100 ms
	deadBand    = 0.10
	// On drops the budget is halved, down to minBackoff of itself, and
	// grows back by backoffGrowth per second while there are none.
	minBackoff    = 1.0 / 64
	backoffGrowth = 1.25
)

// Controller keeps the sample stream near a budget by choosing N per
// interface. It is fed the exact frame counters (Step); from the frame
// rate of each interface it computes the rates that spend the budget:
// one rate for all interfaces, raised on an interface whose own budget
// would be exceeded, found so that the sum of samples per second equals
// the global budget. Sampling every interface at the same rate, where
// budgets allow, keeps the estimates of totals across interfaces the
// most precise.
//
// It holds no clock and no BPF state: the caller reads counters, steps
// it and applies the changes, so it can be tested against a simulated
// source. It is not safe for concurrent use.
type Controller struct {
	cfg     ControllerConfig
	start   uint32 // the rate of an interface not yet seen
	ifs     map[uint32]*ifControl
	last    Counters
	started bool
	stats   ControllerStats
}

type ifControl struct {
	rate    uint32
	frames  uint64
	seen    bool
	history []ratePoint // recent frame rates, for holdDown
}

type ratePoint struct {
	at  time.Time
	pps float64
}

// ControllerStats are the controller's counters.
type ControllerStats struct {
	Up, Down uint64  // rate changes, by direction
	Backoffs uint64  // steps that found new drops and cut the budget
	Backoff  float64 // the fraction of the budget in force
}

// NewController returns a controller starting every interface at start.
func NewController(cfg ControllerConfig, start uint32) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Controller{cfg: cfg, start: max(start, 1), ifs: make(map[uint32]*ifControl)}
	c.stats.Backoff = 1
	return c, nil
}

// SetConfig changes the budgets and bounds; the next Step applies them.
func (c *Controller) SetConfig(cfg ControllerConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	c.cfg = cfg
	return nil
}

// Rate returns the rate the controller set for an interface, or the
// start rate for one it has not seen.
func (c *Controller) Rate(ifindex uint32) uint32 {
	if ic, ok := c.ifs[ifindex]; ok {
		return ic.rate
	}
	return c.start
}

// Stats returns the controller's counters.
func (c *Controller) Stats() ControllerStats { return c.stats }

func (c *Controller) limits(ifindex uint32) (budget, lo, hi float64) {
	l, own := c.cfg.Interfaces[ifindex]
	if !own {
		l = Limits{MinRate: c.cfg.MinRate, MaxRate: c.cfg.MaxRate}
	}
	lo = float64(max(cmp.Or(l.MinRate, c.cfg.MinRate), 1))
	hi = float64(cmp.Or(l.MaxRate, c.cfg.MaxRate, MaxControllerRate))
	return l.Budget, lo, max(hi, lo)
}

// Step observes the counters and returns the rate changes to apply. The
// first step only takes the counters in.
func (c *Controller) Step(now Counters) []RateChange {
	dt := now.Time.Sub(c.last.Time).Seconds()
	if c.started && dt <= 0 {
		return nil
	}
	first := !c.started
	c.started = true
	drops := now.Drops - c.last.Drops
	if first || now.Drops < c.last.Drops {
		drops = 0
	}
	c.last = Counters{Time: now.Time, Drops: now.Drops}

	// Back off when samples were lost; grow back slowly otherwise.
	if drops > 0 {
		c.stats.Backoff = max(c.stats.Backoff/2, minBackoff)
		c.stats.Backoffs++
	} else if !first {
		c.stats.Backoff = min(1, c.stats.Backoff*math.Pow(backoffGrowth, dt))
	}

	// Each interface's frame rate: the latest for a rise, the highest of
	// the last holdDown for a fall.
	type want struct {
		ic      *ifControl
		ifindex uint32
		pps     float64 // the rate to plan for
		budget  float64
		lo, hi  float64
	}
	wants := make([]want, 0, len(now.Interfaces))
	for _, f := range now.Interfaces {
		ic, ok := c.ifs[f.Ifindex]
		if !ok {
			ic = &ifControl{rate: c.start}
			c.ifs[f.Ifindex] = ic
		}
		if !ic.seen || f.Frames < ic.frames || first {
			ic.seen, ic.frames = true, f.Frames
			continue
		}
		pps := float64(f.Frames-ic.frames) / dt
		ic.frames = f.Frames
		ic.history = append(ic.history, ratePoint{now.Time, pps})
		cut := 0
		for cut < len(ic.history) && now.Time.Sub(ic.history[cut].at) > holdDown {
			cut++
		}
		ic.history = ic.history[cut:]
		// Plan for the highest rate of the last holdDown.
		plan := pps
		for _, p := range ic.history {
			plan = max(plan, p.pps)
		}
		budget, lo, hi := c.limits(f.Ifindex)
		wants = append(wants, want{ic: ic, ifindex: f.Ifindex, pps: plan, budget: budget * c.stats.Backoff, lo: lo, hi: hi})
	}
	if len(wants) == 0 {
		return nil
	}

	// The rate for interface i at common rate g: g, raised to spend no
	// more than its own budget, within its bounds.
	at := func(w *want, g float64) float64 {
		n := g
		if w.budget > 0 {
			n = max(n, w.pps/w.budget)
		}
		return min(max(n, w.lo), w.hi)
	}
	spend := func(g float64) float64 {
		var s float64
		for i := range wants {
			s += wants[i].pps / at(&wants[i], g)
		}
		return s
	}
	// Find g with spend(g) = budget by bisection on log g: spend falls
	// as g rises.
	budget := c.cfg.Budget * c.stats.Backoff
	g := 1.0
	if spend(g) > budget {
		lo, hi := 0.0, math.Log(MaxControllerRate)
		for range 50 {
			mid := (lo + hi) / 2
			if spend(math.Exp(mid)) > budget {
				lo = mid
			} else {
				hi = mid
			}
		}
		g = math.Exp(hi)
	}

	var changes []RateChange
	for i := range wants {
		w := &wants[i]
		target := at(w, g)
		cur := float64(w.ic.rate)
		next := cur
		switch {
		case target > cur*(1+deadBand):
			next = math.Round(target)
		case target < cur/(1+deadBand):
			next = max(math.Round(target), math.Ceil(cur/math.Pow(maxStepDown, dt/0.1)))
		}
		next = min(max(next, w.lo), w.hi)
		if uint32(next) == w.ic.rate {
			continue
		}
		ch := RateChange{Ifindex: w.ifindex, From: w.ic.rate, To: uint32(next)}
		if ch.To > ch.From {
			c.stats.Up++
		} else {
			c.stats.Down++
		}
		w.ic.rate = ch.To
		changes = append(changes, ch)
	}
	slices.SortFunc(changes, func(a, b RateChange) int { return int(a.Ifindex) - int(b.Ifindex) })
	return changes
}

// Forget drops an interface that went away.
func (c *Controller) Forget(ifindex uint32) { delete(c.ifs, ifindex) }
