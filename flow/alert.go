package flow

// Alert is what a detection rule reports about one key: a start, periodic
// updates with current figures, and an end after a quiet period. The
// detection engine builds alerts; exporters only encode and send them.
// Rates and totals are estimates from samples, weighed by their rates.
type Alert struct {
	ID         string // stable across start, updates and end of one alert
	Rule       string // the rule's name: syn_flood, udp_reflection, ...
	State      AlertState
	Severity   Severity
	Key        []KeyValue // the rule's group-by fields, in rule order
	Time       int64      // when this report was made, ns since the Unix epoch
	Start      int64      // first matching event
	End        int64      // last matching event (the alert's end when State is AlertEnd)
	Packets    uint64     // estimated since start
	Bytes      uint64     // estimated since start
	PacketsCI  Interval   // 95% (Level) confidence interval of Packets; see docs/ESTIMATES.md
	BytesCI    Interval   // 95% (Level) confidence interval of Bytes
	PeakPPS    float64
	PeakBPS    float64
	CurrentPPS float64 // over the rule's window, when the report was made
	CurrentBPS float64
	// 95% (Level) confidence intervals of CurrentPPS and CurrentBPS.
	CurrentPPSCI, CurrentBPSCI RateInterval
	// Evidence: the heaviest sources, destinations and ports.
	TopSources      []Top
	TopDestinations []Top
	TopPorts        []Top
	SamplingRate    uint32   // effective 1-in-N behind the figures
	Techniques      []string // MITRE ATT&CK technique IDs, e.g. T1498.001
	// Service names the abused or attacked service, from the catalogue
	// of detect/services.go, for rules that say which key port names it:
	// "dns", "ntp", "ssh"; "udp/40000" for a port it does not know; ""
	// for rules without one.
	Service string
	Summary string // one human-readable line
}

// KeyValue is one group-by field of an alert key.
type KeyValue struct {
	Name  string // field name, e.g. dst_addr or dst_prefix
	Value string
}

// Top is one entry of an alert's evidence, with its estimated packets.
type Top struct {
	Value   string
	Packets uint64
}

// AlertState is where an alert is in its lifecycle.
type AlertState uint8

// Alert states.
const (
	AlertStart AlertState = iota + 1
	AlertUpdate
	AlertEnd
)

func (s AlertState) String() string {
	switch s {
	case AlertStart:
		return "start"
	case AlertUpdate:
		return "update"
	case AlertEnd:
		return "end"
	}
	return "unknown"
}

// Severity of an alert, in OCSF's order (severity_id 1..5).
type Severity uint8

// Severities.
const (
	SeverityInfo Severity = iota + 1
	SeverityLow
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

func (s Severity) String() string {
	switch s {
	case SeverityInfo:
		return "info"
	case SeverityLow:
		return "low"
	case SeverityMedium:
		return "medium"
	case SeverityHigh:
		return "high"
	case SeverityCritical:
		return "critical"
	}
	return "unknown"
}
