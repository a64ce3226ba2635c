package detect

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/metric"
)

// RuleStats are one rule's counters.
type RuleStats struct {
	Rule        string  `json:"rule"`
	Events      uint64  `json:"events"`     // events of the rule's sources evaluated
	Matches     uint64  `json:"matches"`    // events its filter kept
	Late        uint64  `json:"late"`       // events older than the window: dropped
	Evictions   uint64  `json:"evictions"`  // keys dropped because the rule's state was full
	StateFull   uint64  `json:"state_full"` // events dropped: the state was full of keys with running alerts
	Suppressed  uint64  `json:"suppressed"` // alert reports held back by the rate limits
	Starts      uint64  `json:"starts"`
	Updates     uint64  `json:"updates"`
	Ends        uint64  `json:"ends"`
	EvalSeconds float64 `json:"eval_seconds"` // time spent evaluating
	EvalShare   float64 `json:"eval_share"`   // its share of all rules' evaluation time
	ShedKeys    uint64  `json:"shed_keys"`    // keys dropped for the memory budget
	ShedEvents  uint64  `json:"shed_events"`  // events dropped: no memory for their new key
	ShedCPU     uint64  `json:"shed_cpu"`     // events not evaluated: shed by the CPU guard
	Keys        int     `json:"keys"`         // keys tracked now
	Active      int     `json:"active"`       // alerts running now
}

// Stats returns every running rule's counters.
func (e *Engine) Stats() []RuleStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pool != nil {
		return e.pool.stats()
	}
	out := make([]RuleStats, len(e.rules))
	var total uint64
	for i, rs := range e.rules {
		s := &rs.stats
		out[i] = RuleStats{
			Rule: rs.r.name, Events: e.eventsOf(rs), Matches: s.matches, Late: s.late,
			Evictions: s.evictions, StateFull: s.full, Suppressed: s.suppressed,
			Starts: s.alerts[flow.AlertStart], Updates: s.alerts[flow.AlertUpdate], Ends: s.alerts[flow.AlertEnd],
			EvalSeconds: float64(s.evalNanos) / 1e9, Keys: len(rs.keys), Active: len(rs.active),
			ShedKeys: s.shedKeys, ShedEvents: s.shedEvents, ShedCPU: s.shedCPU,
		}
		total += s.evalNanos
	}
	for i, rs := range e.rules {
		if total > 0 {
			out[i].EvalShare = float64(rs.stats.evalNanos) / float64(total)
		}
	}
	return out
}

// eventsOf is how many events of its sources a rule has evaluated: all
// the engine ran since the rule's state was made.
func (e *Engine) eventsOf(rs *ruleState) uint64 {
	var n uint64
	for src := range e.seen {
		if rs.r.sources&(1<<src) != 0 {
			n += e.seen[src] - rs.stats.seen[src]
		}
	}
	return n
}

// EngineStats are the engine's own counters.
type EngineStats struct {
	Rules        int
	Suppressed   uint64 // alert reports held back by the global limit
	ChainDropped uint64 // alerts not fed back to rules past the chain depth
	Reloads      uint64
	MemoryBytes  int64   // detection state, estimated
	MemoryLimit  int64   // detect.max_memory_mib in bytes; 0: none
	CPULoad      float64 // the engine's share of a core over the last period
	CPUShedLevel int     // rules of this severity and below are shed (0: none)
	Workers      int     // cores the engine runs on (detect.workers)
}

// EngineStats returns the engine's own counters.
func (e *Engine) EngineStats() EngineStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pool != nil {
		return e.pool.engineStats()
	}
	return EngineStats{Rules: len(e.rules), Suppressed: e.stats.suppressed, ChainDropped: e.stats.chainDropped, Reloads: e.stats.reloads,
		MemoryBytes: e.mem.used, MemoryLimit: e.mem.limit, CPULoad: e.stats.cpuLoad, CPUShedLevel: e.cpu.level, Workers: 1}
}

var (
	descEvents     = prometheus.NewDesc(metric.Name("detect_events_total"), "Events a rule evaluated.", []string{"rule"}, nil)
	descMatches    = prometheus.NewDesc(metric.Name("detect_matches_total"), "Events a rule's filter kept.", []string{"rule"}, nil)
	descLate       = prometheus.NewDesc(metric.Name("detect_late_events_total"), "Events older than a rule's window, dropped.", []string{"rule"}, nil)
	descEvictions  = prometheus.NewDesc(metric.Name("detect_evictions_total"), "Keys a rule dropped because its state was full.", []string{"rule"}, nil)
	descFull       = prometheus.NewDesc(metric.Name("detect_state_full_total"), "Events a rule dropped: its state was full of keys with running alerts.", []string{"rule"}, nil)
	descSuppressed = prometheus.NewDesc(metric.Name("detect_alerts_suppressed_total"), "Alert reports held back by the rate limits.", []string{"rule"}, nil)
	descAlerts     = prometheus.NewDesc(metric.Name("detect_alerts_total"), "Alert reports, by state.", []string{"rule", "state"}, nil)
	descEval       = prometheus.NewDesc(metric.Name("detect_eval_seconds_total"), "Time a rule spent evaluating events.", []string{"rule"}, nil)
	descKeys       = prometheus.NewDesc(metric.Name("detect_keys"), "Keys a rule tracks.", []string{"rule"}, nil)
	descActive     = prometheus.NewDesc(metric.Name("detect_active_alerts"), "Alerts running.", []string{"rule"}, nil)
	descRules      = prometheus.NewDesc(metric.Name("detect_rules"), "Rules running.", nil, nil)
	descGlobalSupp = prometheus.NewDesc(metric.Name("detect_global_suppressed_total"), "Alert reports held back by the global rate limit.", nil, nil)
	descChainDrop  = prometheus.NewDesc(metric.Name("detect_chain_dropped_total"), "Alerts not fed back to rules past the chain depth.", nil, nil)
	descListLen    = prometheus.NewDesc(metric.Name("detect_list_entries"), "Prefixes in an address list.", []string{"list"}, nil)
	descShedKeys   = prometheus.NewDesc(metric.Name("detect_shed_keys_total"), "Keys a rule dropped for the detection memory budget.", []string{"rule"}, nil)
	descShedEvents = prometheus.NewDesc(metric.Name("detect_shed_events_total"), "Events a rule did not evaluate, by reason: memory (no room for a new key) or cpu (the CPU guard).", []string{"rule", "reason"}, nil)
	descMemory     = prometheus.NewDesc(metric.Name("detect_memory_bytes"), "Detection state held, estimated.", nil, nil)
	descMemLimit   = prometheus.NewDesc(metric.Name("detect_memory_limit_bytes"), "The detection memory budget (0: none).", nil, nil)
	descCPULoad    = prometheus.NewDesc(metric.Name("detect_cpu_load"), "The engine's share of one core over the last second.", nil, nil)
	descCPUShed    = prometheus.NewDesc(metric.Name("detect_cpu_shed_level"), "Severity up to which the CPU guard sheds rules (0 none, 1 info, 2 low, 3 medium, 4 high).", nil, nil)
)

// Collector exposes an engine's counters to Prometheus at scrape time.
type Collector struct{ e *Engine }

// NewCollector returns a collector for e.
func NewCollector(e *Engine) *Collector { return &Collector{e} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEvents, descMatches, descLate, descEvictions, descFull, descSuppressed,
		descAlerts, descEval, descKeys, descActive, descRules, descGlobalSupp, descChainDrop, descListLen,
		descShedKeys, descShedEvents, descMemory, descMemLimit, descCPULoad, descCPUShed} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, s := range c.e.Stats() {
		counter(descEvents, float64(s.Events), s.Rule)
		counter(descMatches, float64(s.Matches), s.Rule)
		counter(descLate, float64(s.Late), s.Rule)
		counter(descEvictions, float64(s.Evictions), s.Rule)
		counter(descFull, float64(s.StateFull), s.Rule)
		counter(descSuppressed, float64(s.Suppressed), s.Rule)
		counter(descAlerts, float64(s.Starts), s.Rule, "start")
		counter(descAlerts, float64(s.Updates), s.Rule, "update")
		counter(descAlerts, float64(s.Ends), s.Rule, "end")
		counter(descEval, s.EvalSeconds, s.Rule)
		gauge(descKeys, float64(s.Keys), s.Rule)
		gauge(descActive, float64(s.Active), s.Rule)
		counter(descShedKeys, float64(s.ShedKeys), s.Rule)
		counter(descShedEvents, float64(s.ShedEvents), s.Rule, "memory")
		counter(descShedEvents, float64(s.ShedCPU), s.Rule, "cpu")
	}
	es := c.e.EngineStats()
	gauge(descMemory, float64(es.MemoryBytes))
	gauge(descMemLimit, float64(es.MemoryLimit))
	gauge(descCPULoad, es.CPULoad)
	gauge(descCPUShed, float64(es.CPUShedLevel))
	gauge(descRules, float64(es.Rules))
	counter(descGlobalSupp, float64(es.Suppressed))
	counter(descChainDrop, float64(es.ChainDropped))
	lists := c.e.RuleSet().Lists()
	for _, n := range lists.Names() {
		gauge(descListLen, float64(lists.Get(n).Len()), n)
	}
}
