package sampler

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/vigil-sensor/vigil/internal/config"
)

// Sampling modes of capture.sampling.
const (
	SamplingAdaptive = "adaptive" // the controller keeps the sample stream near a budget
	SamplingFixed    = "fixed"    // 1-in-sample_rate on every interface
)

// Config is the capture section: what the capture path attaches to and
// how it samples. docs/CONFIG.md documents every key.
type Config struct {
	Interfaces    []string       `yaml:"interfaces"`  // empty: the interfaces carrying default routes
	AttachMode    string         `yaml:"attach_mode"` // auto, xdp-native, xdp-generic or tcx
	Egress        bool           `yaml:"egress"`      // also capture egress with tcx
	Sampling      string         `yaml:"sampling"`    // adaptive or fixed
	SampleRate    uint32         `yaml:"sample_rate"` // 1-in-N when fixed; where adaptive starts
	Adaptive      AdaptiveConfig `yaml:"adaptive"`
	DecapVXLAN    bool           `yaml:"decap_vxlan"`     // look into VXLAN (UDP 4789)
	DecapGENEVE   bool           `yaml:"decap_geneve"`    // look into GENEVE (UDP 6081)
	HeadBytes     int            `yaml:"head_bytes"`      // bytes of each sampled frame to keep, 0..MaxHeadBytes
	RingBufferMiB int            `yaml:"ring_buffer_mib"` // ring buffer size, a power of two
	SamplesOut    string         `yaml:"samples_out"`     // debugging: every sample as JSON lines ("-": stdout)
}

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

// DefaultConfig is adaptive sampling at 20,000 samples per second from
// 1 in 100, with VXLAN and GENEVE decapsulated.
func DefaultConfig() Config {
	return Config{
		AttachMode:    string(ModeAuto),
		Sampling:      SamplingAdaptive,
		SampleRate:    100,
		Adaptive:      AdaptiveConfig{Budget: 20000, MinRate: 1, MaxRate: 1 << 20},
		DecapVXLAN:    true,
		DecapGENEVE:   true,
		RingBufferMiB: 8,
	}
}

// Validate reports every problem, at paths relative to the section.
func (c *Config) Validate() config.Problems {
	var ps config.Problems
	for i, name := range c.Interfaces {
		if !ValidIfName(name) {
			ps.Add(fmt.Sprintf("interfaces[%d]", i), "%q is not an interface name", name)
		}
	}
	if _, err := ParseMode(c.AttachMode); err != nil {
		ps.Add("attach_mode", "%v", err)
	}
	if c.SampleRate == 0 {
		ps.Add("sample_rate", "must be at least 1")
	}
	c.validateSampling(&ps)
	if h := c.HeadBytes; h < 0 || h > MaxHeadBytes {
		ps.Add("head_bytes", "%d out of range 0..%d", h, MaxHeadBytes)
	}
	if mib := c.RingBufferMiB; mib <= 0 || mib > 1024 || mib&(mib-1) != 0 {
		ps.Add("ring_buffer_mib", "%d is not a power of two between 1 and 1024", mib)
	}
	return ps
}

func (c *Config) validateSampling(ps *config.Problems) {
	switch c.Sampling {
	case SamplingAdaptive, SamplingFixed:
	default:
		ps.Add("sampling", "%q is not adaptive or fixed", c.Sampling)
	}
	a := &c.Adaptive
	limits := func(field string, l AdaptiveLimits, global bool) {
		switch {
		case l.Budget < 0:
			ps.Add(field+".budget", "%d is not a number of samples per second", l.Budget)
		case global && l.Budget < 1 && c.Sampling == SamplingAdaptive:
			ps.Add(field+".budget", "must be at least 1 sample per second with adaptive sampling, got %d", l.Budget)
		}
		if global && l.MinRate == 0 {
			ps.Add(field+".min_rate", "must be at least 1")
		}
		if l.MaxRate > MaxControllerRate {
			ps.Add(field+".max_rate", "%d is above the largest rate %d", l.MaxRate, MaxControllerRate)
		}
		lo, hi := cmp.Or(l.MinRate, a.MinRate), cmp.Or(l.MaxRate, a.MaxRate)
		if hi != 0 && lo > hi {
			ps.Add(field+".min_rate", "%d is above max_rate %d", lo, hi)
		}
	}
	limits("adaptive", AdaptiveLimits{Budget: a.Budget, MinRate: a.MinRate, MaxRate: a.MaxRate}, true)
	for _, name := range slices.Sorted(maps.Keys(a.Interfaces)) {
		field := "adaptive.interfaces." + name
		if !ValidIfName(name) {
			ps.Add(field, "%q is not an interface name", name)
			continue
		}
		limits(field, a.Interfaces[name], false)
	}
}

// ValidIfName reports whether name can be a Linux interface name.
func ValidIfName(name string) bool {
	return name != "" && len(name) <= 15 && !strings.ContainsAny(name, "/ \t")
}

// Decap is the encapsulations the parser looks into.
func (c *Config) Decap() Decap {
	var d Decap
	if c.DecapVXLAN {
		d |= DecapVXLAN
	}
	if c.DecapGENEVE {
		d |= DecapGENEVE
	}
	return d
}

// ControllerConfig is the controller's view of the configuration, with
// interface names resolved to the ifindexes attached now.
func (c *Config) ControllerConfig(ifindex map[string]int) ControllerConfig {
	a := &c.Adaptive
	cc := ControllerConfig{
		Limits:     Limits{Budget: float64(a.Budget), MinRate: a.MinRate, MaxRate: a.MaxRate},
		Interfaces: map[uint32]Limits{},
	}
	for name, l := range a.Interfaces {
		if i, ok := ifindex[name]; ok {
			cc.Interfaces[uint32(i)] = Limits{Budget: float64(l.Budget), MinRate: l.MinRate, MaxRate: l.MaxRate}
		}
	}
	return cc
}
