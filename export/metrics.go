package export

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sensor/vigil/internal/metric"
)

// Collector exposes every sink's counters to Prometheus, labelled by sink.
type Collector struct {
	sinks func() []*Sink
	now   func() time.Time
}

// NewCollector returns a collector over the sinks the function returns.
func NewCollector(sinks func() []*Sink) *Collector {
	return &Collector{sinks: sinks, now: time.Now}
}

var (
	descSpooled     = prometheus.NewDesc(metric.Name("export_records_spooled_total"), "Records written to the sink's spool.", []string{"sink"}, nil)
	descSent        = prometheus.NewDesc(metric.Name("export_records_sent_total"), "Records accepted by the upstream.", []string{"sink"}, nil)
	descFailures    = prometheus.NewDesc(metric.Name("export_send_failures_total"), "Sends that failed (the records stay in the spool).", []string{"sink"}, nil)
	descRetries     = prometheus.NewDesc(metric.Name("export_send_retries_total"), "Sends retried after a backoff.", []string{"sink"}, nil)
	descDropped     = prometheus.NewDesc(metric.Name("export_records_dropped_total"), "Records given up, by reason: spool_full (budget reached, oldest dropped), corrupt (checksum failed on disk), oversize (larger than a spool segment), write_error (never reached the disk: full or failing), rejected (the upstream refused it for good).", []string{"sink", "reason"}, nil)
	descRedelivered = prometheus.NewDesc(metric.Name("export_records_redelivered_total"), "Records sent again after a restart that the upstream may have had already (at-least-once duplicates).", []string{"sink"}, nil)
	descCorrupt     = prometheus.NewDesc(metric.Name("export_spool_corrupt_segments_total"), "Spool segments found corrupt and skipped.", []string{"sink"}, nil)
	descSpoolErrors = prometheus.NewDesc(metric.Name("export_spool_write_errors_total"), "Appends to the spool that failed (disk errors).", []string{"sink"}, nil)
	descBytes       = prometheus.NewDesc(metric.Name("export_spool_bytes"), "Bytes in the sink's spool on disk.", []string{"sink"}, nil)
	descPending     = prometheus.NewDesc(metric.Name("export_spool_records"), "Records waiting in the sink's spool.", []string{"sink"}, nil)
	descOldest      = prometheus.NewDesc(metric.Name("export_oldest_unsent_age_seconds"), "Age of the oldest record not yet accepted upstream; 0 when the spool is empty.", []string{"sink"}, nil)
	descUp          = prometheus.NewDesc(metric.Name("export_up"), "1 when the sink's last send worked.", []string{"sink"}, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSpooled, descSent, descFailures, descRetries, descDropped, descRedelivered, descCorrupt, descSpoolErrors, descBytes, descPending, descOldest, descUp} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	for _, s := range c.sinks() {
		st := s.Stats()
		n := s.Name()
		counter := func(d *prometheus.Desc, v uint64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{n}, labels...)...)
		}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, n)
		}
		counter(descSpooled, st.Spool.Appended)
		counter(descSent, st.Sent)
		counter(descFailures, st.Failures)
		counter(descRetries, st.Retries)
		counter(descDropped, st.Spool.DroppedFull, "spool_full")
		counter(descDropped, st.Spool.DroppedCorrupt, "corrupt")
		counter(descDropped, st.Spool.DroppedOversize, "oversize")
		counter(descDropped, st.Spool.DroppedWrite, "write_error")
		counter(descDropped, st.Rejected, "rejected")
		counter(descRedelivered, st.Spool.Redelivered)
		counter(descCorrupt, st.Spool.CorruptSegments)
		counter(descSpoolErrors, st.SpoolErrors)
		gauge(descBytes, float64(st.Spool.Bytes))
		gauge(descPending, float64(st.Pending))
		age := 0.0
		if !st.Spool.Oldest.IsZero() {
			age = max(now.Sub(st.Spool.Oldest).Seconds(), 0)
		}
		gauge(descOldest, age)
		up := 0.0
		if st.Up {
			up = 1
		}
		gauge(descUp, up)
	}
}
