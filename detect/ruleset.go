package detect

import (
	"cmp"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path"
	"slices"

	"github.com/gaissmai/bart"

	"github.com/vigil-sensor/vigil/internal/yamlerr"
)

// pack is the built-in rule pack, active by default.
//
//go:embed pack/*.yaml
var pack embed.FS

// Options is what the operator's configuration says about rules.
type Options struct {
	Builtin    bool     // load the embedded pack
	Files      []string // more rule files; a rule named like an earlier one replaces it
	Disable    []string // rule names not to run
	Thresholds map[string]map[string]float64
	Lists      []ListSpec
	HostGroups []HostGroup
	MaxKeys    int // per rule, when the rule sets none; 0: 100,000
}

// HostGroup is a set of prefixes with thresholds of their own, as DDoS
// tools let operators give a web farm other limits than an office. A
// key's first address picks its group by longest-prefix match.
type HostGroup struct {
	Name       string
	Prefixes   []netip.Prefix
	Thresholds map[string]map[string]float64 // rule -> measure -> limit
}

// BuiltinLists are the lists the built-in pack uses; each is empty
// unless the configuration gives it: "intel" (threat intelligence),
// "watched" (hosts whose silence is an alert) and "allow" (addresses no
// rule looks at).
var BuiltinLists = []string{"allow", "intel", "watched"}

// AllowList is the list whose addresses, as source or destination, no
// rule sees.
const AllowList = "allow"

func emptyList(name string) *List {
	l := &List{spec: ListSpec{Name: name}}
	l.cur.Store(&listData{table: new(bart.Table[string])})
	return l
}

// RuleSet is a validated, compiled set of rules with the lists they use.
type RuleSet struct {
	rules  []*rule
	lists  *Lists
	groups *hostGroups
	opts   Options
}

// OptionError is a problem with Options, located by the dotted path of
// the configuration field it came from (thresholds.syn_flood.pps).
type OptionError struct {
	Field string
	Msg   string
}

func (e *OptionError) Error() string { return e.Field + ": " + e.Msg }

// Load reads and compiles the rules Options name. Errors name the file,
// line and field of a bad rule, or the option at fault.
func Load(opts Options) (*RuleSet, error) {
	lists, err := LoadLists(opts.Lists)
	if err != nil {
		return nil, err
	}
	for _, name := range BuiltinLists {
		if lists.Get(name) == nil {
			lists.byName[name] = emptyList(name)
			lists.names = append(lists.names, name)
		}
	}
	slices.Sort(lists.names)
	set := &RuleSet{lists: lists, opts: opts}
	var errs []error
	add := func(rules []*rule) {
		for _, r := range rules {
			if i := slices.IndexFunc(set.rules, func(x *rule) bool { return x.name == r.name }); i >= 0 {
				set.rules[i] = r
			} else {
				set.rules = append(set.rules, r)
			}
		}
	}
	if opts.Builtin {
		files, _ := fs.Glob(pack, "pack/*.yaml")
		for _, f := range files {
			src, _ := pack.ReadFile(f)
			rules, err := ParseRules("builtin:"+path.Base(f), src, lists)
			if err != nil {
				errs = append(errs, err)
			}
			add(rules)
		}
	}
	for i, f := range opts.Files {
		src, err := readRuleFile(f)
		if err != nil {
			errs = append(errs, &OptionError{Field: fmt.Sprintf("rules[%d]", i), Msg: err.Error()})
			continue
		}
		rules, err := ParseRules(f, src, lists)
		if err != nil {
			errs = append(errs, err)
		}
		add(rules)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for j, name := range opts.Disable {
		i := slices.IndexFunc(set.rules, func(x *rule) bool { return x.name == name })
		if i < 0 {
			errs = append(errs, &OptionError{fmt.Sprintf("disable[%d]", j), fmt.Sprintf("no rule %q", name)})
			continue
		}
		set.rules = slices.Delete(set.rules, i, i+1)
	}
	set.rules = slices.DeleteFunc(set.rules, func(r *rule) bool { return r.disabled })
	for _, r := range set.rules {
		if r.maxKeys == 0 {
			r.maxKeys = cmp.Or(opts.MaxKeys, defaultMaxKeys)
		}
	}
	errs = append(errs, checkOverrides("thresholds", opts.Thresholds, set, opts.Disable)...)
	set.groups = &hostGroups{}
	for i, g := range opts.HostGroups {
		at := fmt.Sprintf("host_groups[%d]", i)
		errs = append(errs, checkOverrides(at+".thresholds", g.Thresholds, set, opts.Disable)...)
		for _, p := range g.Prefixes {
			set.groups.table.Insert(p.Masked(), i)
		}
		set.groups.n++
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}

// checkOverrides checks that threshold overrides name rules and their
// measures. Overrides of disabled rules are allowed.
func checkOverrides(at string, th map[string]map[string]float64, set *RuleSet, disabled []string) []error {
	var errs []error
	for _, name := range sortedKeys(th) {
		r := set.rule(name)
		if r == nil {
			if !slices.Contains(disabled, name) {
				errs = append(errs, &OptionError{at + "." + name, fmt.Sprintf("no rule %q", name)})
			}
			continue
		}
		var limited []string
		for _, t := range r.thresholds {
			limited = append(limited, r.names[t.m])
		}
		for _, m := range sortedKeys(th[name]) {
			if !slices.Contains(limited, m) {
				errs = append(errs, &OptionError{at + "." + name + "." + m, fmt.Sprintf("rule %q has no threshold on %q (it has %v)", name, m, limited)})
			}
		}
	}
	return errs
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func (set *RuleSet) rule(name string) *rule {
	for _, r := range set.rules {
		if r.name == name {
			return r
		}
	}
	return nil
}

// Names lists the rules of the set, in load order.
func (set *RuleSet) Names() []string {
	names := make([]string, len(set.rules))
	for i, r := range set.rules {
		names[i] = r.name
	}
	return names
}

// Lists returns the set's address lists (to watch their files).
func (set *RuleSet) Lists() *Lists { return set.lists }

// RuleInfo describes a loaded rule, for the HTTP API and docs.
type RuleInfo struct {
	Name        string             `json:"name"`
	Description string             `json:"description"`
	File        string             `json:"file"`
	Kind        string             `json:"kind"`
	Severity    string             `json:"severity"`
	Techniques  []string           `json:"techniques,omitempty"`
	Thresholds  map[string]float64 `json:"thresholds,omitempty"`
}

// Rules describes the rules of the set.
func (set *RuleSet) Rules() []RuleInfo {
	out := make([]RuleInfo, len(set.rules))
	for i, r := range set.rules {
		limits, _ := set.limitsOf(r)
		ri := RuleInfo{Name: r.name, Description: r.description, File: r.file, Kind: r.kind.String(),
			Severity: r.severity.String(), Techniques: r.techniques}
		for j, th := range r.thresholds {
			if ri.Thresholds == nil {
				ri.Thresholds = map[string]float64{}
			}
			ri.Thresholds[r.names[th.m]] = limits[j]
		}
		out[i] = ri
	}
	return out
}

// limitsOf returns a rule's thresholds with the configuration's
// overrides, and per host group (nil when no group changes the rule).
func (set *RuleSet) limitsOf(r *rule) ([]float64, [][]float64) {
	base := make([]float64, len(r.thresholds))
	over := set.opts.Thresholds[r.name]
	for i, th := range r.thresholds {
		base[i] = th.limit
		if v, ok := over[r.names[th.m]]; ok {
			base[i] = v
		}
	}
	var byGroup [][]float64
	for gi, g := range set.opts.HostGroups {
		gover, ok := g.Thresholds[r.name]
		if !ok {
			continue
		}
		if byGroup == nil {
			byGroup = make([][]float64, len(set.opts.HostGroups))
			for j := range byGroup {
				byGroup[j] = base
			}
		}
		l := slices.Clone(base)
		for i, th := range r.thresholds {
			if v, ok := gover[r.names[th.m]]; ok {
				l[i] = v
			}
		}
		byGroup[gi] = l
	}
	return base, byGroup
}

// hostGroups maps prefixes to host groups by longest-prefix match.
type hostGroups struct {
	table bart.Table[int]
	n     int
}

func (h *hostGroups) lookup(a netip.Addr) (int, bool) {
	if h == nil || h.n == 0 {
		return 0, false
	}
	return h.table.Lookup(a)
}

// readRuleFile reads a rule file with yamlerr's limits.
func readRuleFile(path string) ([]byte, error) {
	src, err := yamlerr.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the rule file: %w", err)
	}
	return src, nil
}
