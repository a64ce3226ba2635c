package sampler

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/metric"
)

// Collector exposes the capture path to Prometheus. It reads the per-CPU
// BPF maps when Prometheus scrapes, not in a loop of its own.
type Collector struct {
	progs  *Programs
	mgr    *Manager // may be nil
	reader *Reader  // may be nil
	log    *slog.Logger

	packets, bytes, samples, drops, parse  *prometheus.Desc
	mode, failures, rate, wakeups, batches *prometheus.Desc
	clockSteps, linkWatch                  *prometheus.Desc
}

// NewCollector returns a collector over the programs, the interfaces the
// manager holds and the reader's counters.
func NewCollector(progs *Programs, mgr *Manager, reader *Reader, log *slog.Logger) *Collector {
	d := prometheus.NewDesc
	return &Collector{
		progs: progs, mgr: mgr, reader: reader, log: log,
		packets: d(metric.Name("packets_total"), "Packets seen by the capture program, counted exactly.",
			[]string{"interface", "direction"}, nil),
		bytes: d(metric.Name("bytes_total"), "Bytes seen by the capture program, counted exactly.",
			[]string{"interface", "direction"}, nil),
		samples: d(metric.Name("samples_total"), "Samples submitted to the ring buffer.", nil, nil),
		drops: d(metric.Name("sample_drops_total"), "Samples lost, by reason.",
			[]string{"reason"}, nil),
		parse: d(metric.Name("parse_total"), "Packets by parse outcome.",
			[]string{"outcome"}, nil),
		mode: d(metric.Name("attach_mode"), "1 for the mode each interface is attached in.",
			[]string{"interface", "mode"}, nil),
		failures: d(metric.Name("attach_failures_total"), "Failed attach attempts.",
			[]string{"interface"}, nil),
		rate: d(metric.Name("sampling_rate"), "The 1-in-N sampling rate in force.", nil, nil),
		wakeups: d(metric.Name("ringbuf_wakeups_total"), "Reader wakeups forced by the ring buffer backlog.",
			nil, nil),
		batches: d(metric.Name("sample_batches_total"), "Sample batches handed downstream.", nil, nil),
		linkWatch: d(metric.Name("link_watch_errors_total"),
			"What following link updates reported, by reason; none of them stops the capture.", []string{"reason"}, nil),
		clockSteps: d(metric.Name("clock_steps_back_total"),
			"Times the wall clock was stepped back past the live clock, which does not follow it back.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.packets, c.bytes, c.samples, c.drops, c.parse,
		c.mode, c.failures, c.rate, c.wakeups, c.batches, c.clockSteps, c.linkWatch} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	st, err := c.progs.Stats()
	if err != nil {
		c.log.Warn("reading BPF counters", "error", err)
		ch <- prometheus.NewInvalidMetric(c.samples, err)
		return
	}
	counter(c.samples, st.Samples)
	counter(c.drops, st.RingbufFull, "ringbuf_full")
	counter(c.drops, st.IfMapFull, "no_interface_slot")
	counter(c.wakeups, st.Wakeups)
	counter(c.clockSteps, ClockStepsBack())
	for i, v := range st.Outcomes {
		counter(c.parse, v, flow.Outcome(i).String())
	}
	ch <- prometheus.MustNewConstMetric(c.rate, prometheus.GaugeValue, float64(c.progs.SampleRate()))

	if c.reader != nil {
		rs := c.reader.Stats()
		counter(c.drops, rs.Dropped, "channel_full")
		counter(c.drops, rs.BadRecords, "bad_record")
		counter(c.batches, rs.Batches)
	}
	if c.mgr == nil {
		return
	}
	for _, a := range c.mgr.Attachments() {
		ch <- prometheus.MustNewConstMetric(c.mode, prometheus.GaugeValue, 1, a.Name, string(a.Mode))
		dirs := []flow.Direction{flow.Ingress}
		if a.Egress {
			dirs = append(dirs, flow.Egress)
		}
		for _, dir := range dirs {
			is, err := c.progs.InterfaceStats(uint32(a.Ifindex), dir)
			if err != nil {
				c.log.Warn("reading interface counters", "interface", a.Name, "error", err)
				continue
			}
			counter(c.packets, is.Packets, a.Name, dir.String())
			counter(c.bytes, is.Bytes, a.Name, dir.String())
		}
	}
	for reason, n := range c.mgr.LinkWatchErrors() {
		counter(c.linkWatch, n, reason)
	}
	for name, n := range c.mgr.AttachFailures() {
		counter(c.failures, n, name)
	}
}
