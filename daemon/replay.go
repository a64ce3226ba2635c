package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/sampler"
)

// ReplayOptions is what `vigil replay` hands the daemon.
type ReplayOptions struct {
	Files      []string
	Config     Config // flows.*, capture.decap_* and, with a SampleBudget, capture.adaptive.min_rate and max_rate apply
	SampleRate uint32 // 1-in-N; with a SampleBudget, where the controller starts
	// SampleBudget, samples per second of capture time, turns on adaptive
	// sampling: the controller of `vigil run`, bounded by the config's
	// capture.adaptive.min_rate and max_rate, stepped every 100 ms of
	// capture time. 0: the fixed SampleRate.
	SampleBudget int
	Seed         uint64 // the sampler's seed: the same seed samples the same packets
	Output       string // JSON lines: a path or "-"
	Interface    string // the interface name written in records
	ConfigPath   string // where Config came from, to place errors in detect options
	Log          *slog.Logger

	// For tests: every sample batch the flow table is fed, every batch
	// of records written.
	onSamples func([]flow.Sample)
	onRecords func([]flow.Record)
}

// replayTick is the longest stretch of capture time a replay hands the
// flow table and the detection engine at once.
const replayTick = int64(100 * time.Millisecond)

// ReplayStats is what a replay counted.
type ReplayStats struct {
	Packets uint64 // every packet in the files
	Bytes   uint64
	Samples uint64
	Flows   uint64 // records written
	Alerts  uint64 // alert reports written (start, update, end)

	// The self-check: the packets the samples stand for, and the
	// relative half-width of that estimate's 95% interval.
	Estimated, EstimateBound float64

	// What adaptive sampling did (with a fixed rate: no changes, and
	// that rate throughout).
	RateChanges      uint64 // changes the controller made
	Rate             uint32 // the rate in force at the end
	MinRate, MaxRate uint32 // the lowest and highest rate in force

	// Timestamps the source did not keep: out of order, in a jump the
	// capture did not confirm, or impossible (see sampler.TimeGuard).
	Times sampler.TimeStats
}

// Replay runs capture files through the pipeline of `vigil run`, fed by
// the Go twin of the BPF parser and sampler instead of the ring buffer,
// and clocked by capture time, so timeouts slice flows and windows judge
// traffic as they would have live.
func Replay(ctx context.Context, opts ReplayOptions) (ReplayStats, error) {
	cfg := opts.Config
	if err := opts.check(&cfg); err != nil {
		return ReplayStats{}, err
	}
	src, rates, err := replaySource(&cfg, &opts)
	if err != nil {
		return ReplayStats{}, err
	}
	var est flow.Estimate // the self-check: what the samples say against what the files hold
	p, err := newPipeline(&cfg, opts.ConfigPath, opts.Output, (&sampler.IfNames{Fixed: cmp.Or(opts.Interface, "replay")}).Name, pipelineOptions{
		Observe: func(b []flow.Sample) { observe(&est, b) }, Log: opts.Log, onSamples: opts.onSamples, onRecords: opts.onRecords,
	})
	if err != nil {
		return ReplayStats{}, err
	}
	sendCtx, stopSending := context.WithCancel(ctx)
	sent := make(chan error, 1)
	go func() { sent <- p.Run(sendCtx) }()
	latest := int64(0)
	var fileErrs []error
	for _, path := range opts.Files {
		err := src.ReadFileFunc(ctx, path, func(batch []flow.Sample) error {
			latest = feed(p, batch, latest)
			if p.Err() != nil {
				return errOutputFailed // p.Err() says why
			}
			return nil
		})
		if errors.Is(err, errOutputFailed) || ctx.Err() != nil {
			break
		}
		if err != nil {
			// A bad or cut-short file ends that file, not the replay: what
			// it held before the fault, and every other file, still count.
			fileErrs = append(fileErrs, err)
			if opts.Log != nil {
				opts.Log.Error("capture file", "error", err)
			}
		}
	}
	err = errors.Join(fileErrs...)
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	stopSending()
	err = errors.Join(err, <-sent, p.Close(latest), p.Err())
	st, ifs := src.Stats()
	rs := ReplayStats{
		Packets: ifs.Packets, Bytes: ifs.Bytes, Samples: st.Samples, Flows: p.out.written(), Alerts: p.Alerts(),
		Estimated: est.Value, EstimateBound: est.RelativeError(),
		RateChanges: rates.Changes, Rate: rates.Rate, MinRate: rates.MinRate, MaxRate: rates.MaxRate,
		Times: src.TimeStats(),
	}
	if ts := rs.Times; ts.Clamped+ts.Untimed > 0 && opts.Log != nil {
		opts.Log.Warn("capture timestamps corrected", "suspect_jumps_clamped", ts.Clamped, "impossible_unsampled", ts.Untimed,
			"out_of_order", ts.Reordered, "jumps_followed", ts.Jumps)
	}
	return rs, err
}

var errOutputFailed = errors.New("an output failed")

func (o *ReplayOptions) check(cfg *Config) error {
	if err := cfg.check(); err != nil {
		return err
	}
	if o.SampleRate == 0 {
		return errors.New("sample rate: must be at least 1")
	}
	if o.SampleBudget < 0 {
		return fmt.Errorf("sample budget %d: must be positive, or 0 for a fixed rate", o.SampleBudget)
	}
	return nil
}

// feed hands a batch to the pipeline in slices of at most replayTick of
// capture time, moving its clock between them as it would move live,
// however much time the batch spans. It returns the latest timestamp.
func feed(p *pipeline, batch []flow.Sample, latest int64) int64 {
	for len(batch) > 0 {
		n := 1
		for n < len(batch) && batch[n].Timestamp/replayTick == batch[0].Timestamp/replayTick {
			n++
		}
		for i := range batch[:n] {
			latest = max(latest, batch[i].Timestamp)
		}
		p.Submit(batch[:n])
		p.Sync() // the source reuses the batch, and the clock moves only past what was seen
		p.Tick(latest)
		batch = batch[n:]
	}
	return latest
}

func observe(e *flow.Estimate, batch []flow.Sample) {
	for i := range batch {
		e.Observe(batch[i].SamplingRate, float64(max(batch[i].Segments, 1)))
	}
}

// replaySource is the pcap source at a fixed rate or, with a sample
// budget, with the controller of `vigil run` stepped on capture time on
// the frames of all interfaces together (the source has one rate).
func replaySource(cfg *Config, opts *ReplayOptions) (*sampler.PcapSource, *replayRates, error) {
	pcfg := sampler.PcapConfig{SampleRate: opts.SampleRate, Seed: opts.Seed, Decap: cfg.Capture.Decap()}
	rates := &replayRates{Rate: opts.SampleRate, MinRate: opts.SampleRate, MaxRate: opts.SampleRate}
	var src *sampler.PcapSource
	if opts.SampleBudget > 0 {
		a := &cfg.Capture.Adaptive
		ctl, err := sampler.NewController(sampler.ControllerConfig{
			Limits: sampler.Limits{Budget: float64(opts.SampleBudget), MinRate: a.MinRate, MaxRate: a.MaxRate},
		}, opts.SampleRate)
		if err != nil {
			return nil, nil, fmt.Errorf("adaptive sampling: %w", err)
		}
		pcfg.Tick = sampler.SamplingTick
		pcfg.OnTick = func(now int64, st sampler.InterfaceStats) {
			c := sampler.Counters{Time: time.Unix(0, now), Interfaces: []sampler.InterfaceFrames{{Frames: st.Frames}}}
			for _, ch := range ctl.Step(c) {
				src.SetSampleRate(ch.To)
				rates.changed(ch.To)
			}
		}
	}
	src, err := sampler.NewPcapSource(pcfg)
	return src, rates, err
}

// replayRates follows the rate of an adaptive replay.
type replayRates struct {
	Changes                uint64
	Rate, MinRate, MaxRate uint32
}

func (r *replayRates) changed(to uint32) {
	r.Changes++
	r.Rate = to
	r.MinRate, r.MaxRate = min(r.MinRate, to), max(r.MaxRate, to)
}
