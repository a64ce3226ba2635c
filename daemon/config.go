// Package daemon wires Vigil's stages together and runs them as a
// service: capture, (later) flows, detection and export, with metrics,
// health and signals.
package daemon

import (
	"fmt"
	"time"

	"github.com/vigil-sensor/vigil/sampler"
)

// DefaultMetricsAddr is where metrics and health are served by default:
// localhost only. The Prometheus exporter range 9100-9999 is fully
// allocated, so Vigil takes a port above it.
const DefaultMetricsAddr = "127.0.0.1:10099"

// Config is the daemon's configuration.
type Config struct {
	Interfaces    []string      // empty: the interfaces carrying default routes
	AttachMode    sampler.Mode  // auto, xdp-native, xdp-generic or tcx
	Egress        bool          // also capture egress with tcx
	SampleRate    uint32        // 1-in-N
	DecapVXLAN    bool          // look into VXLAN (UDP 4789)
	DecapGENEVE   bool          // look into GENEVE (UDP 6081)
	HeadBytes     int           // bytes of each sampled frame to keep, 0..128
	RingBufferMiB int           // ring buffer size
	MetricsAddr   string        // HTTP listen address for /metrics, /healthz, /readyz
	SamplesOut    string        // write samples as JSON lines here ("-": stdout); empty: off
	StatsEvery    time.Duration // log a counter summary this often; 0: off
}

// DefaultConfig is what `vigil run` does with no arguments.
func DefaultConfig() Config {
	return Config{
		AttachMode:    sampler.ModeAuto,
		SampleRate:    100,
		DecapVXLAN:    true,
		DecapGENEVE:   true,
		RingBufferMiB: 8,
		MetricsAddr:   DefaultMetricsAddr,
		StatsEvery:    10 * time.Second,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.SampleRate == 0 {
		return fmt.Errorf("sample_rate: must be at least 1")
	}
	if c.HeadBytes < 0 || c.HeadBytes > sampler.MaxHeadBytes {
		return fmt.Errorf("head_bytes: %d out of range 0..%d", c.HeadBytes, sampler.MaxHeadBytes)
	}
	if mib := c.RingBufferMiB; mib <= 0 || mib&(mib-1) != 0 {
		return fmt.Errorf("ring_buffer_mib: %d is not a power of two", mib)
	}
	if _, err := sampler.ParseMode(string(c.AttachMode)); err != nil {
		return fmt.Errorf("attach_mode: %w", err)
	}
	return nil
}

func (c Config) decap() sampler.Decap {
	var d sampler.Decap
	if c.DecapVXLAN {
		d |= sampler.DecapVXLAN
	}
	if c.DecapGENEVE {
		d |= sampler.DecapGENEVE
	}
	return d
}
