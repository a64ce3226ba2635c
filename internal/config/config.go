// Package config is what every component's configuration is checked
// with: a list of problems at field paths relative to the component's
// section, which the root prefixes with the section's path and places
// in the file (yamlerr.Locate) by line and column.
package config

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/vigil-sensor/vigil/internal/yamlerr"
)

// Duration is a time.Duration written as "15s" or "1m30s" in YAML; a
// value that does not parse is reported by Validate with its line.
type Duration = yamlerr.Duration

// Problem is one bad field, at a dotted path.
type Problem = yamlerr.Problem

// Problems collects what is wrong with a section.
type Problems []Problem

// Add records a problem with field ("" for the section itself).
func (p *Problems) Add(field, format string, args ...any) {
	*p = append(*p, Problem{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// In adds a subsection's problems under prefix (a key such as "tls" or
// an element such as "kafka[2]").
func (p *Problems) In(prefix string, sub Problems) {
	for _, s := range sub {
		s.Field = Join(prefix, s.Field)
		*p = append(*p, s)
	}
}

// Join puts a relative field path under prefix.
func Join(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	case strings.HasPrefix(field, "["):
		return prefix + field
	}
	return prefix + "." + field
}

// Err is the problems as one error ("field: msg" each), nil if none.
func (p Problems) Err() error {
	errs := make([]error, len(p))
	for i, s := range p {
		errs[i] = fieldError(s)
	}
	return errors.Join(errs...)
}

type fieldError Problem

func (e fieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// OneOf checks that v is one of allowed.
func (p *Problems) OneOf(field, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		p.Add(field, "%q is not %s", v, strings.Join(allowed, ", "))
	}
}

// HostPort checks a HOST:PORT address with a port in 1..65535.
func (p *Problems) HostPort(field, v string) {
	_, port, err := net.SplitHostPort(v)
	if err == nil {
		_, err = net.LookupPort("tcp", port)
	}
	if err != nil || port == "" || port == "0" {
		p.Add(field, "%q is not HOST:PORT", v)
	}
}

// Duration checks a duration: one that parses, positive, or zero when
// zeroOK.
func (p *Problems) Duration(field string, d Duration, zeroOK bool) {
	switch {
	case d.Invalid() != "":
		p.Add(field, "%q is not a duration (examples: 15s, 1m30s, 500ms)", d.Invalid())
	case d.D < 0 || (d.D == 0 && !zeroOK):
		p.Add(field, "must be positive, got %s", d.D)
	}
}
