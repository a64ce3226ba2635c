package detect

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/vigil-sensor/vigil/flow"
)

type ruleKind uint8

const (
	kindThreshold ruleKind = iota + 1 // measures over a sliding window against thresholds
	kindBaseline                      // a measure against its own moving mean and variance
	kindSequence                      // steps in order for the same key
	kindAbsence                       // a known key not seen any more
)

var kindNames = [...]string{"", "threshold", "baseline", "sequence", "absence"}

func (k ruleKind) String() string { return kindNames[k] }

// Rule defaults.
const (
	defaultWindow      = 10 * time.Second
	defaultSlots       = 10
	defaultUpdateEvery = 10 * time.Second
	defaultQuiet       = 30 * time.Second
	defaultMaxKeys     = 100_000
	maxGroupFields     = 4
	maxSteps           = 16
	minSlot            = time.Millisecond
)

// rule is a compiled rule: what it reads, how it groups and aggregates,
// and when it alerts. Its mutable state lives in ruleState.
type rule struct {
	name, file  string
	description string
	kind        ruleKind
	severity    flow.Severity
	techniques  []string
	sources     uint8 // bit (1 << Source) per source read
	filter      Filter
	guard       guard // what an event needs for the rule to read it (dispatch)
	group       []groupField
	window      int64 // ns
	slot        int64 // ns
	nslots      int
	measures    []measure
	names       []string // measure names, as measures
	ncols       int      // window columns of the measures; the extra columns follow
	thresholds  []threshold
	hasAny      bool // some thresholds are "any of" (thresholds:), not only "all of" (all:)
	// anyLate: an "any of" threshold is on a distinct count or a ratio,
	// known only after the cheap measures.
	anyLate bool
	// burst: slots of the sub-window rates are also judged over (0: none)
	// and the samples it must hold.
	burstSlots  int
	burstMin    uint64
	hasReverse  bool
	revFilter   Filter // the events a reverse measure may count
	service     string // "", or src_port / dst_port: the key field naming the service
	when        Condition
	minSamples  uint64
	evidence    []evidenceField
	updateEvery int64
	quiet       int64
	maxKeys     int
	hasDistinct bool
	// distinctNeeded: a threshold or the condition reads a distinct count,
	// so it is estimated while evaluating, not only for reports.
	distinctNeeded bool

	// baseline
	blMeasure    int
	blWarmup     int
	blAlpha      float64
	blDeviations float64

	// sequence
	steps  []step
	within int64

	// absence
	after, learn int64

	disabled bool

	canon string // the spec, canonical: a reload keeps the state of an unchanged rule
}

type threshold struct {
	m     int
	limit float64
	all   bool // from all: must be reached with the others
}

type step struct {
	source Source
	filter Filter
}

type measureKind uint8

const (
	mSum measureKind = iota + 1
	mRate
	mDistinct
	mRatio
	mMean   // columns: sum, events
	mSpread // columns: events, sum, sum of squares, sum of sampling variances
)

type valueKind uint8

const (
	vPackets valueKind = iota + 1
	vBytes
	vBits
	vSamples
	vEvents
)

// measure is one compiled aggregate.
type measure struct {
	kind    measureKind
	value   valueKind // mSum, mRate
	field   hashField // mDistinct
	once    bool      // mDistinct: values seen about once, scaled by the sampling rate
	a, b    int       // mRatio: measure indexes
	filter  Filter    // nil: every event of the rule
	dslot   int       // mDistinct: index among the rule's distinct measures
	col     int       // first window column
	reverse bool      // mSum, mRate: counts the key's traffic the other way
}

// ncols is how many window columns the measure uses.
func (m *measure) cols() int {
	switch m.kind {
	case mMean:
		return 2
	case mSpread:
		return 4
	}
	return 1
}

func (m *measure) amount(e *Event) float64 {
	switch m.value {
	case vPackets:
		return float64(e.Packets)
	case vBytes:
		return float64(e.Bytes)
	case vBits:
		return float64(e.Bytes) * 8
	case vSamples:
		return float64(e.Samples)
	case vEvents:
		return 1
	}
	return 0
}

func parseValueKind(s string) (valueKind, bool) {
	switch s {
	case "packets":
		return vPackets, true
	case "bytes":
		return vBytes, true
	case "bits":
		return vBits, true
	case "samples":
		return vSamples, true
	case "events":
		return vEvents, true
	}
	return 0, false
}

var severities = map[string]flow.Severity{
	"info": flow.SeverityInfo, "low": flow.SeverityLow, "medium": flow.SeverityMedium,
	"high": flow.SeverityHigh, "critical": flow.SeverityCritical,
}

var techniqueRE = regexp.MustCompile(`^T[0-9]{4}(\.[0-9]{3})?$`)

// compileRule validates a rule spec and compiles it. Errors carry paths
// relative to the rule (thresholds.pps).
func compileRule(rs *RuleSpec, lists ListSet) (*rule, []fieldError) {
	var fes []fieldError
	bad := func(path, format string, args ...any) {
		fes = append(fes, fieldError{path, fmt.Sprintf(format, args...)})
	}
	r := &rule{name: rs.Name, description: rs.Description, techniques: rs.Techniques, disabled: rs.Disabled}
	if !ruleNameOK(rs.Name) {
		bad("name", "%q is not a rule name: lower-case letters, digits and _, starting with a letter", rs.Name)
	}
	r.severity = flow.SeverityMedium
	if rs.Severity != "" {
		s, ok := severities[rs.Severity]
		if !ok {
			bad("severity", "%q is not one of info, low, medium, high, critical", rs.Severity)
		}
		r.severity = s
	}
	for i, t := range rs.Techniques {
		if !techniqueRE.MatchString(t) {
			bad(fmt.Sprintf("techniques[%d]", i), "%q is not a MITRE ATT&CK technique ID (T1498 or T1498.001)", t)
		}
	}
	duration := func(path string, d Duration, def time.Duration) int64 {
		if d.Invalid() != "" {
			bad(path, "%q is not a duration (1s, 500ms, 5m)", d.Invalid())
			return int64(def)
		}
		if d.D < 0 {
			bad(path, "must not be negative")
		}
		if d.D == 0 {
			return int64(def)
		}
		return int64(d.D)
	}
	r.window = duration("window", rs.Window, defaultWindow)
	r.nslots = rs.Slots
	if r.nslots == 0 {
		r.nslots = defaultSlots
	}
	if r.nslots < 1 || r.nslots > 1000 {
		bad("slots", "must be between 1 and 1000")
		r.nslots = defaultSlots
	}
	r.slot = r.window / int64(r.nslots)
	if r.slot < int64(minSlot) {
		bad("slots", "a slot of %v is shorter than %v: use fewer slots or a longer window", time.Duration(r.slot), minSlot)
	}
	r.updateEvery = duration("update_every", rs.UpdateEvery, defaultUpdateEvery)
	r.quiet = duration("quiet", rs.Quiet, max(defaultQuiet, time.Duration(r.window)))
	r.maxKeys = rs.MaxKeys
	if r.maxKeys < 0 {
		bad("max_keys", "must not be negative")
	}
	r.minSamples = max(rs.MinSamples, 1)

	compileFilter := func(path, src string) Filter {
		f, err := CompileFilter(src, lists)
		if err != nil {
			bad(path, "%v", err)
			return MatchAll
		}
		return f
	}
	r.filter = compileFilter("filter", rs.Filter)
	source := func(path, s string) Source {
		if s == "" {
			return SourceSamples
		}
		src, ok := ParseSource(s)
		if !ok {
			bad(path, "%q is not one of samples, flows, alerts", s)
			return SourceSamples
		}
		return src
	}
	r.sources = 1 << source("source", rs.Source)

	if len(rs.GroupBy) > maxGroupFields {
		bad("group_by", "at most %d fields", maxGroupFields)
	}
	for i, g := range rs.GroupBy {
		gf, err := parseGroupField(g)
		if err != nil {
			bad(fmt.Sprintf("group_by[%d]", i), "%v", err)
			continue
		}
		r.group = append(r.group, gf)
	}

	index := r.compileMeasures(rs, compileFilter, bad)
	r.compileThresholds(rs, index, duration, bad)
	switch rs.ServicePort {
	case "":
	case "src_port", "dst_port":
		if !slices.ContainsFunc(r.group, func(g groupField) bool { return g.base == rs.ServicePort }) {
			bad("service_port", "%q is not in group_by", rs.ServicePort)
		}
		r.service = rs.ServicePort
	default:
		bad("service_port", "%q is not src_port or dst_port", rs.ServicePort)
	}
	if rs.When != "" {
		r.distinctNeeded = r.hasDistinct
		c, err := CompileCondition(rs.When, r.names)
		if err != nil {
			bad("when", "%v", err)
		}
		r.when = c
	}
	evidence := rs.Evidence
	if evidence == nil {
		evidence = []string{"src_addr", "dst_addr", "dst_port"}
		evidence = slices.DeleteFunc(evidence, func(f string) bool {
			return slices.ContainsFunc(r.group, func(g groupField) bool { return g.base == f })
		})
	}
	ports := 0
	for i, f := range evidence {
		ef, ok := evidenceFields[f]
		if !ok {
			bad(fmt.Sprintf("evidence[%d]", i), "%q: evidence is src_addr, dst_addr, src_port or dst_port", f)
			continue
		}
		if ef == evSrcPort || ef == evDstPort {
			if ports++; ports > 1 {
				bad(fmt.Sprintf("evidence[%d]", i), "alerts show one port field: src_port or dst_port")
			}
		}
		r.evidence = append(r.evidence, ef)
	}

	kinds := 0
	r.kind = kindThreshold
	if b := rs.Baseline; b != nil {
		kinds++
		r.kind = kindBaseline
		r.blMeasure = index(b.Measure)
		if r.blMeasure < 0 {
			bad("baseline.measure", "no measure %q in this rule", b.Measure)
		}
		r.blWarmup = cmp.Or(b.Warmup, 12)
		r.blAlpha = cmp.Or(b.Alpha, 0.1)
		r.blDeviations = cmp.Or(b.Deviations, 5)
		if r.blAlpha <= 0 || r.blAlpha > 1 {
			bad("baseline.alpha", "must be in (0, 1]")
		}
		if r.blWarmup < 2 {
			bad("baseline.warmup", "must be at least 2 windows")
		}
		if r.blDeviations <= 0 {
			bad("baseline.deviations", "must be positive")
		}
		for _, n := range r.names {
			if k := rs.Measures[n]; k.Sum == "" && k.Rate == "" || k.Reverse {
				bad("measures."+n, "a baseline rule's measures are sums or rates")
			}
		}
	}
	if s := rs.Sequence; s != nil {
		kinds++
		r.kind = kindSequence
		r.within = duration("sequence.within", s.Within, 0)
		if r.within == 0 {
			bad("sequence.within", "a sequence needs a time limit")
		}
		if len(s.Steps) < 2 || len(s.Steps) > maxSteps {
			bad("sequence.steps", "a sequence has 2 to %d steps", maxSteps)
		}
		r.sources = 0
		for i, st := range s.Steps {
			p := fmt.Sprintf("sequence.steps[%d]", i)
			src := source(p+".source", st.Source)
			r.sources |= 1 << src
			r.steps = append(r.steps, step{source: src, filter: compileFilter(p+".filter", st.Filter)})
		}
		if rs.Filter != "" {
			bad("filter", "a sequence filters in its steps")
		}
	}
	if a := rs.Absence; a != nil {
		kinds++
		r.kind = kindAbsence
		r.after = duration("absence.after", a.After, 0)
		if r.after == 0 {
			bad("absence.after", "absence needs a silence length")
		}
		r.learn = duration("absence.learn", a.Learn, 5*time.Minute)
	}
	if kinds > 1 {
		second := "absence"
		if rs.Baseline != nil && rs.Sequence != nil {
			second = "sequence"
		}
		bad(second, "a rule is one of threshold, baseline, sequence or absence")
	}
	if r.kind == kindThreshold && len(rs.Thresholds) == 0 && len(rs.All) == 0 && rs.When == "" {
		bad("thresholds", "a threshold rule needs thresholds, all or when")
	}
	if r.kind != kindThreshold && (rs.Burst != nil || r.hasReverse) {
		bad("burst", "bursts and reverse measures are for threshold rules")
	}
	if r.kind != kindThreshold && r.kind != kindBaseline && (len(r.measures) > 0 || len(r.thresholds) > 0) {
		bad("measures", "a %v rule has no measures", r.kind)
	}
	if len(r.group) == 0 && r.kind != kindThreshold && r.kind != kindBaseline {
		bad("group_by", "a %v rule needs a key", r.kind)
	}
	r.canon = canonical(rs)
	r.guard = ruleGuard(rs)
	return r, fes
}

// ruleGuard is what an event needs for the rule to read it: its filter,
// or one of its reverse measures' filters, or one of its steps' filters
// could be true for it.
func ruleGuard(rs *RuleSpec) guard {
	if s := rs.Sequence; s != nil {
		g := admitNone
		for _, st := range s.Steps {
			g = g.or(filterGuard(st.Filter))
		}
		return g
	}
	g := filterGuard(rs.Filter)
	for _, ms := range rs.Measures {
		if ms.Reverse {
			g = g.or(filterGuard(ms.Filter))
		}
	}
	return g
}

// anyFilter matches what any of fs matches.
func anyFilter(fs []Filter) Filter {
	if len(fs) == 1 {
		return fs[0]
	}
	return func(e *Event) bool {
		for _, f := range fs {
			if f(e) {
				return true
			}
		}
		return false
	}
}

func countDistinct(ms []measure) int {
	n := 0
	for _, m := range ms {
		if m.kind == mDistinct {
			n++
		}
	}
	return n
}

func identOK(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// canonical renders a spec so that two equal rules render alike.
func canonical(rs *RuleSpec) string {
	var b strings.Builder
	c := *rs
	c.Baseline, c.Sequence, c.Absence = nil, nil, nil
	fmt.Fprintf(&b, "%#v", c) // fmt prints maps sorted by key
	if rs.Baseline != nil {
		fmt.Fprintf(&b, "|%#v", *rs.Baseline)
	}
	if rs.Sequence != nil {
		fmt.Fprintf(&b, "|%#v", *rs.Sequence)
	}
	if rs.Absence != nil {
		fmt.Fprintf(&b, "|%#v", *rs.Absence)
	}
	return b.String()
}
