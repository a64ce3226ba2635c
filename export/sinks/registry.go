package sinks

import (
	"fmt"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/export/ipfix"
	"github.com/vigil-sensor/vigil/export/kafka"
	"github.com/vigil-sensor/vigil/export/webhook"
	"github.com/vigil-sensor/vigil/internal/config"
)

// Sink is one network sink entry of the export section.
type Sink struct {
	Path string // its place in the section: kafka[0]
	Name string // its name key, or KIND-INDEX (kafka-0): its spool and metrics label
	// New builds its encoder and transport: the kind's constructor.
	New      func(deps export.Dependencies) (export.Encoder, export.Transport, error)
	validate func() config.Problems
}

// kinds is the registry of sink kinds, in the order their sinks are
// opened: a new kind is one line here, its Config in Config, and its
// package (config.go with Config, DefaultConfig, Validate; a New
// constructor).
func (c *Config) kinds() [][]Sink {
	return [][]Sink{
		entries("ipfix", c.IPFIX, func(e *ipfix.Config) string { return e.Name }, ipfix.New),
		entries("kafka", c.Kafka, func(e *kafka.Config) string { return e.Name }, kafka.New),
		entries("webhooks", c.Webhooks, func(e *webhook.Config) string { return e.Name }, webhook.New),
	}
}

// entry is what every kind's Config is.
type entry interface{ Validate() config.Problems }

// entries makes the Sinks of one kind's list, under key.
func entries[C entry](key string, cs []C, name func(*C) string,
	build func(C, export.Dependencies) (export.Encoder, export.Transport, error)) []Sink {
	out := make([]Sink, len(cs))
	for i := range cs {
		c := cs[i]
		n := name(&c)
		if n == "" {
			n = fmt.Sprintf("%s-%d", key, i)
		}
		out[i] = Sink{
			Path:     fmt.Sprintf("%s[%d]", key, i),
			Name:     n,
			New:      func(deps export.Dependencies) (export.Encoder, export.Transport, error) { return build(c, deps) },
			validate: c.Validate,
		}
	}
	return out
}

// Sinks returns the section's network sinks, kind by kind in the
// registry's order and in file order within a kind.
func (c *Config) Sinks() []Sink {
	var out []Sink
	for _, k := range c.kinds() {
		out = append(out, k...)
	}
	return out
}
