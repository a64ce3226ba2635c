package detect

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/vigil-sensor/vigil/internal/config"
)

// Config is the detect section: which rules run, their thresholds, the
// address lists they use and how many alerts may leave. docs/CONFIG.md
// documents every key.
type Config struct {
	Enabled             bool                          `yaml:"enabled"`
	BuiltinRules        bool                          `yaml:"builtin_rules"` // the embedded rule pack
	Rules               []string                      `yaml:"rules"`         // more rule files
	Disable             []string                      `yaml:"disable"`       // rule names
	Thresholds          map[string]map[string]float64 `yaml:"thresholds"`    // rule -> measure -> limit
	Lists               []ListConfig                  `yaml:"lists"`
	HostGroups          []HostGroupConfig             `yaml:"host_groups"`
	AlertsPerSecond     float64                       `yaml:"alerts_per_second"`
	RuleAlertsPerSecond float64                       `yaml:"rule_alerts_per_second"`
	MaxKeys             int                           `yaml:"max_keys"`           // per rule, unless the rule says
	ListPollInterval    config.Duration               `yaml:"list_poll_interval"` // how often list files are checked
	// MaxMemoryMiB bounds detection state (0: no bound); MaxCPU is the
	// share of one core the engine may take before it sheds rules by
	// severity (0: no guard). See docs/DETECTION.md, Self-protection.
	MaxMemoryMiB int     `yaml:"max_memory_mib"`
	MaxCPU       float64 `yaml:"max_cpu"`
	// Workers is how many cores the engine runs on, its keys partitioned
	// by hash (1: one goroutine). Fixed at start.
	Workers int `yaml:"workers"`
}

// ListConfig is an address list: a file (plain, csv or spamhaus) or
// inline entries.
type ListConfig struct {
	Name    string   `yaml:"name"`
	Path    string   `yaml:"path"`
	Format  string   `yaml:"format"`
	Column  int      `yaml:"column"`
	Entries []string `yaml:"entries"`
}

// HostGroupConfig gives the hosts of some prefixes their own thresholds.
type HostGroupConfig struct {
	Name       string                        `yaml:"name"`
	Prefixes   []string                      `yaml:"prefixes"`
	Thresholds map[string]map[string]float64 `yaml:"thresholds"`
}

// DefaultConfig runs the built-in pack with the default alert limits.
func DefaultConfig() Config {
	return Config{
		Enabled:             true,
		BuiltinRules:        true,
		AlertsPerSecond:     DefaultAlertsPerSecond,
		RuleAlertsPerSecond: DefaultRuleAlertsPerSecond,
		ListPollInterval:    config.Duration{D: 5 * time.Second},
		MaxMemoryMiB:        DefaultMaxMemoryMiB,
		MaxCPU:              DefaultMaxCPU,
		Workers:             1,
	}
}

// Self-protection defaults: 1 GiB of detection state, 90% of a core.
const (
	DefaultMaxMemoryMiB = 1024
	DefaultMaxCPU       = 0.9
	maxMemoryMiB        = 16 << 20 // 16 TiB
)

// Validate reports every problem, at paths relative to the section.
// Whether the rules, measures and lists named exist is Load's to say:
// it needs the rule files.
func (c *Config) Validate() config.Problems {
	var ps config.Problems
	for i, r := range c.Rules {
		if r == "" {
			ps.Add(fmt.Sprintf("rules[%d]", i), "empty path")
		}
	}
	rate := func(field string, v float64) {
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0):
			ps.Add(field, "%v is not a number of alerts per second", v)
		case v < 0:
			ps.Add(field, "must not be negative")
		}
	}
	rate("alerts_per_second", c.AlertsPerSecond)
	rate("rule_alerts_per_second", c.RuleAlertsPerSecond)
	if c.MaxKeys < 0 {
		ps.Add("max_keys", "must not be negative")
	}
	if c.MaxMemoryMiB < 0 || c.MaxMemoryMiB > maxMemoryMiB {
		ps.Add("max_memory_mib", "%d is not between 0 (no bound) and %d", c.MaxMemoryMiB, maxMemoryMiB)
	}
	if c.Workers < 0 || c.Workers > MaxWorkers {
		ps.Add("workers", "%d is not between 1 and %d (0: 1)", c.Workers, MaxWorkers)
	}
	if math.IsNaN(c.MaxCPU) || c.MaxCPU < 0 || c.MaxCPU > 1 {
		ps.Add("max_cpu", "%v is not a share of one core between 0 (no guard) and 1", c.MaxCPU)
	}
	switch d := c.ListPollInterval; {
	case d.Invalid() != "":
		ps.Add("list_poll_interval", "%q is not a duration (examples: 5s, 1m)", d.Invalid())
	case d.D < 0:
		ps.Add("list_poll_interval", "must not be negative")
	}
	checkThresholds(&ps, "thresholds", c.Thresholds)
	seen := map[string]bool{}
	for i, l := range c.Lists {
		at := fmt.Sprintf("lists[%d]", i)
		switch {
		case l.Name == "":
			ps.Add(at+".name", "a list needs a name")
		case seen[l.Name]:
			ps.Add(at+".name", "list %q is defined twice", l.Name)
		}
		seen[l.Name] = true
		switch {
		case l.Path == "" && len(l.Entries) == 0:
			ps.Add(at, "a list needs a path or entries")
		case l.Path != "" && len(l.Entries) > 0:
			ps.Add(at, "a list has a path or entries, not both")
		}
		switch l.Format {
		case "", ListFormatPlain, ListFormatCSV, ListFormatSpamhaus:
		default:
			ps.Add(at+".format", "%q is not plain, csv or spamhaus", l.Format)
		}
		if l.Column < 0 {
			ps.Add(at+".column", "must not be negative")
		}
	}
	for i, g := range c.HostGroups {
		at := fmt.Sprintf("host_groups[%d]", i)
		if g.Name == "" {
			ps.Add(at+".name", "a host group needs a name")
		}
		if len(g.Prefixes) == 0 {
			ps.Add(at+".prefixes", "a host group needs prefixes")
		}
		for j, p := range g.Prefixes {
			if _, err := ParsePrefix(p); err != nil {
				ps.Add(fmt.Sprintf("%s.prefixes[%d]", at, j), "%q is not an address or prefix", p)
			}
		}
		checkThresholds(&ps, at+".thresholds", g.Thresholds)
	}
	return ps
}

// checkThresholds rejects limits that are not finite numbers at least
// zero: a NaN compares false with everything and would silently switch
// a rule off, an infinite one does the same, openly.
func checkThresholds(ps *config.Problems, at string, th map[string]map[string]float64) {
	for _, rule := range sortedKeys(th) {
		for _, m := range sortedKeys(th[rule]) {
			v := th[rule][m]
			field := at + "." + rule + "." + m
			switch {
			case math.IsNaN(v) || math.IsInf(v, 0):
				ps.Add(field, "%v is not a finite threshold", v)
			case v < 0:
				ps.Add(field, "must not be negative, got %v", v)
			}
		}
	}
}

// ParsePrefix parses a prefix or a bare address (a /32 or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// Options is what Load needs from the section; extra rule files
// (--rules) are appended to Rules by the caller.
func (c *Config) Options() Options {
	o := Options{
		Builtin:    c.BuiltinRules,
		Files:      c.Rules,
		Disable:    c.Disable,
		Thresholds: c.Thresholds,
		MaxKeys:    c.MaxKeys,
	}
	for _, l := range c.Lists {
		o.Lists = append(o.Lists, ListSpec(l))
	}
	for _, g := range c.HostGroups {
		hg := HostGroup{Name: g.Name, Thresholds: g.Thresholds}
		for _, p := range g.Prefixes {
			if pfx, err := ParsePrefix(p); err == nil {
				hg.Prefixes = append(hg.Prefixes, pfx)
			}
		}
		o.HostGroups = append(o.HostGroups, hg)
	}
	return o
}

// EngineConfig is the engine's share of the section: the alert limits.
func (c *Config) EngineConfig() EngineConfig {
	return EngineConfig{AlertsPerSecond: c.AlertsPerSecond, RuleAlertsPerSecond: c.RuleAlertsPerSecond,
		MaxMemory: int64(c.MaxMemoryMiB) << 20, MaxCPU: c.MaxCPU, Workers: c.Workers}
}
