// Package daemon wires Vigil's stages together and runs them as a
// service: capture, flows, detection and export, with metrics, health,
// configuration reload and signals.
package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/vigil-sensor/vigil/export/sinks"
	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/config"
	"github.com/vigil-sensor/vigil/internal/yamlerr"
	"github.com/vigil-sensor/vigil/sampler"
)

// DefaultMetricsAddr is where metrics and health are served by default:
// localhost only. The Prometheus default port allocations list has
// filled the whole exporter range 9100-9999, so Vigil takes a port
// outside it.
const DefaultMetricsAddr = "127.0.0.1:10099"

// Config is the daemon's configuration: one YAML file over DefaultConfig.
// docs/CONFIG.md documents every key; packaging/vigil.yaml is the
// annotated default file.
type Config struct {
	Capture CaptureConfig `yaml:"capture"`
	Flows   FlowsConfig   `yaml:"flows"`
	Export  sinks.Config  `yaml:"export"`
	Detect  DetectConfig  `yaml:"detect"`
	HTTP    HTTPConfig    `yaml:"http"`
	Log     LogConfig     `yaml:"log"`
}

// CaptureConfig is what the capture path attaches to and how it samples.
type CaptureConfig struct {
	Interfaces    []string       `yaml:"interfaces"`  // empty: the interfaces carrying default routes
	AttachMode    string         `yaml:"attach_mode"` // auto, xdp-native, xdp-generic or tcx
	Egress        bool           `yaml:"egress"`      // also capture egress with tcx
	Sampling      string         `yaml:"sampling"`    // adaptive or fixed
	SampleRate    uint32         `yaml:"sample_rate"` // 1-in-N when fixed; where adaptive starts
	Adaptive      AdaptiveConfig `yaml:"adaptive"`
	DecapVXLAN    bool           `yaml:"decap_vxlan"`     // look into VXLAN (UDP 4789)
	DecapGENEVE   bool           `yaml:"decap_geneve"`    // look into GENEVE (UDP 6081)
	HeadBytes     int            `yaml:"head_bytes"`      // bytes of each sampled frame to keep, 0..128
	RingBufferMiB int            `yaml:"ring_buffer_mib"` // ring buffer size, a power of two
	SamplesOut    string         `yaml:"samples_out"`     // debugging: every sample as JSON lines ("-": stdout)
}

// FlowsConfig is the flow table's expiry policy and where flows go.
type FlowsConfig struct {
	IdleTimeout   Duration `yaml:"idle_timeout"`
	ActiveTimeout Duration `yaml:"active_timeout"`
	MaxFlows      int      `yaml:"max_flows"`
	Workers       int      `yaml:"workers"` // goroutines feeding the table
	Output        string   `yaml:"output"`  // JSON lines: a path, "-" for stdout, "" for none
}

// HTTPConfig is the metrics and health endpoint.
type HTTPConfig struct {
	Listen string `yaml:"listen"`
}

// LogConfig is how the daemon logs.
type LogConfig struct {
	Level         string   `yaml:"level"`          // debug, info, warn, error
	Format        string   `yaml:"format"`         // text or json
	StatsInterval Duration `yaml:"stats_interval"` // log a counter summary this often; 0: never
}

// DefaultConfig is what `vigil run` does with no file and no flags.
func DefaultConfig() Config {
	fc := flow.DefaultConfig()
	return Config{
		Capture: CaptureConfig{
			AttachMode:    string(sampler.ModeAuto),
			Sampling:      SamplingAdaptive,
			SampleRate:    100,
			Adaptive:      defaultAdaptive(),
			DecapVXLAN:    true,
			DecapGENEVE:   true,
			RingBufferMiB: 8,
		},
		Flows: FlowsConfig{
			IdleTimeout:   Duration{D: fc.IdleTimeout},
			ActiveTimeout: Duration{D: fc.ActiveTimeout},
			MaxFlows:      fc.MaxFlows,
			Workers:       1,
			Output:        "-",
		},
		Export: sinks.DefaultConfig(),
		Detect: defaultDetect(),
		HTTP:   HTTPConfig{Listen: DefaultMetricsAddr},
		Log:    LogConfig{Level: "info", Format: "text", StatsInterval: Duration{D: time.Minute}},
	}
}

// FieldError is a problem with one configuration field. Field is the
// dotted YAML path (flows.idle_timeout).
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate checks the configuration and returns every problem found.
func (c *Config) Validate() []*FieldError {
	var errs []*FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	for i, name := range c.Capture.Interfaces {
		if !validIfName(name) {
			bad(fmt.Sprintf("capture.interfaces[%d]", i), "%q is not an interface name", name)
		}
	}
	if _, err := sampler.ParseMode(c.Capture.AttachMode); err != nil {
		bad("capture.attach_mode", "%v", err)
	}
	if c.Capture.SampleRate == 0 {
		bad("capture.sample_rate", "must be at least 1")
	}
	c.Capture.validateSampling(bad)
	if h := c.Capture.HeadBytes; h < 0 || h > sampler.MaxHeadBytes {
		bad("capture.head_bytes", "%d out of range 0..%d", h, sampler.MaxHeadBytes)
	}
	if mib := c.Capture.RingBufferMiB; mib <= 0 || mib > 1024 || mib&(mib-1) != 0 {
		bad("capture.ring_buffer_mib", "%d is not a power of two between 1 and 1024", mib)
	}
	for _, d := range []struct {
		field string
		d     Duration
		zero  bool // zero allowed
	}{
		{"flows.idle_timeout", c.Flows.IdleTimeout, false},
		{"flows.active_timeout", c.Flows.ActiveTimeout, false},
		{"log.stats_interval", c.Log.StatsInterval, true},
	} {
		switch {
		case d.d.Invalid() != "":
			bad(d.field, "%q is not a duration (examples: 15s, 1m30s, 500ms)", d.d.Invalid())
		case d.d.D < 0 || (d.d.D == 0 && !d.zero):
			bad(d.field, "must be positive, got %s", d.d.D)
		}
	}
	if c.Flows.MaxFlows < 1 {
		bad("flows.max_flows", "must be at least 1, got %d", c.Flows.MaxFlows)
	}
	if w := c.Flows.Workers; w < 1 || w > 16 || w&(w-1) != 0 {
		bad("flows.workers", "%d is not 1, 2, 4, 8 or 16", w)
	}
	var ex config.Problems
	ex.In("export", c.Export.Validate())
	for _, p := range ex {
		bad(p.Field, "%s", p.Msg)
	}
	c.Detect.validate(bad)
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		bad("http.listen", "%q is not HOST:PORT: %v", c.HTTP.Listen, err)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(c.Log.Level)); err != nil {
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "%q is not text or json", c.Log.Format)
	}
	return errs
}

func validIfName(name string) bool {
	return name != "" && len(name) <= 15 && !strings.ContainsAny(name, "/ \t")
}

// Duration is a time.Duration written as "15s" or "1m30s" in YAML; a
// value that does not parse is reported by Validate with its line.
type Duration = yamlerr.Duration

func (c *Config) flowConfig() flow.Config {
	fc := flow.DefaultConfig()
	fc.IdleTimeout = c.Flows.IdleTimeout.D
	fc.ActiveTimeout = c.Flows.ActiveTimeout.D
	fc.MaxFlows = c.Flows.MaxFlows
	return fc
}

func (c *Config) decap() sampler.Decap {
	var d sampler.Decap
	if c.Capture.DecapVXLAN {
		d |= sampler.DecapVXLAN
	}
	if c.Capture.DecapGENEVE {
		d |= sampler.DecapGENEVE
	}
	return d
}

func (c *Config) logLevel() slog.Level {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(c.Log.Level))
	return lv
}
