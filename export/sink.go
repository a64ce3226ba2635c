package export

import (
	"context"

	"github.com/vigil-sensor/vigil/flow"
)

// Kinds says which records a sink carries.
type Kinds uint8

// Record kinds.
const (
	KindFlows Kinds = 1 << iota
	KindAlerts
)

// Encoder turns flow records and alerts into spool items. An item is
// self-contained: after a restart the transport sends it with no state
// from the encoder that made it. Encoders are used from one goroutine.
type Encoder interface {
	// Kinds returns what the sink carries; the other Append method is
	// never called.
	Kinds() Kinds
	// AppendFlow appends one item for r to dst and returns the result.
	AppendFlow(dst []byte, r *flow.Record) []byte
	// AppendAlert appends one item for a to dst and returns the result.
	AppendAlert(dst []byte, a *flow.Alert) []byte
}

// Transport sends items upstream, in order.
type Transport interface {
	// Send delivers items in order. It returns how many leading items
	// are known to be accepted upstream (for TCP: taken by the peer's
	// kernel; for Kafka: acknowledged; for HTTP: a 2xx) and, when that
	// is not all of them, why. The caller sends the rest again later,
	// so delivery is at least once. Send must return when ctx is done.
	Send(ctx context.Context, items [][]byte) (int, error)
	// Close releases the connection. Send may be called again after
	// Close: it reconnects.
	Close() error
}
