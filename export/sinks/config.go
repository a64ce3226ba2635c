package sinks

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/export/ipfix"
	"github.com/vigil-sensor/vigil/export/kafka"
	"github.com/vigil-sensor/vigil/export/spool"
	"github.com/vigil-sensor/vigil/export/webhook"
	"github.com/vigil-sensor/vigil/internal/config"
)

// Config is the export section: where flows and alerts go besides
// flows.output, extra JSON-lines files and network sinks, each sink
// behind its own spool. Several sinks of each kind can run at once.
// Each kind's entries are the kind's own Config, defaults and checks
// included; the section adds what concerns them together (names, the
// spool directory).
type Config struct {
	SensorName string              `yaml:"sensor_name"` // this sensor in exports (Kafka key and header, OCSF reporter and observation point); default: the host name
	Spool      spool.Config        `yaml:"spool"`
	Files      []export.FileConfig `yaml:"files"`
	IPFIX      []ipfix.Config      `yaml:"ipfix"`
	Kafka      []kafka.Config      `yaml:"kafka"`
	Webhooks   []webhook.Config    `yaml:"webhooks"`
}

// DefaultConfig returns the section's defaults: no files, no sinks.
func DefaultConfig() Config {
	return Config{Spool: spool.DefaultConfig()}
}

var sinkName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// Validate checks the section, every entry of every kind included, at
// paths relative to it (spool.max_mib, kafka[0].tls.ca_file).
func (c *Config) Validate() config.Problems {
	var p config.Problems
	p.In("spool", c.Spool.Validate())
	for i, f := range c.Files {
		p.In(fmt.Sprintf("files[%d]", i), f.Validate())
	}
	sinks := c.Sinks()
	if len(sinks) > 0 && c.Spool.Dir == "" {
		p.Add("spool.dir", "network sinks need a spool directory")
	}
	for i, s := range sinks {
		if !sinkName.MatchString(s.Name) {
			p.Add(s.Path+".name", "%q is not a sink name (lower case letters, digits, _ . -)", s.Name)
		}
		if j := slices.IndexFunc(sinks, func(o Sink) bool { return o.Name == s.Name }); j < i {
			p.Add(s.Path+".name", "%q is also the name of export.%s", s.Name, sinks[j].Path)
		}
		p.In(s.Path, s.validate())
	}
	return p
}
