package daemon

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sensor/vigil/detect"
	"github.com/vigil-sensor/vigil/internal/metric"
)

// detector is the daemon's side of detection: it keeps the lists'
// files watched, swaps rule sets on reload and serves the rules; the
// pipeline runs the engine.
type detector struct {
	eng     *detect.Engine
	log     *slog.Logger
	dropped func() uint64 // samples not evaluated: the engine was behind

	mu        sync.Mutex
	stopWatch context.CancelFunc
	poll      time.Duration
}

// newDetector serves the pipeline's engine; nil when detection is off.
func newDetector(p *pipeline, cfg *detect.Config, log *slog.Logger) *detector {
	if p.eng == nil {
		return nil
	}
	return &detector{eng: p.eng, log: log, dropped: p.Dropped, poll: cfg.ListPollInterval.D}
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

// replace installs a new rule set and limits (reload) and watches the
// new lists.
func (dt *detector) replace(ctx context.Context, set *detect.RuleSet, cfg *detect.Config) {
	dt.eng.Replace(set)
	dt.eng.SetConfig(cfg.EngineConfig())
	dt.mu.Lock()
	dt.poll = cfg.ListPollInterval.D
	dt.mu.Unlock()
	dt.watch(ctx)
	dt.log.Info("detection rules reloaded", "rules", len(set.Names()))
}

// collector exposes the engine's metrics and the daemon's drops.
func (dt *detector) collectors() []prometheus.Collector {
	return []prometheus.Collector{detect.NewCollector(dt.eng), prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: metric.Name("detect_dropped_samples_total"),
		Help: "Samples the detection engine did not evaluate because it was behind the capture.",
	}, func() float64 { return float64(dt.dropped()) })}
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
