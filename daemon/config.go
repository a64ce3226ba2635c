// Package daemon wires Vigil's stages together and runs them as a
// service: capture, flows, detection and export, with metrics, health,
// configuration reload and signals.
package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

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
	Capture sampler.Config `yaml:"capture"`
	Flows   FlowsConfig    `yaml:"flows"`
	Export  ExportConfig   `yaml:"export"`
	Detect  DetectConfig   `yaml:"detect"`
	HTTP    HTTPConfig     `yaml:"http"`
	Log     LogConfig      `yaml:"log"`
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
		Capture: sampler.DefaultConfig(),
		Flows: FlowsConfig{
			IdleTimeout:   Duration{D: fc.IdleTimeout},
			ActiveTimeout: Duration{D: fc.ActiveTimeout},
			MaxFlows:      fc.MaxFlows,
			Workers:       1,
			Output:        "-",
		},
		Export: ExportConfig{
			Spool: SpoolConfig{Dir: "/var/lib/vigil/spool", MaxMiB: 256, Fsync: "interval"},
		},
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
	for _, p := range c.Capture.Validate() {
		bad(config.Join("capture", p.Field), "%s", p.Msg)
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
	c.Export.validate(bad)
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

func (c *Config) logLevel() slog.Level {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(c.Log.Level))
	return lv
}

// check validates a configuration given by a caller rather than a file.
func (c *Config) check() error {
	if fes := c.Validate(); len(fes) > 0 {
		errs := make([]error, len(fes))
		for i, fe := range fes {
			errs[i] = fe
		}
		return fmt.Errorf("invalid configuration: %w", errors.Join(errs...))
	}
	return nil
}
