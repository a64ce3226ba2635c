package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
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

// Live cadence: the pipeline ticks with the wall clock every tickEvery
// (alerts update and end while no sample arrives) and expires flows
// every expireEvery.
const (
	tickEvery   = 100 * time.Millisecond
	expireEvery = time.Second
)

// Run captures on the configured interfaces and writes flows until ctx
// ends. Then it stops intake, ends every active flow with reason
// shutdown, flushes the output, detaches, and returns nil.
func Run(ctx context.Context, opts RunOptions) error {
	cfg, log := opts.Config, opts.Log
	for _, w := range cfg.Warnings() {
		log.Warn("configuration warning", "warning", w)
	}
	if err := cfg.check(); err != nil {
		return err
	}
	token, err := cfg.HTTP.LoadReloadToken()
	if err != nil {
		return err
	}
	c, err := openCapture(&cfg, log)
	if err != nil {
		return err
	}
	defer c.progs.Close()
	ifn := &sampler.IfNames{}
	check := sampler.NewSelfCheck(sampler.CheckWindow)
	p, err := newPipeline(&cfg, opts.ConfigPath, cfg.Flows.Output, ifn.Name, pipelineOptions{
		Lossy: true, ExpireEvery: expireEvery, Release: c.reader.Release, Observe: check.Observe, Log: log,
	})
	if err != nil {
		return err
	}
	lost := func() uint64 { return c.reader.Stats().Dropped + p.Dropped() }
	smp, err := sampler.NewSampling(cfg.Capture, c.progs, c.mgr, lost, check, ifn.Name, log)
	if err != nil {
		p.Close(sampler.Now())
		return fmt.Errorf("configuring sampling: %w", err)
	}
	d := &daemon{cfg: cfg, opts: opts, log: log, c: c, p: p, smp: smp, dt: newDetector(p, &cfg.Detect, log)}
	d.guard = newReloadGuard(http.HandlerFunc(d.serveReload), token)
	srv, err := d.listen()
	if err != nil {
		p.Close(sampler.Now())
		return err
	}
	// Start-up has loaded the programs, opened the ring buffer, the
	// files and the port: from here on the daemon needs only to attach,
	// detach and read (runtimeCaps).
	if err := dropCapabilities(log); err != nil {
		p.Close(time.Now().UnixNano())
		return errors.Join(err, srv.stop())
	}
	// The manager and the HTTP server outlive the group: the sensor
	// detaches, and /metrics goes down, only after the last flows and
	// alerts are written.
	mgrCtx, stopMgr := context.WithCancel(context.Background())
	mgrErr := make(chan error, 1)
	go func() { mgrErr <- c.mgr.Run(mgrCtx) }()
	err = d.run(ctx, mgrErr, srv.done)

	// Intake has stopped: end every flow, then every running alert.
	if cerr := p.Close(sampler.Now()); cerr != nil {
		log.Error("closing outputs", "error", cerr)
	}
	log.Info("flows flushed", "records", p.out.written(), "dropped", p.out.dropped(), "flows_created", p.table.Stats().Created)
	err = errors.Join(err, srv.stop())
	stopMgr()
	if merr := <-mgrErr; err == nil {
		err = merr
	}
	log.Info("stopped")
	return err
}

// capture is the kernel side: the programs, the ring buffer's reader
// and the attachments.
type capture struct {
	progs  *sampler.Programs
	reader *sampler.Reader
	mgr    *sampler.Manager
}

func openCapture(cfg *Config, log *slog.Logger) (*capture, error) {
	names := cfg.Capture.Interfaces
	if len(names) == 0 {
		var err error
		if names, err = sampler.DefaultRouteInterfaces(); err != nil {
			return nil, err
		}
		if len(names) == 0 {
			return nil, errors.New("no interface carries a default route; name one with --interface")
		}
		log.Info("capturing on the interfaces carrying default routes", "interfaces", names)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("removing memlock rlimit: %w", err)
	}
	progs, err := sampler.LoadPrograms(sampler.LoadOptions{
		SampleRate:     cfg.Capture.SampleRate,
		Decap:          cfg.Capture.Decap(),
		HeadBytes:      cfg.Capture.HeadBytes,
		RingBufferSize: cfg.Capture.RingBufferMiB << 20,
	})
	if err != nil {
		return nil, err
	}
	reader, err := progs.NewReader(sampler.ReaderConfig{})
	if err != nil {
		progs.Close()
		return nil, err
	}
	mode, _ := sampler.ParseMode(cfg.Capture.AttachMode)
	return &capture{progs: progs, reader: reader, mgr: sampler.NewManager(progs, names, mode, cfg.Capture.Egress, log)}, nil
}

// run drives the pipeline from the ring buffer and the wall clock, with
// the sampling loop, the sinks, reloads and the stats log, until ctx
// ends or a part fails.
func (d *daemon) run(ctx context.Context, mgrErr, srvErr chan error) error {
	g, gctx := errgroup.WithContext(ctx)
	d.ctx = gctx
	batches := make(chan []flow.Sample, 64)
	g.Go(func() error {
		defer close(batches)
		return d.c.reader.Run(gctx, batches)
	})
	g.Go(func() error {
		for b := range batches {
			d.p.Submit(b)
		}
		return nil
	})
	g.Go(func() error { every(gctx, tickEvery, func(time.Time) { d.p.Tick(sampler.Now()) }); return nil })
	g.Go(func() error { d.smp.Run(gctx); return nil })
	g.Go(func() error { return d.p.Run(gctx) })
	if d.dt != nil {
		d.dt.watch(gctx)
	}
	g.Go(func() error {
		return failed(gctx, mgrErr, func(err error) error { return cmp.Or(err, errors.New("interface manager stopped")) })
	})
	g.Go(func() error {
		return failed(gctx, srvErr, func(err error) error { return fmt.Errorf("serving metrics: %w", err) })
	})
	if d.opts.Reload != nil {
		g.Go(func() error {
			for {
				select {
				case <-gctx.Done():
					return nil
				case <-d.opts.Reload:
					d.reload()
				}
			}
		})
	}
	if t := d.cfg.Log.StatsInterval.D; t > 0 {
		g.Go(func() error { every(gctx, t, func(time.Time) { d.logStats() }); return nil })
	}
	return g.Wait()
}

// failed waits for a part that runs apart from the group to stop before
// ctx ends; its error goes back for whoever stops it last.
func failed(ctx context.Context, ch chan error, wrap func(error) error) error {
	select {
	case err := <-ch:
		ch <- err
		return wrap(err)
	case <-ctx.Done():
		return nil
	}
}

// every calls fn every period until ctx ends.
func every(ctx context.Context, period time.Duration, fn func(now time.Time)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			fn(now)
		}
	}
}

// daemon is the running state that reload and the collectors share.
type daemon struct {
	opts RunOptions
	log  *slog.Logger
	c    *capture
	p    *pipeline
	dt   *detector // nil when detection is off
	smp  *sampler.Sampling
	// guard stands before POST /-/reload: CSRF, token, rate.
	guard *reloadGuard
	ctx   context.Context // the daemon's, for what a reload starts

	reloadMu       sync.Mutex // one reload at a time (SIGHUP, HTTP)
	mu             sync.Mutex // guards cfg and the reload counters
	cfg            Config
	reloads        uint64
	reloadFailures uint64
	lastReloadOK   bool
	lastReloadAt   time.Time
}

// server is the HTTP endpoint: metrics, health, rules and reload.
type server struct {
	srv  *http.Server
	done chan error
}

// listen serves the metrics of every part and the API on http.listen.
func (d *daemon) listen() (*server, error) {
	reg := prometheus.NewRegistry()
	if d.dt != nil {
		reg.MustRegister(d.dt.collectors()...)
	}
	reg.MustRegister(
		d.guard.refused,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
		sampler.NewCollector(d.c.progs, d.c.mgr, d.c.reader, d.log),
		flow.NewCollector(d.p.table),
		newDaemonCollector(d),
		d.smp.Collector(),
		export.NewCollector(d.p.out.sinkList),
	)
	ln, err := net.Listen("tcp", d.cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening for metrics on %s: %w", d.cfg.HTTP.Listen, err)
	}
	d.log.Info("serving metrics", "addr", ln.Addr().String(), "version", Version)
	s := &server{srv: &http.Server{Handler: d.httpHandler(reg), ReadHeaderTimeout: 5 * time.Second}, done: make(chan error, 1)}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// stop shuts the server down; nil unless it had failed.
func (s *server) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	serr := s.srv.Shutdown(ctx)
	if err := <-s.done; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving metrics: %w", err)
	}
	return serr
}

func (d *daemon) httpHandler(reg *prometheus.Registry) http.Handler {
	mgr := d.c.mgr
	mux := http.NewServeMux()
	mux.Handle("POST /-/reload", d.guard)
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

// serveReload is POST /-/reload once the guard has let it through.
func (d *daemon) serveReload(w http.ResponseWriter, _ *http.Request) {
	if err := d.reload(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintln(w, "reloaded")
}

func (d *daemon) logStats() {
	st, err := d.c.progs.Stats()
	if err != nil {
		d.log.Warn("reading counters", "error", err)
		return
	}
	rs := d.c.reader.Stats()
	ft := d.p.table.Stats()
	d.log.Info("capture", "packets", st.Packets(), "samples", st.Samples,
		"ringbuf_full", st.RingbufFull, "channel_drops", rs.Dropped, "rates", d.smp.Rates(),
		"flows_active", ft.Active, "flows_written", d.p.out.written())
}
