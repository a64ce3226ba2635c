package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/cilium/ebpf/rlimit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/sampler"
)

// Version is set at build time (-ldflags "-X ...daemon.Version=...").
var Version = "dev"

// Run captures on the configured interfaces until ctx ends, then
// detaches and returns nil.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	names := cfg.Interfaces
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
		SampleRate:     cfg.SampleRate,
		Decap:          cfg.decap(),
		HeadBytes:      cfg.HeadBytes,
		RingBufferSize: cfg.RingBufferMiB << 20,
	})
	if err != nil {
		return err
	}
	defer progs.Close()
	reader, err := progs.NewReader(sampler.ReaderConfig{})
	if err != nil {
		return err
	}
	mgr := sampler.NewManager(progs, names, cfg.AttachMode, cfg.Egress, log)

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
		sampler.NewCollector(progs, mgr, reader, log),
	)
	ln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("listening for metrics on %s: %w", cfg.MetricsAddr, err)
	}
	srv := &http.Server{Handler: httpHandler(reg, mgr), ReadHeaderTimeout: 5 * time.Second}
	log.Info("serving metrics", "addr", ln.Addr().String(), "version", Version)

	out, err := openSamplesOut(cfg.SamplesOut)
	if err != nil {
		return err
	}
	defer out.Close()

	g, gctx := errgroup.WithContext(ctx)
	batches := make(chan []flow.Sample, 64)
	g.Go(func() error { return mgr.Run(gctx) })
	g.Go(func() error {
		defer close(batches)
		return reader.Run(gctx, batches)
	})
	g.Go(func() error {
		for b := range batches {
			if err := out.write(b); err != nil {
				return err
			}
			reader.Release(b)
		}
		return out.flush()
	})
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving metrics: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	if cfg.StatsEvery > 0 {
		g.Go(func() error { logStats(gctx, log, progs, reader, cfg.StatsEvery); return nil })
	}
	err = g.Wait()
	log.Info("stopped")
	return err
}

func httpHandler(reg *prometheus.Registry, mgr *sampler.Manager) http.Handler {
	mux := http.NewServeMux()
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

func logStats(ctx context.Context, log *slog.Logger, progs *sampler.Programs, reader *sampler.Reader, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := progs.Stats()
		if err != nil {
			log.Warn("reading counters", "error", err)
			continue
		}
		rs := reader.Stats()
		log.Info("capture", "packets", st.Packets(), "samples", st.Samples,
			"ringbuf_full", st.RingbufFull, "channel_drops", rs.Dropped, "rate", progs.SampleRate())
	}
}
