package detect

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vigil-sensor/vigil/flow"
)

// fltField is one name filters can use.
type fltField struct {
	name string
	v    fltValue // kind and getter
	// enum fields (direction, source, state): the names of their values
	// by number and the number of an event's value.
	enum    []string
	enumNum func(*Event) uint8
}

var fltFields = []fltField{
	{name: "src_addr", v: fltValue{kind: fltAddr, a: func(e *Event) netip.Addr { return e.SrcAddr }}},
	{name: "dst_addr", v: fltValue{kind: fltAddr, a: func(e *Event) netip.Addr { return e.DstAddr }}},
	{name: "src_port", v: fltIntField(func(e *Event) int64 { return int64(e.SrcPort) })},
	{name: "dst_port", v: fltIntField(func(e *Event) int64 { return int64(e.DstPort) })},
	{name: "proto", v: fltIntField(func(e *Event) int64 { return int64(e.Proto) })},
	{name: "tcp_flags", v: fltIntField(func(e *Event) int64 { return int64(e.TCPFlags) })},
	{name: "ip_version", v: fltIntField(func(e *Event) int64 { return int64(e.IPVersion) })},
	{name: "ifindex", v: fltIntField(func(e *Event) int64 { return int64(e.Ifindex) })},
	{name: "vni", v: fltIntField(func(e *Event) int64 { return int64(e.VNI) })},
	{name: "packets", v: fltIntField(func(e *Event) int64 { return int64(e.Packets) })},
	{name: "bytes", v: fltIntField(func(e *Event) int64 { return int64(e.Bytes) })},
	{name: "samples", v: fltIntField(func(e *Event) int64 { return int64(e.Samples) })},
	{name: "rate", v: fltIntField(func(e *Event) int64 { return int64(e.Rate) })},
	{name: "severity", v: fltIntField(func(e *Event) int64 { return int64(e.Severity) })},
	{name: "duration", v: fltValue{kind: fltFloat, f: func(e *Event) float64 { return float64(e.Duration) / 1e9 }}},
	{name: "syn", v: fltFlagField(flow.TCPSyn)},
	{name: "ack", v: fltFlagField(flow.TCPAck)},
	{name: "fin", v: fltFlagField(flow.TCPFin)},
	{name: "rst", v: fltFlagField(flow.TCPRst)},
	{name: "psh", v: fltFlagField(flow.TCPPsh)},
	{name: "tcp", v: fltBoolField(func(e *Event) bool { return e.Proto == 6 })},
	{name: "udp", v: fltBoolField(func(e *Event) bool { return e.Proto == 17 })},
	{name: "icmp", v: fltBoolField(func(e *Event) bool { return e.Proto == 1 || e.Proto == 58 })},
	{name: "fragment", v: fltBoolField(func(e *Event) bool { return e.Fragment })},
	{name: "non_first_fragment", v: fltBoolField(func(e *Event) bool { return e.NonFirst })},
	// The catalogue (services.go): UDP from the port of a service abused
	// for amplification; TCP to the port of a login service.
	{name: "amplifier_port", v: fltBoolField(func(e *Event) bool { return e.Proto == 17 && amplifierPorts[e.SrcPort] })},
	{name: "login_port", v: fltBoolField(func(e *Event) bool { return e.Proto == 6 && loginPorts[e.DstPort] })},
	{
		name: "direction", v: fltStringField(func(e *Event) string { return e.Direction.String() }),
		enum:    []string{flow.Ingress.String(), flow.Egress.String()},
		enumNum: func(e *Event) uint8 { return uint8(e.Direction) },
	},
	{
		name: "source", v: fltStringField(func(e *Event) string { return e.Source.String() }),
		enum:    sourceNames[:],
		enumNum: func(e *Event) uint8 { return uint8(e.Source) },
	},
	{name: "rule", v: fltStringField(func(e *Event) string { return e.Rule })},
	{
		name: "state", v: fltStringField(func(e *Event) string { return e.State.String() }),
		enum:    []string{"", flow.AlertStart.String(), flow.AlertUpdate.String(), flow.AlertEnd.String()},
		enumNum: func(e *Event) uint8 { return uint8(e.State) },
	},
}

func fltIntField(f func(*Event) int64) fltValue     { return fltValue{kind: fltInt, i: f} }
func fltBoolField(f func(*Event) bool) fltValue     { return fltValue{kind: fltBool, b: f} }
func fltStringField(f func(*Event) string) fltValue { return fltValue{kind: fltString, s: f} }

// fltFlagField is a TCP flag: a flag test that and-chains merge into one
// mask comparison.
func fltFlagField(bit uint8) fltValue {
	return fltValue{kind: fltBool, mask: bit, want: bit, b: func(e *Event) bool { return e.TCPFlags&bit != 0 }}
}

// FieldNames lists the fields filters can use.
func FieldNames() []string {
	names := make([]string, len(fltFields))
	for i, f := range fltFields {
		names[i] = f.name
	}
	return names
}

func fltLookup(name string) (*fltField, bool) {
	i := slices.IndexFunc(fltFields, func(f fltField) bool { return f.name == name })
	if i < 0 {
		return nil, false
	}
	return &fltFields[i], true
}

// fltEnv describes the fields to expr's type checker: addresses are
// strings there, and become netip.Addr in the translation.
func fltEnv() map[string]any {
	env := make(map[string]any, len(fltFields))
	for _, f := range fltFields {
		switch f.v.kind {
		case fltBool:
			env[f.name] = false
		case fltInt:
			env[f.name] = 0
		case fltFloat:
			env[f.name] = 0.0
		case fltString, fltAddr:
			env[f.name] = ""
		}
	}
	return env
}

// enumValue is the number of an enum field's value name.
func (f *fltField) enumValue(s string) (uint8, error) {
	for i, n := range f.enum {
		if n != "" && n == s {
			return uint8(i), nil
		}
	}
	var valid []string
	for _, n := range f.enum {
		if n != "" {
			valid = append(valid, fmt.Sprintf("%q", n))
		}
	}
	return 0, fmt.Errorf("%s is never %q (want one of %v)", f.name, s, valid)
}
