package sampler

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/metric"
)

// Sampling runs the adaptive rate controller and the self-check over
// the capture path's counters, with the wall clock.
type Sampling struct {
	progs  *Programs
	mgr    *Manager
	drops  func() uint64 // samples lost downstream of the ring buffer
	check  *SelfCheck
	log    *slog.Logger
	ifname func(uint32) string

	mu         sync.Mutex
	capture    Config
	ctl        *Controller    // nil with fixed sampling
	ifs        map[string]int // attached interfaces when the controller was configured
	adjust     map[uint32]*[2]uint64
	checks     map[uint32]CheckResult
	perSecond  float64 // samples per second submitted to the ring buffer
	lastCount  uint64
	lastTime   time.Time
	ctlStats   ControllerStats
	setErrLast time.Time
}

// NewSampling configures sampling on loaded programs. drops counts the
// samples lost downstream of the ring buffer (the controller backs off
// on them); check is the self-check every delivered batch is observed by.
func NewSampling(cfg Config, progs *Programs, mgr *Manager, drops func() uint64, check *SelfCheck, ifname func(uint32) string, log *slog.Logger) (*Sampling, error) {
	s := &Sampling{
		progs: progs, mgr: mgr, drops: drops, ifname: ifname, log: log,
		check:  check,
		adjust: map[uint32]*[2]uint64{},
		checks: map[uint32]CheckResult{},
	}
	if err := s.Configure(cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// Configure switches between fixed and adaptive sampling and sets the
// budget and bounds; on reload too.
func (s *Sampling) Configure(cfg Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.capture = cfg
	if cfg.Sampling == SamplingFixed {
		if s.ctl != nil {
			s.ctl = nil
			for _, a := range s.mgr.Attachments() {
				s.setRate(uint32(a.Ifindex), 0)
			}
		}
		return s.progs.SetSampleRate(cfg.SampleRate)
	}
	s.ifs = attachedIndexes(s.mgr)
	cc := cfg.ControllerConfig(s.ifs)
	if s.ctl != nil {
		return s.ctl.SetConfig(cc)
	}
	ctl, err := NewController(cc, s.progs.SampleRate())
	if err != nil {
		return err
	}
	s.ctl = ctl
	return nil
}

func attachedIndexes(mgr *Manager) map[string]int {
	m := map[string]int{}
	for _, a := range mgr.Attachments() {
		m[a.Name] = a.Ifindex
	}
	return m
}

// Run steps the controller and the self-check until ctx ends.
func (s *Sampling) Run(ctx context.Context) {
	t := time.NewTicker(SamplingTick)
	defer t.Stop()
	lastCheck := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.step(now, now.Sub(lastCheck) >= checkEvery)
			if now.Sub(lastCheck) >= checkEvery {
				lastCheck = now
			}
		}
	}
}

func (s *Sampling) step(now time.Time, check bool) {
	atts := s.mgr.Attachments()
	counters := Counters{Time: now}
	exact := make(map[uint32]uint64, len(atts))
	for _, a := range atts {
		dirs := []flow.Direction{flow.Ingress}
		if a.Egress {
			dirs = append(dirs, flow.Egress)
		}
		var frames, packets uint64
		for _, dir := range dirs {
			is, err := s.progs.InterfaceStats(uint32(a.Ifindex), dir)
			if err != nil {
				s.log.Warn("reading interface counters", "interface", a.Name, "error", err)
				continue
			}
			frames += is.Frames
			packets += is.Packets
		}
		counters.Interfaces = append(counters.Interfaces, InterfaceFrames{Ifindex: uint32(a.Ifindex), Frames: frames})
		exact[uint32(a.Ifindex)] = packets
	}
	st, err := s.progs.Stats()
	if err != nil {
		s.log.Warn("reading counters", "error", err)
		return
	}
	counters.Drops = st.RingbufFull + s.drops()

	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.lastTime.IsZero() {
		if dt := now.Sub(s.lastTime).Seconds(); dt > 0 && st.Samples >= s.lastCount {
			s.perSecond = float64(st.Samples-s.lastCount) / dt
		}
	}
	s.lastCount, s.lastTime = st.Samples, now
	if s.ctl != nil {
		if ifs := attachedIndexes(s.mgr); !maps.Equal(ifs, s.ifs) {
			for name, i := range s.ifs {
				if ifs[name] != i {
					s.ctl.Forget(uint32(i))
					s.setRate(uint32(i), 0)
				}
			}
			s.ifs = ifs
			if err := s.ctl.SetConfig(s.capture.ControllerConfig(ifs)); err != nil {
				s.log.Error("configuring the sampling controller", "error", err)
			}
		}
		s.apply(s.ctl.Step(counters))
		s.ctlStats = s.ctl.Stats()
	}
	if check {
		for _, r := range s.check.Check(now, exact) {
			s.checks[r.Ifindex] = r
		}
		for i := range s.checks {
			if _, ok := exact[i]; !ok {
				delete(s.checks, i)
			}
		}
	}
}

// apply sets the controller's rates. An interface without a knob of its
// own (ifindex past MaxRateIfindex) moves the global rate, to
// the largest such interface wants.
func (s *Sampling) apply(changes []RateChange) {
	var global uint32
	for _, ch := range changes {
		a := s.adjust[ch.Ifindex]
		if a == nil {
			a = new([2]uint64)
			s.adjust[ch.Ifindex] = a
		}
		if ch.To > ch.From {
			a[0]++
		} else {
			a[1]++
		}
		if ch.Ifindex >= MaxRateIfindex {
			global = max(global, ch.To)
			continue
		}
		s.setRate(ch.Ifindex, ch.To)
		s.log.Debug("sampling rate", "interface", s.ifname(ch.Ifindex), "from", ch.From, "to", ch.To)
	}
	if global > 0 {
		if err := s.progs.SetSampleRate(global); err != nil {
			s.log.Error("setting the sample rate", "error", err)
		}
	}
}

func (s *Sampling) setRate(ifindex, n uint32) {
	if ifindex >= MaxRateIfindex {
		return
	}
	if err := s.progs.SetInterfaceRate(ifindex, n); err != nil && time.Since(s.setErrLast) > 10*time.Second {
		s.setErrLast = time.Now()
		s.log.Error("setting an interface's sample rate", "error", err)
	}
}

// Rates is the rate in force on every attached interface, for the log.
func (s *Sampling) Rates() map[string]uint32 {
	m := map[string]uint32{}
	for _, a := range s.mgr.Attachments() {
		m[a.Name] = s.progs.InterfaceRate(uint32(a.Ifindex))
	}
	return m
}

// samplingCollector exposes the controller and the self-check.
type samplingCollector struct {
	s                                     *Sampling
	rate, budget, backoff, perSecond      *prometheus.Desc
	adjustments, estimated, relErr, bound *prometheus.Desc
}

// Collector exposes the controller and the self-check to Prometheus.
func (s *Sampling) Collector() prometheus.Collector {
	d := prometheus.NewDesc
	return &samplingCollector{
		s: s,
		rate: d(metric.Name("interface_sampling_rate"), "The 1-in-N sampling rate in force on each interface.",
			[]string{"interface"}, nil),
		budget: d(metric.Name("sample_budget"), "The adaptive sampling budget in samples per second (0: fixed sampling).",
			nil, nil),
		backoff: d(metric.Name("sample_budget_backoff"), "The fraction of the budget in force after drops (1: all of it).",
			nil, nil),
		perSecond: d(metric.Name("samples_per_second"), "Samples submitted to the ring buffer per second, over the last 100 ms.",
			nil, nil),
		adjustments: d(metric.Name("sampling_adjustments_total"), "Rate changes made by the adaptive sampling controller.",
			[]string{"interface", "direction"}, nil),
		estimated: d(metric.Name("estimated_packets_total"), "Packets the delivered samples stand for (each weighed by its rate).",
			[]string{"interface"}, nil),
		relErr: d(metric.Name("estimate_relative_error"), "Self-check: (estimated - counted) / counted packets over the last 10 s.",
			[]string{"interface"}, nil),
		bound: d(metric.Name("estimate_error_bound"), "Self-check: the relative half-width of the estimate's 95% interval over the last 10 s.",
			[]string{"interface"}, nil),
	}
}

func (c *samplingCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rate, c.budget, c.backoff, c.perSecond, c.adjustments, c.estimated, c.relErr, c.bound} {
		ch <- d
	}
}

func (c *samplingCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, a := range s.mgr.Attachments() {
		gauge(c.rate, float64(s.progs.InterfaceRate(uint32(a.Ifindex))), a.Name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	budget, backoff := 0.0, 1.0
	if s.ctl != nil {
		budget, backoff = float64(s.capture.Adaptive.Budget), s.ctlStats.Backoff
	}
	gauge(c.budget, budget)
	gauge(c.backoff, backoff)
	gauge(c.perSecond, s.perSecond)
	for i, a := range s.adjust {
		name := s.ifname(i)
		ch <- prometheus.MustNewConstMetric(c.adjustments, prometheus.CounterValue, float64(a[0]), name, "up")
		ch <- prometheus.MustNewConstMetric(c.adjustments, prometheus.CounterValue, float64(a[1]), name, "down")
	}
	for i, r := range s.checks {
		name := s.ifname(i)
		ch <- prometheus.MustNewConstMetric(c.estimated, prometheus.CounterValue, r.Total.Value, name)
		gauge(c.relErr, r.RelError, name)
		gauge(c.bound, r.Bound, name)
	}
}
