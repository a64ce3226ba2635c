package daemon

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sensor/vigil/detect"
	"github.com/vigil-sensor/vigil/flow"
)

// advanceEvery is how often the live engine's clock moves with the wall
// clock, so alerts update and end while no sample arrives.
const advanceEvery = 100 * time.Millisecond

// detector runs the detection engine for the daemon: it writes alerts to
// the outputs, keeps the lists' files watched and swaps rule sets on
// reload.
type detector struct {
	eng     *detect.Engine
	out     *outputs
	log     *slog.Logger
	dropped atomic.Uint64 // samples not evaluated: the engine was behind

	mu        sync.Mutex
	stopWatch context.CancelFunc
	poll      time.Duration
	alerts    atomic.Uint64
}

// newDetector loads the configured rules; nil when detection is off.
func newDetector(cfg *Config, configPath string, out *outputs, log *slog.Logger) (*detector, error) {
	if !cfg.Detect.Enabled {
		return nil, nil
	}
	set, err := LoadRules(cfg, configPath)
	if err != nil {
		return nil, err
	}
	dt := &detector{out: out, log: log, poll: cfg.Detect.ListPollInterval.D}
	dt.eng = detect.NewEngine(set, cfg.Detect.engineConfig(), dt.emit)
	log.Info("detection rules loaded", "rules", len(set.Names()), "lists", set.Lists().Names())
	return dt, nil
}

// emit writes alerts to the outputs at once: an alert should not wait
// for the next flush of flows.
func (dt *detector) emit(alerts []flow.Alert) {
	dt.alerts.Add(uint64(len(alerts)))
	if err := dt.out.WriteAlerts(alerts); err != nil {
		dt.log.Error("writing alerts", "error", err)
	}
	if err := dt.out.Flush(); err != nil {
		dt.log.Warn("flushing alerts", "error", err)
	}
	for i := range alerts {
		a := &alerts[i]
		if a.State == flow.AlertUpdate {
			continue
		}
		dt.log.Info("alert", "rule", a.Rule, "state", a.State.String(), "severity", a.Severity.String(),
			"key", keyString(a.Key), "summary", a.Summary)
	}
}

func keyString(kvs []flow.KeyValue) string {
	var b strings.Builder
	for i, kv := range kvs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(kv.Name + "=" + kv.Value)
	}
	return b.String()
}

// watch reloads the running lists' files when they change, until ctx
// ends; a rule reload restarts it on the new lists.
func (dt *detector) watch(ctx context.Context) {
	dt.mu.Lock()
	defer dt.mu.Unlock()
	if dt.stopWatch != nil {
		dt.stopWatch()
	}
	wctx, cancel := context.WithCancel(ctx)
	dt.stopWatch = cancel
	lists := dt.eng.RuleSet().Lists()
	go lists.Watch(wctx, dt.poll, dt.log, nil)
}

// advance moves the engine's clock with the wall clock until ctx ends.
func (dt *detector) advance(ctx context.Context) {
	t := time.NewTicker(advanceEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			dt.eng.Advance(now.UnixNano())
		}
	}
}

// replace installs a new rule set and limits (reload) and watches the
// new lists.
func (dt *detector) replace(ctx context.Context, set *detect.RuleSet, cfg *DetectConfig) {
	dt.eng.Replace(set)
	dt.eng.SetConfig(cfg.engineConfig())
	dt.mu.Lock()
	dt.poll = cfg.ListPollInterval.D
	dt.mu.Unlock()
	dt.watch(ctx)
	dt.log.Info("detection rules reloaded", "rules", len(set.Names()))
}

// collector exposes the engine's metrics and the daemon's drops.
func (dt *detector) collectors() []prometheus.Collector {
	return []prometheus.Collector{detect.NewCollector(dt.eng), prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "vigil_detect_dropped_samples_total",
		Help: "Samples the detection engine did not evaluate because it was behind the capture.",
	}, func() float64 { return float64(dt.dropped.Load()) })}
}

// rulesHandler serves GET /api/v1/rules: the running rules with their
// thresholds and counters.
func (dt *detector) rulesHandler(w http.ResponseWriter, _ *http.Request) {
	type ruleView struct {
		detect.RuleInfo
		Stats detect.RuleStats `json:"stats"`
		// What the rule promises at the sampling rate in force.
		Guarantees []detect.Guarantee `json:"guarantees"`
	}
	stats := map[string]detect.RuleStats{}
	for _, s := range dt.eng.Stats() {
		stats[s.Rule] = s
	}
	gs := dt.eng.Guarantees()
	var out []ruleView
	for _, ri := range dt.eng.RuleSet().Rules() {
		g := gs[ri.Name]
		if g == nil {
			g = []detect.Guarantee{}
		}
		out = append(out, ruleView{RuleInfo: ri, Stats: stats[ri.Name], Guarantees: g})
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}
