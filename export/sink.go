package export

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/vigil-sensor/vigil/flow"
)

// Kinds says which records a sink carries.
type Kinds uint8

// Record kinds.
const (
	KindFlows Kinds = 1 << iota
	KindAlerts
)

// Values of a records key (export.files[].records, export.kafka[].records).
var RecordsValues = []string{"flows", "alerts", "all"}

// KindsOf returns the kinds a records key selects: "flows", "alerts",
// or anything else (all, "") for both.
func KindsOf(records string) Kinds {
	switch records {
	case "flows":
		return KindFlows
	case "alerts":
		return KindAlerts
	}
	return KindFlows | KindAlerts
}

// Output is where records go: a file (FileWriter) or a network sink
// behind its spool (Sink). Writing never waits on the network.
type Output interface {
	// Name names the output in errors, logs and metrics.
	Name() string
	// WriteFlows and WriteAlerts take the records of the kinds the
	// output carries and ignore the others.
	WriteFlows(recs []flow.Record) error
	WriteAlerts(alerts []flow.Alert) error
	// Flush writes buffered records through (a file's lines; a sink's
	// records are in its spool already).
	Flush() error
	// Reopen opens a file again after log rotation; sinks have nothing
	// to reopen.
	Reopen() error
	// Run sends until ctx is done (a sink); a file has nothing to send
	// and returns at once.
	Run(ctx context.Context) error
	// Close flushes and closes; a sink first tries to send what it holds
	// until ctx is done.
	Close(ctx context.Context) error
}

// Dependencies are what the outputs take from the sensor rather than
// from their configuration.
type Dependencies struct {
	Sensor  string              // this sensor in exports (export.sensor_name or the host name)
	Version string              // Vigil's version: webhook User-Agent, OCSF product
	IfName  func(uint32) string // names interfaces by index; may be nil
	Log     *slog.Logger        // may be nil
}

// Product is the OCSF metadata of this sensor.
func (d Dependencies) Product() OCSFProduct {
	return OCSFProduct{Version: d.Version, Sensor: d.Sensor}
}

// Logger returns Log, or a logger that discards.
func (d Dependencies) Logger() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}

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

// RejectedError says that item n (the count Send returned) is rejected
// by the upstream and will not be accepted on retry: the caller drops
// it and counts it.
type RejectedError struct{ Err error }

func (e *RejectedError) Error() string { return "rejected by upstream: " + e.Err.Error() }
func (e *RejectedError) Unwrap() error { return e.Err }

// RetryAfterError is a retryable failure for which the upstream asked
// to wait Delay before the next try (HTTP Retry-After on 429 or 503).
type RetryAfterError struct {
	Delay time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %v)", e.Err, e.Delay)
}
func (e *RetryAfterError) Unwrap() error { return e.Err }

var (
	_ Output = (*FileWriter)(nil)
	_ Output = (*Sink)(nil)
)
