package daemon

import (
	"errors"

	"github.com/goccy/go-yaml/parser"

	"github.com/vigil-sensor/vigil/detect"
	"github.com/vigil-sensor/vigil/internal/yamlerr"
)

// LoadRules loads the rules the configuration names. A problem with a
// detect option (an unknown rule in detect.disable, say) is reported as
// a ConfigError at its place in configPath when there is one.
func LoadRules(cfg *Config, configPath string) (*detect.RuleSet, error) {
	set, err := detect.Load(cfg.Detect.Options())
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
		} else if src, rerr := yamlerr.ReadFile(configPath); rerr == nil {
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
