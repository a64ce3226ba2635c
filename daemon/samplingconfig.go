package daemon

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/vigil-sensor/vigil/sampler"
)

// Sampling modes of capture.sampling.
const (
	SamplingAdaptive = "adaptive" // the controller keeps the sample stream near a budget
	SamplingFixed    = "fixed"    // 1-in-capture.sample_rate on every interface
)

// AdaptiveConfig is the budget and the bounds of adaptive sampling.
type AdaptiveConfig struct {
	Budget     int                       `yaml:"budget"`   // samples per second, all interfaces together
	MinRate    uint32                    `yaml:"min_rate"` // smallest N
	MaxRate    uint32                    `yaml:"max_rate"` // largest N
	Interfaces map[string]AdaptiveLimits `yaml:"interfaces"`
}

// AdaptiveLimits are one interface's own budget and bounds; zero fields
// take the global ones (a zero budget: no budget of its own).
type AdaptiveLimits struct {
	Budget  int    `yaml:"budget"`
	MinRate uint32 `yaml:"min_rate"`
	MaxRate uint32 `yaml:"max_rate"`
}

func defaultAdaptive() AdaptiveConfig {
	return AdaptiveConfig{Budget: 20000, MinRate: 1, MaxRate: 1 << 20}
}

func (c *CaptureConfig) validateSampling(bad func(field, format string, args ...any)) {
	switch c.Sampling {
	case SamplingAdaptive, SamplingFixed:
	default:
		bad("capture.sampling", "%q is not adaptive or fixed", c.Sampling)
	}
	a := &c.Adaptive
	limits := func(field string, l AdaptiveLimits, global bool) {
		switch {
		case l.Budget < 0:
			bad(field+".budget", "%d is not a number of samples per second", l.Budget)
		case global && l.Budget < 1 && c.Sampling == SamplingAdaptive:
			bad(field+".budget", "must be at least 1 sample per second with adaptive sampling, got %d", l.Budget)
		}
		if global && l.MinRate == 0 {
			bad(field+".min_rate", "must be at least 1")
		}
		if l.MaxRate > sampler.MaxControllerRate {
			bad(field+".max_rate", "%d is above the largest rate %d", l.MaxRate, sampler.MaxControllerRate)
		}
		lo, hi := cmp.Or(l.MinRate, a.MinRate), cmp.Or(l.MaxRate, a.MaxRate)
		if hi != 0 && lo > hi {
			bad(field+".min_rate", "%d is above max_rate %d", lo, hi)
		}
	}
	limits("capture.adaptive", AdaptiveLimits{Budget: a.Budget, MinRate: a.MinRate, MaxRate: a.MaxRate}, true)
	for _, name := range slices.Sorted(maps.Keys(a.Interfaces)) {
		field := fmt.Sprintf("capture.adaptive.interfaces.%s", name)
		if !validIfName(name) {
			bad(field, "%q is not an interface name", name)
			continue
		}
		limits(field, a.Interfaces[name], false)
	}
}

// controllerConfig is the controller's view of the configuration, with
// interface names resolved to the ifindexes attached now.
func (c *CaptureConfig) controllerConfig(ifindex map[string]int) sampler.ControllerConfig {
	a := &c.Adaptive
	cc := sampler.ControllerConfig{
		Limits:     sampler.Limits{Budget: float64(a.Budget), MinRate: a.MinRate, MaxRate: a.MaxRate},
		Interfaces: map[uint32]sampler.Limits{},
	}
	for name, l := range a.Interfaces {
		if i, ok := ifindex[name]; ok {
			cc.Interfaces[uint32(i)] = sampler.Limits{Budget: float64(l.Budget), MinRate: l.MinRate, MaxRate: l.MaxRate}
		}
	}
	return cc
}
