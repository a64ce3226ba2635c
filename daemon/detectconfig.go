package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/goccy/go-yaml/parser"

	"github.com/vigil-sensor/vigil/detect"
	"github.com/vigil-sensor/vigil/internal/yamlerr"
)

// DetectConfig is the detection engine: which rules run, their
// thresholds, the address lists they use and how many alerts may leave.
type DetectConfig struct {
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
	ListPollInterval    Duration                      `yaml:"list_poll_interval"` // how often list files are checked
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

func defaultDetect() DetectConfig {
	return DetectConfig{
		Enabled:             true,
		BuiltinRules:        true,
		AlertsPerSecond:     detect.DefaultAlertsPerSecond,
		RuleAlertsPerSecond: detect.DefaultRuleAlertsPerSecond,
		ListPollInterval:    Duration{D: 5 * time.Second},
	}
}

func (c *DetectConfig) validate(bad func(field, format string, args ...any)) {
	for i, r := range c.Rules {
		if r == "" {
			bad(fmt.Sprintf("detect.rules[%d]", i), "empty path")
		}
	}
	if c.AlertsPerSecond < 0 {
		bad("detect.alerts_per_second", "must not be negative")
	}
	if c.RuleAlertsPerSecond < 0 {
		bad("detect.rule_alerts_per_second", "must not be negative")
	}
	if c.MaxKeys < 0 {
		bad("detect.max_keys", "must not be negative")
	}
	switch d := c.ListPollInterval; {
	case d.Invalid() != "":
		bad("detect.list_poll_interval", "%q is not a duration (examples: 5s, 1m)", d.Invalid())
	case d.D < 0:
		bad("detect.list_poll_interval", "must not be negative")
	}
	seen := map[string]bool{}
	for i, l := range c.Lists {
		at := fmt.Sprintf("detect.lists[%d]", i)
		switch {
		case l.Name == "":
			bad(at+".name", "a list needs a name")
		case seen[l.Name]:
			bad(at+".name", "list %q is defined twice", l.Name)
		}
		seen[l.Name] = true
		switch {
		case l.Path == "" && len(l.Entries) == 0:
			bad(at, "a list needs a path or entries")
		case l.Path != "" && len(l.Entries) > 0:
			bad(at, "a list has a path or entries, not both")
		}
		switch l.Format {
		case "", detect.ListFormatPlain, detect.ListFormatCSV, detect.ListFormatSpamhaus:
		default:
			bad(at+".format", "%q is not plain, csv or spamhaus", l.Format)
		}
	}
	for i, g := range c.HostGroups {
		at := fmt.Sprintf("detect.host_groups[%d]", i)
		if g.Name == "" {
			bad(at+".name", "a host group needs a name")
		}
		if len(g.Prefixes) == 0 {
			bad(at+".prefixes", "a host group needs prefixes")
		}
		for j, p := range g.Prefixes {
			if _, err := parsePrefix(p); err != nil {
				bad(fmt.Sprintf("%s.prefixes[%d]", at, j), "%q is not an address or prefix", p)
			}
		}
	}
}

// parsePrefix parses a prefix or a bare address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// detectOptions turns the configuration into the engine's options;
// extra rule files (--rules) come after the configured ones.
func (c *DetectConfig) options() detect.Options {
	o := detect.Options{
		Builtin:    c.BuiltinRules,
		Files:      c.Rules,
		Disable:    c.Disable,
		Thresholds: c.Thresholds,
		MaxKeys:    c.MaxKeys,
	}
	for _, l := range c.Lists {
		o.Lists = append(o.Lists, detect.ListSpec{Name: l.Name, Path: l.Path, Format: l.Format, Column: l.Column, Entries: l.Entries})
	}
	for _, g := range c.HostGroups {
		hg := detect.HostGroup{Name: g.Name, Thresholds: g.Thresholds}
		for _, p := range g.Prefixes {
			if pfx, err := parsePrefix(p); err == nil {
				hg.Prefixes = append(hg.Prefixes, pfx)
			}
		}
		o.HostGroups = append(o.HostGroups, hg)
	}
	return o
}

func (c *DetectConfig) engineConfig() detect.EngineConfig {
	return detect.EngineConfig{AlertsPerSecond: c.AlertsPerSecond, RuleAlertsPerSecond: c.RuleAlertsPerSecond}
}

// LoadRules loads the rules the configuration names. A problem with a
// detect option (an unknown rule in detect.disable, say) is reported as
// a ConfigError at its place in configPath when there is one.
func LoadRules(cfg *Config, configPath string) (*detect.RuleSet, error) {
	set, err := detect.Load(cfg.Detect.options())
	if err == nil {
		return set, nil
	}
	var errs []error
	for _, e := range unjoin(err) {
		var oe *detect.OptionError
		if !errors.As(e, &oe) {
			errs = append(errs, e)
			continue
		}
		ce := &ConfigError{File: configPath, Field: "detect." + oe.Field, Msg: oe.Msg}
		if configPath == "" {
			ce.File = "configuration"
		} else if src, rerr := os.ReadFile(configPath); rerr == nil {
			if file, perr := parser.ParseBytes(src, 0); perr == nil {
				if n := yamlerr.NodeAt(file, ce.Field); n != nil {
					pos := n.GetToken().Position
					ce.Line, ce.Column = pos.Line, pos.Column
				}
			}
		}
		errs = append(errs, ce)
	}
	return nil, errors.Join(errs...)
}

// unjoin flattens errors.Join trees.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}
