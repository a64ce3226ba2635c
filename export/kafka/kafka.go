// Package kafka produces flow records and alerts to Kafka (docs/KAFKA.md):
// the encoder makes self-contained spool items (topic kind, format,
// sensor, key and value), the transport produces them with franz-go.
package kafka

import (
	"fmt"

	"github.com/vigil-sensor/vigil/export"
)

// New returns the encoder and transport of a sink of c, which Validate
// accepted, for deps.Sensor.
func New(c Config, deps export.Dependencies) (export.Encoder, export.Transport, error) {
	enc, err := NewEncoder(c, deps.Sensor, deps.IfName)
	if err != nil {
		return nil, nil, fmt.Errorf("kafka encoder: %w", err)
	}
	tr, err := NewTransport(c, deps.Log)
	if err != nil {
		return nil, nil, err
	}
	return enc, tr, nil
}
