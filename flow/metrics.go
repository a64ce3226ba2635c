package flow

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sensor/vigil/internal/metric"
)

// Collector exposes a table's counters to Prometheus, read at scrape time.
type Collector struct {
	t                                               *Table
	active, created, samples, expired, evict, slots *prometheus.Desc
}

// NewCollector returns a collector for t.
func NewCollector(t *Table) *Collector {
	return &Collector{
		t:       t,
		active:  prometheus.NewDesc(metric.Name("flows_active"), "Flows in the flow table.", nil, nil),
		created: prometheus.NewDesc(metric.Name("flows_created_total"), "Flows started in the flow table.", nil, nil),
		samples: prometheus.NewDesc(metric.Name("flow_samples_total"), "Samples accounted into flows.", nil, nil),
		expired: prometheus.NewDesc(metric.Name("flows_expired_total"), "Flow records ended, by end reason.", []string{"reason"}, nil),
		evict:   prometheus.NewDesc(metric.Name("flow_evictions_total"), "Flows ended early because the table held flows.max_flows.", nil, nil),
		slots:   prometheus.NewDesc(metric.Name("flow_table_slots"), "Flow slots allocated in the table (grows, never shrinks).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.active, c.created, c.samples, c.expired, c.evict, c.slots} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.t.Stats()
	ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(st.Active))
	ch <- prometheus.MustNewConstMetric(c.created, prometheus.CounterValue, float64(st.Created))
	ch <- prometheus.MustNewConstMetric(c.samples, prometheus.CounterValue, float64(st.Samples))
	for _, r := range EndReasons {
		ch <- prometheus.MustNewConstMetric(c.expired, prometheus.CounterValue, float64(st.ExpiredBy(r)), r.String())
	}
	ch <- prometheus.MustNewConstMetric(c.evict, prometheus.CounterValue, float64(st.Evictions))
	ch <- prometheus.MustNewConstMetric(c.slots, prometheus.GaugeValue, float64(st.Capacity))
}
