package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/rlimit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/sampler"
)

// Version is set at build time (-ldflags "-X ...daemon.Version=...").
var Version = "dev"

// RunOptions is what `vigil run` hands the daemon.
type RunOptions struct {
	Config     Config
	ConfigPath string        // file to re-read on Reload; "" if none
	Override   func(*Config) // command-line flags, applied again after every reload
	Log        *slog.Logger
	Level      *slog.LevelVar  // the logger's level, changed on reload
	Reload     <-chan struct{} // SIGHUP
}

// expireEvery is how often the live table is checked for due flows.
const expireEvery = time.Second

// Run captures on the configured interfaces and writes flows until ctx
// ends. Then it stops intake, ends every active flow with reason
// shutdown, flushes the output, detaches, and returns nil.
func Run(ctx context.Context, opts RunOptions) error {
	cfg, log := opts.Config, opts.Log
	if fes := cfg.Validate(); len(fes) > 0 {
		errs := make([]error, len(fes))
		for i, fe := range fes {
			errs[i] = fe
		}
		return fmt.Errorf("invalid configuration: %w", errors.Join(errs...))
	}
	names := cfg.Capture.Interfaces
	if len(names) == 0 {
		var err error
		if names, err = sampler.DefaultRouteInterfaces(); err != nil {
			return err
		}
		if len(names) == 0 {
			return errors.New("no interface carries a default route; name one with --interface")
		}
		log.Info("capturing on the interfaces carrying default routes", "interfaces", names)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("removing memlock rlimit: %w", err)
	}
	progs, err := sampler.LoadPrograms(sampler.LoadOptions{
		SampleRate:     cfg.Capture.SampleRate,
		Decap:          cfg.decap(),
		HeadBytes:      cfg.Capture.HeadBytes,
		RingBufferSize: cfg.Capture.RingBufferMiB << 20,
	})
	if err != nil {
		return err
	}
	defer progs.Close()
	reader, err := progs.NewReader(sampler.ReaderConfig{})
	if err != nil {
		return err
	}
	mode, _ := sampler.ParseMode(cfg.Capture.AttachMode)
	mgr := sampler.NewManager(progs, names, mode, cfg.Capture.Egress, log)
	table, err := flow.NewTable(cfg.flowConfig(), flow.SystemClock{})
	if err != nil {
		return err
	}
	ifn := &ifNames{}
	out, err := openOutputs(&cfg, cfg.Flows.Output, ifn.name, true, log)
	if err != nil {
		return err
	}
	samples, err := openSamplesOut(cfg.Capture.SamplesOut)
	if err != nil {
		out.Close(context.Background())
		return err
	}
	defer samples.Close()
	dt, err := newDetector(&cfg, opts.ConfigPath, out, log)
	if err != nil {
		out.Close(context.Background())
		return err
	}

	lost := func() uint64 {
		n := reader.Stats().Dropped
		if dt != nil {
			n += dt.dropped.Load()
		}
		return n
	}
	smp, err := newSampling(cfg.Capture, progs, mgr, lost, ifn.name, log)
	if err != nil {
		out.Close(context.Background())
		return fmt.Errorf("configuring sampling: %w", err)
	}

	d := &daemon{cfg: cfg, opts: opts, log: log, progs: progs, mgr: mgr, table: table, out: out, dt: dt, smp: smp}
	reg := prometheus.NewRegistry()
	if dt != nil {
		reg.MustRegister(dt.collectors()...)
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
		sampler.NewCollector(progs, mgr, reader, log),
		flow.NewCollector(table),
		newDaemonCollector(d),
		newSamplingCollector(smp),
		export.NewCollector(out.sinkList),
	)
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		out.Close(context.Background())
		return fmt.Errorf("listening for metrics on %s: %w", cfg.HTTP.Listen, err)
	}
	srv := &http.Server{Handler: d.httpHandler(reg), ReadHeaderTimeout: 5 * time.Second}
	log.Info("serving metrics", "addr", ln.Addr().String(), "version", Version)

	// The manager runs apart from the group: it detaches only after the
	// last flows are written.
	mgrCtx, stopMgr := context.WithCancel(context.Background())
	defer stopMgr()
	mgrErr := make(chan error, 1)
	go func() { mgrErr <- mgr.Run(mgrCtx) }()

	g, gctx := errgroup.WithContext(ctx)
	d.ctx = gctx
	batches := make(chan []flow.Sample, 64)
	g.Go(func() error {
		defer close(batches)
		return reader.Run(gctx, batches)
	})
	// Every worker sees every batch, in order, and accounts its own part
	// of the table: two cores feed it and each flow's samples stay in
	// order. The detection engine sees every batch too, unless it is
	// behind: then it misses the batch and counts it, rather than slow
	// the capture. The last one done with a batch gives it back.
	type shared struct {
		batch []flow.Sample
		left  atomic.Int32
	}
	parts := make([]chan *shared, cfg.Flows.Workers)
	for i := range parts {
		parts[i] = make(chan *shared, 16)
	}
	var detectIn chan *shared
	consumers := int32(len(parts))
	if dt != nil {
		detectIn = make(chan *shared, 64)
		consumers++
	}
	var workers sync.WaitGroup
	workers.Add(1 + len(parts))
	g.Go(func() error {
		defer workers.Done()
		defer func() {
			for _, p := range parts {
				close(p)
			}
			if detectIn != nil {
				close(detectIn)
			}
		}()
		for b := range batches {
			smp.check.Observe(b)
			if err := samples.write(b); err != nil {
				log.Warn("writing samples", "error", err)
			}
			sb := &shared{batch: b}
			sb.left.Store(consumers)
			for _, p := range parts {
				p <- sb
			}
			if detectIn != nil {
				select {
				case detectIn <- sb:
				default:
					dt.dropped.Add(uint64(len(b)))
					if sb.left.Add(-1) == 0 {
						reader.Release(b)
					}
				}
			}
		}
		return nil
	})
	if dt != nil {
		workers.Add(1)
		g.Go(func() error {
			defer workers.Done()
			for sb := range detectIn {
				dt.eng.Samples(sb.batch)
				if sb.left.Add(-1) == 0 {
					reader.Release(sb.batch)
				}
			}
			return nil
		})
		dt.watch(gctx)
		g.Go(func() error { dt.advance(gctx); return nil })
	}
	for i, in := range parts {
		g.Go(func() error {
			defer workers.Done()
			f := table.NewPartFeeder(i, len(parts))
			for sb := range in {
				f.Add(sb.batch)
				if sb.left.Add(-1) == 0 {
					reader.Release(sb.batch)
				}
			}
			return nil
		})
	}
	g.Go(func() error { d.expireLoop(gctx); return nil })
	g.Go(func() error { smp.run(gctx); return nil })
	g.Go(func() error { return out.Run(gctx) })
	g.Go(func() error {
		select {
		case err := <-mgrErr:
			mgrErr <- err
			if err == nil {
				err = errors.New("interface manager stopped")
			}
			return err
		case <-gctx.Done():
			return nil
		}
	})
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving metrics: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		workers.Wait() // keep /metrics up until intake has drained
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	if opts.Reload != nil {
		g.Go(func() error {
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-opts.Reload:
					d.reload()
				}
			}
		})
	}
	if every := cfg.Log.StatsInterval.D; every > 0 {
		g.Go(func() error { d.logStats(gctx, reader, every); return nil })
	}
	err = g.Wait()

	// Intake has stopped and the workers have drained: end every flow,
	// then every running alert.
	table.Flush(d.write)
	if dt != nil {
		dt.eng.Close(time.Now().UnixNano())
	}
	st := table.Stats()
	if cerr := out.Close(context.Background()); cerr != nil {
		log.Error("closing outputs", "error", cerr)
	}
	log.Info("flows flushed", "records", out.written(), "dropped", out.dropped(), "flows_created", st.Created)
	stopMgr()
	if merr := <-mgrErr; err == nil {
		err = merr
	}
	log.Info("stopped")
	return err
}

// daemon is the running state that reload and the collectors share.
type daemon struct {
	opts  RunOptions
	log   *slog.Logger
	progs *sampler.Programs
	mgr   *sampler.Manager
	table *flow.Table
	out   *outputs
	dt    *detector // nil when detection is off
	smp   *sampling
	ctx   context.Context // the daemon's, for what a reload starts

	reloadMu       sync.Mutex // one reload at a time (SIGHUP, HTTP)
	mu             sync.Mutex // guards cfg and the reload counters
	cfg            Config
	reloads        uint64
	reloadFailures uint64
	lastReloadOK   bool
	lastReloadAt   time.Time
	writeErrLogged time.Time
}

// write sends expired records to the output and the detection engine.
func (d *daemon) write(recs []flow.Record) {
	if d.dt != nil {
		d.dt.eng.Records(recs)
	}
	if err := d.out.WriteFlows(recs); err != nil {
		d.mu.Lock()
		now := time.Now()
		logIt := now.Sub(d.writeErrLogged) > 10*time.Second
		if logIt {
			d.writeErrLogged = now
		}
		d.mu.Unlock()
		if logIt {
			d.log.Error("writing flows; records are dropped and counted", "error", err)
		}
	}
}

func (d *daemon) expireLoop(ctx context.Context) {
	t := time.NewTicker(expireEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.table.Expire(d.write)
		if err := d.out.Flush(); err != nil {
			d.log.Warn("flushing flows", "error", err)
		}
	}
}

func (d *daemon) httpHandler(reg *prometheus.Registry) http.Handler {
	mgr := d.mgr
	mux := http.NewServeMux()
	mux.HandleFunc("POST /-/reload", func(w http.ResponseWriter, _ *http.Request) {
		if err := d.reload(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "reloaded")
	})
	if d.dt != nil {
		mux.HandleFunc("GET /api/v1/rules", d.dt.rulesHandler)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if len(mgr.Attachments()) == 0 {
			http.Error(w, "not attached to any interface yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

func (d *daemon) logStats(ctx context.Context, reader *sampler.Reader, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := d.progs.Stats()
		if err != nil {
			d.log.Warn("reading counters", "error", err)
			continue
		}
		rs := reader.Stats()
		ft := d.table.Stats()
		d.log.Info("capture", "packets", st.Packets(), "samples", st.Samples,
			"ringbuf_full", st.RingbufFull, "channel_drops", rs.Dropped, "rates", d.smp.rates(),
			"flows_active", ft.Active, "flows_written", d.out.written())
	}
}
