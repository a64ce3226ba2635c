// Package daemon wires Vigil's stages together and runs them as a
// service: capture, flows, detection and export, with metrics, health,
// configuration reload and signals.
package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/vigil-sensor/vigil/detect"
	"github.com/vigil-sensor/vigil/export/sinks"
	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/config"
	"github.com/vigil-sensor/vigil/internal/secret"
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
	Export  sinks.Config   `yaml:"export"`
	Detect  detect.Config  `yaml:"detect"`
	HTTP    HTTPConfig     `yaml:"http"`
	Log     LogConfig      `yaml:"log"`
}

// FlowsConfig is the flows section: the flow table's (flow.Config) and
// where the records go.
type FlowsConfig struct {
	flow.Config `yaml:",inline"`
	Output      string `yaml:"output"` // JSON lines: a path, "-" for stdout, "" for none
}

// HTTPConfig is the metrics and health endpoint.
type HTTPConfig struct {
	Listen string `yaml:"listen"`
	// ReloadTokenFile holds the bearer token POST /-/reload must carry
	// (Authorization: Bearer TOKEN); "": no token is asked.
	ReloadTokenFile string `yaml:"reload_token_file"`
}

// LogConfig is how the daemon logs.
type LogConfig struct {
	Level         string   `yaml:"level"`          // debug, info, warn, error
	Format        string   `yaml:"format"`         // text or json
	StatsInterval Duration `yaml:"stats_interval"` // log a counter summary this often; 0: never
}

// DefaultConfig is what `vigil run` does with no file and no flags.
func DefaultConfig() Config {
	return Config{
		Capture: sampler.DefaultConfig(),
		Flows:   FlowsConfig{Config: flow.DefaultConfig(), Output: "-"},
		Export:  sinks.DefaultConfig(),
		Detect:  detect.DefaultConfig(),
		HTTP:    HTTPConfig{Listen: DefaultMetricsAddr},
		Log:     LogConfig{Level: "info", Format: "text", StatsInterval: Duration{D: time.Minute}},
	}
}

// Validate checks the configuration and returns every problem found,
// at the dotted YAML path of its field (flows.idle_timeout): each
// section checks itself, at paths relative to it.
func (c *Config) Validate() config.Problems {
	var ps config.Problems
	ps.In("capture", c.Capture.Validate())
	ps.In("flows", c.Flows.Validate())
	ps.In("export", c.Export.Validate())
	ps.In("detect", c.Detect.Validate())
	ps.In("http", c.HTTP.Validate())
	ps.In("log", c.Log.Validate())
	return ps
}

// Warnings are what the configuration allows but should not usually
// do, each as "field.path: message". `vigil check-config` prints them
// and `vigil run` logs them at start.
func (c *Config) Warnings() []string {
	var ws []string
	for _, w := range c.HTTP.Warnings() {
		ws = append(ws, "http."+w)
	}
	return ws
}

// Validate checks the http section.
func (c *HTTPConfig) Validate() config.Problems {
	var ps config.Problems
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		ps.Add("listen", "%q is not HOST:PORT: %v", c.Listen, err)
	}
	if c.ReloadTokenFile != "" {
		if _, err := secret.Read(c.ReloadTokenFile); err != nil {
			ps.Add("reload_token_file", "%v", err)
		}
	}
	return ps
}

// Warnings are what is allowed but unwise in the http section, each as
// "field: message": a listen address other than loopback serves
// /metrics, the rules and POST /-/reload to the network.
func (c *HTTPConfig) Warnings() []string {
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil || loopbackHost(host) {
		return nil
	}
	what := "every interface"
	if host != "" && !isUnspecified(host) {
		what = host
	}
	w := fmt.Sprintf("listen: %q is not a loopback address: /metrics, /api/v1/rules and POST /-/reload are served on %s", c.Listen, what)
	if c.ReloadTokenFile == "" {
		w += "; set http.reload_token_file to require a token for reloads"
	}
	return []string{w}
}

func isUnspecified(host string) bool {
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsUnspecified()
}

// Validate checks the log section.
func (c *LogConfig) Validate() config.Problems {
	var ps config.Problems
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(c.Level)); err != nil {
		ps.Add("level", "%q is not one of debug, info, warn, error", c.Level)
	}
	if c.Format != "text" && c.Format != "json" {
		ps.Add("format", "%q is not text or json", c.Format)
	}
	ps.Duration("stats_interval", c.StatsInterval, true)
	return ps
}

// Duration is a time.Duration written as "15s" or "1m30s" in YAML; a
// value that does not parse is reported by Validate with its line.
type Duration = yamlerr.Duration

func (c *Config) logLevel() slog.Level {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(c.Log.Level))
	return lv
}

// check validates a configuration given by a caller rather than a file.
func (c *Config) check() error {
	if err := c.Validate().Err(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	return nil
}
