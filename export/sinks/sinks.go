// Package sinks owns the export section of the configuration: its
// Config lists the entries of every sink kind (export/ipfix,
// export/kafka, export/webhook) and the files, and Open makes them
// Outputs. It is the one package that knows every kind: the kinds
// import export for its Encoder, Transport and formats, so the section
// that names them all sits above them, as a registry (registry.go).
package sinks

import (
	"cmp"
	"context"
	"fmt"
	"os"

	"github.com/vigil-sensor/vigil/export"
)

// SensorName is the name of this sensor in exports: name, or the host
// name when name is "".
func SensorName(name string) string {
	if name != "" {
		return name
	}
	h, _ := os.Hostname()
	return h
}

// Open opens the section's files, then its network sinks, each behind
// its spool (spool.dir/<name>), as Outputs in that order. deps.Sensor
// defaults to SensorName(c.SensorName). On an error, what was opened is
// closed.
func Open(c *Config, deps export.Dependencies) (_ []export.Output, err error) {
	deps.Sensor = cmp.Or(deps.Sensor, SensorName(c.SensorName))
	log := deps.Logger()
	var outs []export.Output
	defer func() {
		if err != nil {
			for _, o := range outs {
				o.Close(context.Background())
			}
		}
	}()
	for i, f := range c.Files {
		w, err := export.NewFileWriter(f, deps)
		if err != nil {
			return nil, fmt.Errorf("export.files[%d]: %w", i, err)
		}
		outs = append(outs, w)
	}
	for _, s := range c.Sinks() {
		enc, tr, err := s.New(deps)
		if err != nil {
			return nil, fmt.Errorf("export.%s: %w", s.Path, err)
		}
		sp, err := c.Spool.Open(s.Name, log)
		if err != nil {
			tr.Close()
			return nil, fmt.Errorf("export.%s: %w", s.Path, err)
		}
		if p := sp.Pending(); p > 0 {
			log.Info("records left in the spool from an earlier run will be sent", "sink", s.Name, "records", p)
		}
		outs = append(outs, export.NewSink(s.Name, enc, tr, sp, export.SinkOptions{Log: log}))
	}
	return outs, nil
}
