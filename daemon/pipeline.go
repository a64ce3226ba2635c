package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-sensor/vigil/detect"
	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/flow"
)

// pipeline is the data path from a sample source to the outputs, the
// same for `vigil run` and `vigil replay`:
//
//	samples ─▶ Submit ─┬─▶ observe (self-check), samples_out
//	                   ├─▶ flow feeders (one per worker) ─▶ table
//	                   └─▶ detection (samples)
//	Tick(now) ─▶ table.Expire ─▶ detection (records) ─▶ outputs
//	          ─▶ engine.Advance ─▶ alerts ─▶ outputs (flushed at once)
//
// Run drives it from the ring-buffer reader and the wall clock, Replay
// from the pcap source and capture time. They differ in one knob: live,
// detection that is behind misses batches (counted) rather than slow
// the capture; a replay waits, as its source can.
type pipeline struct {
	table   *flow.Table
	clock   *flow.ManualClock // the table's: moved by Tick
	eng     *detect.Engine    // nil: detection is off
	out     *outputs
	samples *export.SampleWriter
	opts    pipelineOptions

	parts    []chan *sharedBatch
	detectIn chan *sharedBatch
	workers  sync.WaitGroup
	inflight sync.WaitGroup // batches not yet released by every consumer
	closed   bool

	dropped    atomic.Uint64 // samples detection did not evaluate
	alerts     atomic.Uint64 // alert reports emitted
	lastExpire int64

	mu        sync.Mutex
	err       error // the first write error, for Replay to return
	errLogged time.Time
}

// pipelineOptions are what differs between the drivers of a pipeline.
type pipelineOptions struct {
	Lossy       bool                // live: detection behind the capture misses batches
	ExpireEvery time.Duration       // Tick expires flows at most this often (0: every Tick)
	Release     func([]flow.Sample) // gives a batch back to its source; nil: nothing to give
	Observe     func([]flow.Sample) // sees every batch first (the self-check); nil: none
	Log         *slog.Logger

	// For tests: every batch the flow feeders get, every batch of
	// records written.
	onSamples func([]flow.Sample)
	onRecords func([]flow.Record)
	// detectSamples replaces the engine's Samples (tests: a slow engine).
	detectSamples func([]flow.Sample)
}

// detectQueue is how many batches detection may be behind the capture
// (64 of 512 samples: 1.6 s of the default budget) before, live, it
// misses batches.
const detectQueue = 64

// sharedBatch is a batch on its way to every consumer; the last one
// done with it releases it.
type sharedBatch struct {
	batch []flow.Sample
	left  atomic.Int32
}

// newPipeline builds the stages: table, detection (when enabled),
// outputs and samples_out. flowsOut is flows.output or replay's
// --flows-out; ifname names interfaces in records.
func newPipeline(cfg *Config, configPath, flowsOut string, ifname func(uint32) string, opts pipelineOptions) (_ *pipeline, err error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	p := &pipeline{opts: opts, clock: flow.NewManualClock(time.Unix(0, 0))}
	if p.table, err = flow.NewTable(cfg.Flows.Config, p.clock); err != nil {
		return nil, err
	}
	if p.out, err = openOutputs(cfg, flowsOut, ifname, true, opts.Log); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			p.out.Close(context.Background())
		}
	}()
	if p.samples, err = export.OpenSampleWriter(cfg.Capture.SamplesOut); err != nil {
		return nil, err
	}
	if cfg.Detect.Enabled {
		set, err := LoadRules(cfg, configPath)
		if err != nil {
			p.samples.Close()
			return nil, err
		}
		ec := cfg.Detect.EngineConfig()
		if !opts.Lossy {
			ec.MaxCPU = 0 // a replay waits for detection: nothing to guard
		}
		p.eng = detect.NewEngine(set, ec, p.emit)
		opts.Log.Info("detection rules loaded", "rules", len(set.Names()), "lists", set.Lists().Names())
	}
	p.start(cfg.Flows.Workers)
	return p, nil
}

// start runs one feeder per part of the table and, with detection, the
// engine's consumer. Each sees every batch, in order: two cores feed the
// table and each flow's samples stay in order.
func (p *pipeline) start(workers int) {
	p.parts = make([]chan *sharedBatch, workers)
	for i := range p.parts {
		in := make(chan *sharedBatch, 16)
		p.parts[i] = in
		f := p.table.NewPartFeeder(i, workers)
		p.workers.Add(1)
		go func() {
			defer p.workers.Done()
			for sb := range in {
				f.Add(sb.batch)
				p.done(sb)
			}
		}()
	}
	if p.eng == nil {
		return
	}
	p.detectIn = make(chan *sharedBatch, detectQueue)
	evaluate := p.eng.Samples
	if p.opts.detectSamples != nil {
		evaluate = p.opts.detectSamples
	}
	p.workers.Add(1)
	go func() {
		defer p.workers.Done()
		for sb := range p.detectIn {
			evaluate(sb.batch)
			p.done(sb)
		}
	}()
}

// Submit hands a batch to every consumer. It waits for the flow feeders
// (the table must see every sample) and, unless lossy, for detection.
// The batch is released to its source once every consumer is done.
func (p *pipeline) Submit(batch []flow.Sample) {
	if p.opts.Observe != nil {
		p.opts.Observe(batch)
	}
	if err := p.samples.Write(batch); err != nil {
		p.logErr("writing samples", err)
	}
	if p.opts.onSamples != nil {
		p.opts.onSamples(batch)
	}
	sb := &sharedBatch{batch: batch}
	n := len(p.parts)
	if p.detectIn != nil {
		n++
	}
	sb.left.Store(int32(n))
	p.inflight.Add(1)
	for _, in := range p.parts {
		in <- sb
	}
	if p.detectIn == nil {
		return
	}
	if !p.opts.Lossy {
		p.detectIn <- sb
		return
	}
	select {
	case p.detectIn <- sb:
	default:
		p.dropped.Add(uint64(len(batch)))
		p.done(sb)
	}
}

func (p *pipeline) done(sb *sharedBatch) {
	if sb.left.Add(-1) != 0 {
		return
	}
	if p.opts.Release != nil {
		p.opts.Release(sb.batch)
	}
	p.inflight.Done()
}

// Sync waits until every submitted batch has been consumed: a replay
// calls it before it moves the clock, and before it reuses a batch.
func (p *pipeline) Sync() { p.inflight.Wait() }

// Tick moves the pipeline's clock to now: flows due by then end and go
// to detection and the outputs, the engine's windows and alerts move
// on, and the files are flushed.
func (p *pipeline) Tick(now int64) {
	p.clock.SetNano(now)
	if every := int64(p.opts.ExpireEvery); every == 0 || now-p.lastExpire >= every {
		p.lastExpire = now
		p.table.Expire(p.write)
		if err := p.out.Flush(); err != nil {
			p.logErr("flushing outputs", err)
		}
	}
	if p.eng != nil {
		p.eng.Advance(now)
	}
}

// write sends ended flow records to detection, then to the outputs.
func (p *pipeline) write(recs []flow.Record) {
	if p.opts.onRecords != nil {
		p.opts.onRecords(recs)
	}
	if p.eng != nil {
		p.eng.Records(recs)
	}
	if err := p.out.WriteFlows(recs); err != nil {
		p.fail(fmt.Errorf("writing flows: %w", err), "writing flows; records are dropped and counted")
	}
}

// emit writes alerts to the outputs at once: an alert should not wait
// for the next flush of flows.
func (p *pipeline) emit(alerts []flow.Alert) {
	p.alerts.Add(uint64(len(alerts)))
	if err := p.out.WriteAlerts(alerts); err != nil {
		p.fail(fmt.Errorf("writing alerts: %w", err), "writing alerts; alerts are dropped and counted")
	}
	if err := p.out.Flush(); err != nil {
		p.logErr("flushing alerts", err)
	}
	for i := range alerts {
		a := &alerts[i]
		if a.State == flow.AlertUpdate {
			continue
		}
		p.opts.Log.Info("alert", "rule", a.Rule, "state", a.State.String(), "severity", a.Severity.String(),
			"key", keyString(a.Key), "summary", a.Summary)
	}
}

// fail keeps the first write error and logs, at most every 10 s.
func (p *pipeline) fail(err error, msg string) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
	p.logErr(msg, err)
}

func (p *pipeline) logErr(msg string, err error) {
	p.mu.Lock()
	now := time.Now()
	logIt := now.Sub(p.errLogged) > 10*time.Second
	if logIt {
		p.errLogged = now
	}
	p.mu.Unlock()
	if logIt {
		p.opts.Log.Error(msg, "error", err)
	}
}

// Run sends from the network sinks' spools until ctx ends.
func (p *pipeline) Run(ctx context.Context) error { return p.out.Run(ctx) }

// Close ends the pipeline at now, once the source has stopped: the
// consumers drain, every flow ends (reason shutdown) and goes through
// detection to the outputs, every running alert ends, and the outputs
// close (the sinks try a few seconds to send what they hold).
func (p *pipeline) Close(now int64) error {
	if p.closed {
		return nil
	}
	p.closed = true
	for _, in := range p.parts {
		close(in)
	}
	if p.detectIn != nil {
		close(p.detectIn)
	}
	p.workers.Wait()
	p.clock.SetNano(now)
	p.table.Flush(p.write)
	if p.eng != nil {
		p.eng.Close(now)
	}
	return errors.Join(p.samples.Close(), p.out.Close(context.Background()))
}

// Err is the first error writing flows or alerts (each output counts
// what it dropped).
func (p *pipeline) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Dropped is the samples detection did not evaluate (live only).
func (p *pipeline) Dropped() uint64 { return p.dropped.Load() }

// Alerts is the alert reports emitted.
func (p *pipeline) Alerts() uint64 { return p.alerts.Load() }

func keyString(kvs []flow.KeyValue) string {
	var b strings.Builder
	for i, kv := range kvs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(kv.Name + "=" + kv.Value)
	}
	return b.String()
}
