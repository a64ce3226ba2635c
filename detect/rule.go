package detect

import (
	"fmt"

	"github.com/goccy/go-yaml/ast"

	"github.com/vigil-sensor/vigil/internal/yamlerr"
)

// RuleFile is the YAML document of a rule file: a list of rules.
// docs/DETECTION.md documents every key.
type RuleFile struct {
	Rules []RuleSpec `yaml:"rules"`
}

// RuleSpec is one rule as written in YAML.
type RuleSpec struct {
	Name        string                 `yaml:"name"`
	Description string                 `yaml:"description"`
	Severity    string                 `yaml:"severity"`   // info, low, medium, high, critical
	Techniques  []string               `yaml:"techniques"` // MITRE ATT&CK IDs
	Source      string                 `yaml:"source"`     // samples (default), flows or alerts
	Filter      string                 `yaml:"filter"`     // an expression over event fields
	GroupBy     []string               `yaml:"group_by"`   // fields; dst_addr/24 groups by prefix
	Window      Duration               `yaml:"window"`     // sliding window length
	Slots       int                    `yaml:"slots"`      // time slots per window
	Measures    map[string]MeasureSpec `yaml:"measures"`
	Thresholds  map[string]float64     `yaml:"thresholds"` // measure -> minimum: the rule fires when any is reached
	All         map[string]float64     `yaml:"all"`        // measure -> minimum: every one must be reached too
	When        string                 `yaml:"when"`       // extra condition over the measures
	MinSamples  uint64                 `yaml:"min_samples"`
	Burst       *BurstSpec             `yaml:"burst"`        // also judge rates over a short sub-window
	ServicePort string                 `yaml:"service_port"` // src_port or dst_port: the key field that names the service
	Evidence    []string               `yaml:"evidence"`     // src_addr, dst_addr, src_port, dst_port
	UpdateEvery Duration               `yaml:"update_every"`
	Quiet       Duration               `yaml:"quiet"` // end the alert after this long below threshold
	MaxKeys     int                    `yaml:"max_keys"`
	Baseline    *BaselineSpec          `yaml:"baseline"`
	Sequence    *SequenceSpec          `yaml:"sequence"`
	Absence     *AbsenceSpec           `yaml:"absence"`
	Disabled    bool                   `yaml:"disabled"`
}

// MeasureSpec is one aggregate of a rule: exactly one of Sum, Rate,
// Mean, Spread, Distinct, DistinctOnce and Ratio, over the events its
// own Filter (if any) keeps.
type MeasureSpec struct {
	Sum    string `yaml:"sum"`    // packets, bytes, bits, samples or events, summed over the window
	Rate   string `yaml:"rate"`   // the same, per second over the window
	Mean   string `yaml:"mean"`   // the same, per event
	Spread string `yaml:"spread"` // coefficient of variation (sd / mean) of the same over the events
	// Reverse counts (sum or rate) the key's traffic the other way: the
	// events that, with source and destination swapped, have the key,
	// and that pass Filter as they are (the rule's own filter does not
	// apply to them). A victim's own requests, say.
	Reverse  bool   `yaml:"reverse"`
	Distinct string `yaml:"distinct"` // a field: distinct values seen (HyperLogLog) over the window
	// DistinctOnce is Distinct for values each seen about once (scans,
	// spoofed sources): the distinct values sampled times the sampling
	// rate estimates how many there were.
	DistinctOnce string   `yaml:"distinct_once"`
	Ratio        []string `yaml:"ratio"` // [a, b]: measure a over measure b
	Filter       string   `yaml:"filter"`
}

// BurstSpec makes a threshold rule also judge its rate measures over
// the newest Window of its window (a few slots), so a burst much shorter
// than the window is not averaged away. A burst counts when its rate
// passes the thresholds even at the lower end of its 99.87% confidence
// interval, with at least MinSamples sampled events in it.
type BurstSpec struct {
	Window     Duration `yaml:"window"`
	MinSamples uint64   `yaml:"min_samples"` // default: the rule's min_samples
}

// BaselineSpec makes a rule compare a measure with its own moving mean
// and variance per key, one value per window.
type BaselineSpec struct {
	Measure    string  `yaml:"measure"`
	Warmup     int     `yaml:"warmup"`     // windows to learn before alerting
	Alpha      float64 `yaml:"alpha"`      // weight of the newest window in the moving mean
	Deviations float64 `yaml:"deviations"` // standard deviations above the mean to alert
}

// SequenceSpec makes a rule fire when its steps happen in order for the
// same key, all within Within of the first.
type SequenceSpec struct {
	Within Duration   `yaml:"within"`
	Steps  []StepSpec `yaml:"steps"`
}

// StepSpec is one step of a sequence.
type StepSpec struct {
	Source string `yaml:"source"`
	Filter string `yaml:"filter"`
}

// AbsenceSpec makes a rule fire when a key that has been seen for at
// least Learn is not seen for After.
type AbsenceSpec struct {
	After Duration `yaml:"after"`
	Learn Duration `yaml:"learn"`
}

// Duration is a time.Duration written as "1s" or "1m30s". A value that
// does not parse is reported with its line.
type Duration = yamlerr.Duration

// RuleError is a problem in a rule file, located by file, line, column
// and field (rules[2].thresholds.pps).
type RuleError = yamlerr.Error

// fieldError is a validation problem at a dotted path.
type fieldError struct {
	path, msg string
}

// ParseRules parses and validates a rule file. name is used in errors;
// every error is a *RuleError naming the file, line and field (several
// are joined with errors.Join). lists resolves in_list() names.
func ParseRules(name string, src []byte, lists ListSet) ([]*rule, error) {
	file, src, err := yamlerr.Parse(name, src)
	if err != nil {
		return nil, err
	}
	var rf RuleFile
	if err := yamlerr.Unmarshal(name, file, src, &rf); err != nil {
		return nil, err
	}
	var fes []fieldError
	var rules []*rule
	seen := map[string]int{}
	for i := range rf.Rules {
		rs := &rf.Rules[i]
		at := fmt.Sprintf("rules[%d]", i)
		if j, dup := seen[rs.Name]; dup && rs.Name != "" {
			fes = append(fes, fieldError{at + ".name", fmt.Sprintf("rule %q is already defined by rules[%d]", rs.Name, j)})
			continue
		}
		seen[rs.Name] = i
		r, errs := compileRule(rs, lists)
		for _, fe := range errs {
			fes = append(fes, fieldError{at + "." + fe.path, fe.msg})
		}
		if len(errs) == 0 {
			r.file = name
			rules = append(rules, r)
		}
	}
	if len(rf.Rules) == 0 {
		fes = append(fes, fieldError{"rules", "no rules in the file"})
	}
	if len(fes) > 0 {
		return nil, locate(name, file, fes)
	}
	return rules, nil
}

// locate turns field errors into RuleErrors with their place, in file order.
func locate(name string, file *ast.File, fes []fieldError) error {
	ps := make([]yamlerr.Problem, len(fes))
	for i, fe := range fes {
		ps[i] = yamlerr.Problem{Field: fe.path, Msg: fe.msg}
	}
	return yamlerr.Locate(name, file, ps)
}

// ruleNameOK: names are snake_case identifiers, as metrics labels and
// alert consumers expect.
func ruleNameOK(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
