package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/vigil-sensor/vigil/detect"
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

	// What adaptive sampling did (with a fixed rate: no changes, and
	// that rate throughout).
	RateChanges      uint64 // changes the controller made
	Rate             uint32 // the rate in force at the end
	MinRate, MaxRate uint32 // the lowest and highest rate in force
}

// Replay runs capture files through the same pipeline as `vigil run`:
// the Go twin of the BPF parser and sampler, the flow table, and the
// JSON lines output. The table's clock is capture time, so timeouts
// slice flows as they would have live.
func Replay(ctx context.Context, opts ReplayOptions) (ReplayStats, error) {
	cfg := opts.Config
	if fes := cfg.Validate(); len(fes) > 0 {
		return ReplayStats{}, fmt.Errorf("invalid configuration: %w", fes[0])
	}
	if opts.SampleRate == 0 {
		return ReplayStats{}, fmt.Errorf("sample rate: must be at least 1")
	}
	if opts.SampleBudget < 0 {
		return ReplayStats{}, fmt.Errorf("sample budget %d: must be positive, or 0 for a fixed rate", opts.SampleBudget)
	}
	pcfg := sampler.PcapConfig{
		SampleRate: opts.SampleRate,
		Seed:       opts.Seed,
		Decap:      cfg.decap(),
	}
	rates := replayRates{Rate: opts.SampleRate, MinRate: opts.SampleRate, MaxRate: opts.SampleRate}
	var src *sampler.PcapSource
	if opts.SampleBudget > 0 {
		a := &cfg.Capture.Adaptive
		ctl, err := sampler.NewController(sampler.ControllerConfig{
			Limits: sampler.Limits{Budget: float64(opts.SampleBudget), MinRate: a.MinRate, MaxRate: a.MaxRate},
		}, opts.SampleRate)
		if err != nil {
			return ReplayStats{}, fmt.Errorf("adaptive sampling: %w", err)
		}
		// The controller is stepped on capture time, as `vigil run` steps
		// it on the wall clock, on the frames of all interfaces together:
		// the source has one rate.
		pcfg.Tick = samplingTick
		pcfg.OnTick = func(now int64, st sampler.InterfaceStats) {
			c := sampler.Counters{Time: time.Unix(0, now), Interfaces: []sampler.InterfaceFrames{{Frames: st.Frames}}}
			for _, ch := range ctl.Step(c) {
				src.SetSampleRate(ch.To)
				rates.changed(ch.To)
			}
		}
	}
	src, err := sampler.NewPcapSource(pcfg)
	if err != nil {
		return ReplayStats{}, err
	}
	clock := flow.NewManualClock(time.Unix(0, 0))
	table, err := flow.NewTable(cfg.flowConfig(), clock)
	if err != nil {
		return ReplayStats{}, err
	}
	name := opts.Interface
	if name == "" {
		name = "replay"
	}
	out, err := openOutputs(&cfg, opts.Output, (&ifNames{fixed: name}).name, true, opts.Log)
	if err != nil {
		return ReplayStats{}, err
	}
	var eng *detect.Engine
	var alerts uint64
	var werrAlerts error
	if cfg.Detect.Enabled {
		set, err := LoadRules(&cfg, opts.ConfigPath)
		if err != nil {
			out.Close(ctx)
			return ReplayStats{}, err
		}
		eng = detect.NewEngine(set, cfg.Detect.engineConfig(), func(as []flow.Alert) {
			alerts += uint64(len(as))
			if err := out.WriteAlerts(as); err != nil && werrAlerts == nil {
				werrAlerts = err
			}
		})
	}
	sendCtx, stopSending := context.WithCancel(ctx)
	sent := make(chan error, 1)
	go func() { sent <- out.Run(sendCtx) }()
	closeOut := func() error {
		stopSending()
		return errors.Join(<-sent, out.Close(ctx))
	}
	var werr error
	write := func(recs []flow.Record) {
		if opts.onRecords != nil {
			opts.onRecords(recs)
		}
		if err := out.WriteFlows(recs); err != nil && werr == nil {
			werr = err
		}
		if eng != nil {
			eng.Records(recs)
		}
	}
	feeder := table.NewFeeder()
	latest := int64(0)
	for _, path := range opts.Files {
		err := src.ReadFileFunc(ctx, path, func(batch []flow.Sample) error {
			// The table and the engine see at most replayTick of
			// capture time at once, and their clocks move between, as
			// they would live, however much time a batch spans.
			for len(batch) > 0 {
				n := 1
				for n < len(batch) && batch[n].Timestamp/replayTick == batch[0].Timestamp/replayTick {
					n++
				}
				for i := range batch[:n] {
					latest = max(latest, batch[i].Timestamp)
				}
				if opts.onSamples != nil {
					opts.onSamples(batch[:n])
				}
				feeder.Add(batch[:n])
				if eng != nil {
					eng.Samples(batch[:n])
				}
				clock.SetNano(latest)
				table.Expire(write)
				if eng != nil {
					eng.Advance(latest)
				}
				batch = batch[n:]
			}
			return cmp.Or(werr, werrAlerts)
		})
		if err != nil {
			closeOut()
			return ReplayStats{}, err
		}
	}
	table.Flush(write)
	if eng != nil {
		eng.Close(latest)
	}
	if werr == nil {
		werr = werrAlerts
	}
	if err := closeOut(); err != nil && werr == nil {
		werr = err
	}
	st, ifs := src.Stats()
	rs := ReplayStats{
		Packets: ifs.Packets, Bytes: ifs.Bytes, Samples: st.Samples, Flows: out.written(), Alerts: alerts,
		RateChanges: rates.Changes, Rate: rates.Rate, MinRate: rates.MinRate, MaxRate: rates.MaxRate,
	}
	if werr != nil {
		return rs, fmt.Errorf("writing flows: %w", werr)
	}
	return rs, nil
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
