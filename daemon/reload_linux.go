package daemon

import (
	"reflect"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-sensor/vigil/detect"
	"github.com/vigil-sensor/vigil/internal/metric"
)

// reload re-reads the configuration file and the rule files (SIGHUP,
// POST /-/reload), applies what can change at run time, and reopens the
// flows output. A bad file is reported and the running configuration
// and rules kept.
func (d *daemon) reload() error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.log.Info("reloading configuration", "file", d.opts.ConfigPath)
	if err := d.p.out.Reopen(); err != nil {
		d.log.Error("reopening flows output", "error", err)
	}
	d.mu.Lock()
	next := d.cfg
	d.mu.Unlock()
	if d.opts.ConfigPath != "" {
		var err error
		if next, err = LoadConfig(d.opts.ConfigPath); err != nil {
			d.log.Error("configuration reload failed; keeping the running configuration", "error", err)
			d.recordReload(false)
			return err
		}
		if d.opts.Override != nil {
			d.opts.Override(&next)
		}
		if err := next.Validate().Err(); err != nil {
			d.log.Error("configuration reload failed; keeping the running configuration", "error", err)
			d.recordReload(false)
			return err
		}
	}
	var rules *detect.RuleSet
	if d.dt != nil && next.Detect.Enabled {
		var err error
		if rules, err = LoadRules(&next, d.opts.ConfigPath); err != nil {
			d.log.Error("rules reload failed; keeping the running configuration and rules", "error", err)
			d.recordReload(false)
			return err
		}
	}
	d.mu.Lock()
	cur := d.cfg
	d.mu.Unlock()
	// The token file is re-read, to rotate the token; its path, like
	// the rest of the http section, changes only with a restart.
	token, err := cur.HTTP.LoadReloadToken()
	if err != nil {
		d.log.Error("reload failed; keeping the running configuration and reload token", "error", err)
		d.recordReload(false)
		return err
	}

	running, applied := d.apply(cur, next)
	if rules != nil {
		running.Detect = next.Detect
		running.Detect.Enabled = cur.Detect.Enabled
		applied = append(applied, "detect")
	}
	restart := restartNeeded(cur, next)
	d.mu.Lock()
	d.cfg = running
	d.mu.Unlock()
	if rules != nil {
		d.dt.replace(d.ctx, rules, &next.Detect)
	}
	if d.guard != nil {
		d.guard.setToken(token)
	}
	d.recordReload(true)
	if len(restart) > 0 {
		d.log.Warn("configuration changes that need a restart were not applied", "fields", restart)
	}
	d.log.Info("configuration reloaded", "applied", applied)
	return nil
}

// apply makes the running daemon follow next where cur differs and it
// can change at run time. It returns the configuration now in force
// (cur with what was applied) and the fields it changed.
func (d *daemon) apply(cur, next Config) (Config, []string) {
	running := cur
	var applied []string
	nc, cc := next.Capture, cur.Capture
	if nc.Sampling != cc.Sampling || nc.SampleRate != cc.SampleRate || !reflect.DeepEqual(nc.Adaptive, cc.Adaptive) {
		if err := d.smp.Configure(nc); err != nil {
			d.log.Error("configuring sampling", "error", err)
		} else {
			running.Capture.Sampling, running.Capture.SampleRate, running.Capture.Adaptive = nc.Sampling, nc.SampleRate, nc.Adaptive
			applied = append(applied, "capture.sampling", "capture.sample_rate", "capture.adaptive")
		}
	}
	if !slices.Equal(next.Capture.Interfaces, cur.Capture.Interfaces) {
		if len(next.Capture.Interfaces) > 0 {
			d.c.mgr.SetInterfaces(next.Capture.Interfaces)
			running.Capture.Interfaces = next.Capture.Interfaces
			applied = append(applied, "capture.interfaces")
		} else {
			d.log.Warn("capture.interfaces emptied; keeping the interfaces in use (restart to pick the default-route interfaces)")
		}
	}
	if next.Flows.IdleTimeout != cur.Flows.IdleTimeout || next.Flows.ActiveTimeout != cur.Flows.ActiveTimeout {
		d.p.table.SetTimeouts(next.Flows.IdleTimeout.D, next.Flows.ActiveTimeout.D)
		running.Flows.IdleTimeout, running.Flows.ActiveTimeout = next.Flows.IdleTimeout, next.Flows.ActiveTimeout
		applied = append(applied, "flows.idle_timeout", "flows.active_timeout")
	}
	if next.Log.Level != cur.Log.Level && d.opts.Level != nil {
		d.opts.Level.Set(next.logLevel())
		running.Log.Level = next.Log.Level
		applied = append(applied, "log.level")
	}
	return running, applied
}

// restartNeeded lists the fields that differ and cannot change while
// the daemon runs.
func restartNeeded(cur, next Config) []string {
	var f []string
	add := func(changed bool, name string) {
		if changed {
			f = append(f, name)
		}
	}
	add(next.Capture.AttachMode != cur.Capture.AttachMode, "capture.attach_mode")
	add(next.Capture.Egress != cur.Capture.Egress, "capture.egress")
	add(next.Capture.DecapVXLAN != cur.Capture.DecapVXLAN, "capture.decap_vxlan")
	add(next.Capture.DecapGENEVE != cur.Capture.DecapGENEVE, "capture.decap_geneve")
	add(next.Capture.HeadBytes != cur.Capture.HeadBytes, "capture.head_bytes")
	add(next.Capture.RingBufferMiB != cur.Capture.RingBufferMiB, "capture.ring_buffer_mib")
	add(next.Capture.SamplesOut != cur.Capture.SamplesOut, "capture.samples_out")
	add(next.Flows.MaxFlows != cur.Flows.MaxFlows, "flows.max_flows")
	add(next.Flows.Workers != cur.Flows.Workers, "flows.workers")
	add(next.Detect.Enabled != cur.Detect.Enabled, "detect.enabled")
	add(next.Detect.Workers != cur.Detect.Workers, "detect.workers")
	add(next.Flows.Output != cur.Flows.Output, "flows.output")
	add(!reflect.DeepEqual(next.Export, cur.Export), "export")
	add(next.HTTP.Listen != cur.HTTP.Listen, "http.listen")
	add(next.HTTP.ReloadTokenFile != cur.HTTP.ReloadTokenFile, "http.reload_token_file")
	add(next.Log.Format != cur.Log.Format, "log.format")
	add(next.Log.StatsInterval != cur.Log.StatsInterval, "log.stats_interval")
	return f
}

func (d *daemon) recordReload(ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ok {
		d.reloads++
	} else {
		d.reloadFailures++
	}
	d.lastReloadOK = ok
	d.lastReloadAt = time.Now()
}

// daemonCollector exposes the daemon's own counters.
type daemonCollector struct {
	d                                           *daemon
	reloads, failures, lastOK, written, dropped *prometheus.Desc
}

func newDaemonCollector(d *daemon) *daemonCollector {
	return &daemonCollector{
		d:        d,
		reloads:  prometheus.NewDesc(metric.Name("config_reloads_total"), "Successful configuration reloads.", nil, nil),
		failures: prometheus.NewDesc(metric.Name("config_reload_failures_total"), "Configuration reloads refused (bad file); the running configuration was kept.", nil, nil),
		lastOK:   prometheus.NewDesc(metric.Name("config_last_reload_success"), "1 if the last configuration reload succeeded (or none was tried), 0 if it failed.", nil, nil),
		written:  prometheus.NewDesc(metric.Name("flow_records_written_total"), "Flow records written to the flows output.", nil, nil),
		dropped:  prometheus.NewDesc(metric.Name("flow_records_dropped_total"), "Flow records lost because the flows output failed.", nil, nil),
	}
}

func (c *daemonCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.reloads, c.failures, c.lastOK, c.written, c.dropped} {
		ch <- d
	}
}

func (c *daemonCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	d.mu.Lock()
	reloads, failures, ok := d.reloads, d.reloadFailures, d.lastReloadOK || d.lastReloadAt.IsZero()
	d.mu.Unlock()
	last := 0.0
	if ok {
		last = 1
	}
	ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(reloads))
	ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(failures))
	ch <- prometheus.MustNewConstMetric(c.lastOK, prometheus.GaugeValue, last)
	ch <- prometheus.MustNewConstMetric(c.written, prometheus.CounterValue, float64(d.p.out.written()))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(d.p.out.dropped()))
}
