// Package webhook posts alerts as signed JSON to an HTTP(S) endpoint,
// one alert per request (docs/WEBHOOK.md): the encoder makes the body,
// the transport signs and posts it and classifies the answer (retry,
// wait, or give the item up), and VerifySignature is the receiver's
// check.
package webhook

import "github.com/vigil-sensor/vigil/export"

// New returns the encoder and transport of a sink of c, which Validate
// accepted.
func New(c Config, deps export.Dependencies) (export.Encoder, export.Transport, error) {
	enc, err := NewEncoder(c.Format, deps.Product())
	if err != nil {
		return nil, nil, err
	}
	tr, err := NewTransport(c, deps.Version)
	if err != nil {
		return nil, nil, err
	}
	return enc, tr, nil
}
