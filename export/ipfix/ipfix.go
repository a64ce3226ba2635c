// Package ipfix exports flows as IPFIX (RFC 7011) to a collector over
// UDP or TCP: the encoder makes self-contained spool items, the
// transport packs them into messages with the templates and the
// sampling rates each session needs. docs/IPFIX.md lists the fields.
package ipfix

import "github.com/vigil-sensor/vigil/export"

// New returns the encoder and transport of a sink of c, which Validate
// accepted. It never fails: the transport connects at the first Send.
func New(c Config, deps export.Dependencies) (export.Encoder, export.Transport, error) {
	return NewEncoder(), NewTransport(c, deps), nil
}
