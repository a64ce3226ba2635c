package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/export/sinks"
	"github.com/vigil-sensor/vigil/flow"
)

// outputs is everything records go to: flows.output, the export files
// and the spooled network sinks, as one list of export.Outputs. Writing
// never waits on the network.
type outputs struct {
	primary *export.FileWriter // flows.output; nil for none
	all     []export.Output    // primary first, then the export section's (sinks.Open)
}

// openOutputs opens flows.output (path, "-" or "" for none) and, when
// withExport, the export section's files and sinks.
func openOutputs(cfg *Config, flowsOut string, ifname func(uint32) string, withExport bool, log *slog.Logger) (_ *outputs, err error) {
	o := &outputs{}
	defer func() {
		if err != nil {
			o.Close(context.Background())
		}
	}()
	deps := export.Dependencies{Sensor: sinks.SensorName(cfg.Export.SensorName), Version: Version, IfName: ifname, Log: log}
	if flowsOut != "" {
		fc := export.DefaultFileConfig()
		fc.Path = flowsOut
		w, err := export.NewFileWriter(fc, deps)
		if err != nil {
			return nil, fmt.Errorf("opening flows output: %w", err)
		}
		o.primary = w
		o.all = append(o.all, w)
	}
	if !withExport {
		return o, nil
	}
	ex, err := sinks.Open(&cfg.Export, deps)
	if err != nil {
		return nil, err
	}
	o.all = append(o.all, ex...)
	return o, nil
}

// WriteFlows writes records to every output; each takes the kinds it
// carries. It returns the first error; each output counts what it
// dropped.
func (o *outputs) WriteFlows(recs []flow.Record) error {
	var first error
	for _, out := range o.all {
		if err := out.WriteFlows(recs); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// WriteAlerts writes alerts to every output that carries alerts.
func (o *outputs) WriteAlerts(alerts []flow.Alert) error {
	var first error
	for _, out := range o.all {
		if err := out.WriteAlerts(alerts); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Flush writes the files' buffered lines through.
func (o *outputs) Flush() error {
	var errs error
	for _, out := range o.all {
		errs = errors.Join(errs, out.Flush())
	}
	return errs
}

// Reopen reopens the files, for log rotation (SIGHUP).
func (o *outputs) Reopen() error {
	var errs error
	for _, out := range o.all {
		errs = errors.Join(errs, out.Reopen())
	}
	return errs
}

// Run sends from the sinks' spools until ctx is done.
func (o *outputs) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, out := range o.all {
		g.Go(func() error { return out.Run(ctx) })
	}
	return g.Wait()
}

// Close closes the outputs together, each whatever the others do: the
// files at once, the sinks after trying for a few seconds to send what
// they hold; the rest waits in their spools for the next start.
func (o *outputs) Close(ctx context.Context) error {
	errs := make([]error, len(o.all))
	var wg sync.WaitGroup
	for i, out := range o.all {
		wg.Go(func() { errs[i] = out.Close(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// sinkList returns the network sinks, for the metrics collector.
func (o *outputs) sinkList() []*export.Sink {
	var ss []*export.Sink
	for _, out := range o.all {
		if s, ok := out.(*export.Sink); ok {
			ss = append(ss, s)
		}
	}
	return ss
}

// written and dropped count flows.output's records.
func (o *outputs) written() uint64 {
	if o.primary == nil {
		return 0
	}
	return o.primary.Written()
}

func (o *outputs) dropped() uint64 {
	if o.primary == nil {
		return 0
	}
	return o.primary.Dropped()
}
