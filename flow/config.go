package flow

import (
	"time"

	"github.com/vigil-sensor/vigil/internal/config"
)

// Config is the flow table's expiry policy and size: the flows section
// of the configuration (docs/CONFIG.md), less where records go.
type Config struct {
	// IdleTimeout ends a flow that has seen no sample for this long.
	IdleTimeout config.Duration `yaml:"idle_timeout"`
	// ActiveTimeout ends a flow this long after its first sample; the next
	// sample starts a new record (long flows are reported in slices).
	ActiveTimeout config.Duration `yaml:"active_timeout"`
	// MaxFlows bounds the number of active flows. Past it, the least
	// recently seen flows are written early with EndEvicted.
	MaxFlows int `yaml:"max_flows"`
	// Workers is how many goroutines feed the table, each its part of
	// the shards: 1, 2, 4, 8 or 16.
	Workers int `yaml:"workers"`
	// Shards splits the table so that several goroutines can feed it.
	// Rounded up to a power of two.
	Shards int `yaml:"-"`
}

// DefaultConfig is the expiry policy of common NetFlow/IPFIX meters.
func DefaultConfig() Config {
	return Config{
		IdleTimeout:   config.Duration{D: 15 * time.Second},
		ActiveTimeout: config.Duration{D: 60 * time.Second},
		MaxFlows:      1 << 20,
		Workers:       1,
		Shards:        16,
	}
}

// Validate reports every problem, at paths relative to the section.
func (c *Config) Validate() config.Problems {
	var ps config.Problems
	ps.Duration("idle_timeout", c.IdleTimeout, false)
	ps.Duration("active_timeout", c.ActiveTimeout, false)
	if c.MaxFlows < 1 {
		ps.Add("max_flows", "must be at least 1, got %d", c.MaxFlows)
	}
	if w := c.Workers; w < 1 || w > 16 || w&(w-1) != 0 {
		ps.Add("workers", "%d is not 1, 2, 4, 8 or 16", w)
	}
	if c.Shards < 1 || c.Shards > 1024 {
		ps.Add("shards", "%d out of range 1..1024", c.Shards)
	}
	return ps
}
