package flow

import (
	"fmt"
	"time"
)

// Config is the flow table's expiry policy and size.
type Config struct {
	// IdleTimeout ends a flow that has seen no sample for this long.
	IdleTimeout time.Duration
	// ActiveTimeout ends a flow this long after its first sample; the next
	// sample starts a new record (long flows are reported in slices).
	ActiveTimeout time.Duration
	// MaxFlows bounds the number of active flows. Past it, the least
	// recently seen flows are written early with EndEvicted.
	MaxFlows int
	// Shards splits the table so that several goroutines can feed it.
	// Rounded up to a power of two.
	Shards int
}

// DefaultConfig is the expiry policy of common NetFlow/IPFIX meters.
func DefaultConfig() Config {
	return Config{
		IdleTimeout:   15 * time.Second,
		ActiveTimeout: 60 * time.Second,
		MaxFlows:      1 << 20,
		Shards:        16,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.IdleTimeout <= 0 {
		return fmt.Errorf("idle_timeout: must be positive, got %s", c.IdleTimeout)
	}
	if c.ActiveTimeout <= 0 {
		return fmt.Errorf("active_timeout: must be positive, got %s", c.ActiveTimeout)
	}
	if c.MaxFlows < 1 {
		return fmt.Errorf("max_flows: must be at least 1, got %d", c.MaxFlows)
	}
	if c.Shards < 1 || c.Shards > 1024 {
		return fmt.Errorf("shards: %d out of range 1..1024", c.Shards)
	}
	return nil
}
