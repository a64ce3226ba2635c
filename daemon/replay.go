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
	Config     Config // flows.* and capture.decap_* apply
	SampleRate uint32 // 1-in-N
	Seed       uint64 // the sampler's seed: the same seed samples the same packets
	Output     string // JSON lines: a path or "-"
	Interface  string // the interface name written in records
	ConfigPath string // where Config came from, to place errors in detect options
	Log        *slog.Logger
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
	src, err := sampler.NewPcapSource(sampler.PcapConfig{
		SampleRate: opts.SampleRate,
		Seed:       opts.Seed,
		Decap:      cfg.decap(),
	})
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
	rs := ReplayStats{Packets: ifs.Packets, Bytes: ifs.Bytes, Samples: st.Samples, Flows: out.written(), Alerts: alerts}
	if werr != nil {
		return rs, fmt.Errorf("writing flows: %w", werr)
	}
	return rs, nil
}
