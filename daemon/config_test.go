package daemon

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// The packaged configuration file documents the defaults: it must be
// exactly DefaultConfig.
func TestPackagedConfigIsTheDefault(t *testing.T) {
	got, err := LoadConfig("../packaging/vigil.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(DefaultConfig(), got, cmp.AllowUnexported(Duration{}), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("packaging/vigil.yaml differs from DefaultConfig (-default +file):\n%s", diff)
	}
}

func TestParseConfigOverDefaults(t *testing.T) {
	got, err := ParseConfig("t.yaml", []byte("capture:\n  sample_rate: 10\n  interfaces: [eth0, eth1]\nflows:\n  idle_timeout: 3s\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Capture.SampleRate = 10
	want.Capture.Interfaces = []string{"eth0", "eth1"}
	want.Flows.IdleTimeout = Duration{D: 3 * time.Second}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(Duration{})); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

func TestConfigErrorsNameFileLineAndField(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want []ConfigError
	}{
		{"capture:\n  sample_rat: 10\n", []ConfigError{{Line: 2, Column: 3, Field: "capture.sample_rat"}}},
		{"flows:\n  idle_timeout: 15x\n  max_flows: 0\n", []ConfigError{
			{Line: 2, Column: 17, Field: "flows.idle_timeout"},
			{Line: 3, Column: 14, Field: "flows.max_flows"},
		}},
		{"capture:\n  sample_rate: -1\n", []ConfigError{{Line: 2, Column: 16, Field: "capture.sample_rate"}}},
		{"capture:\n  interfaces: [eth0, \"a b\"]\n", []ConfigError{{Line: 2, Column: 22, Field: "capture.interfaces[1]"}}},
		{"capture: [\n", []ConfigError{{Line: 1, Column: 10}}},
		{"log:\n  format: xml\n", []ConfigError{{Line: 2, Column: 11, Field: "log.format"}}},
		{"capture:\n  sampling: sometimes\n", []ConfigError{{Line: 2, Column: 13, Field: "capture.sampling"}}},
		{"capture:\n  adaptive:\n    budget: 0\n", []ConfigError{{Line: 3, Column: 13, Field: "capture.adaptive.budget"}}},
		{"capture:\n  adaptive:\n    interfaces:\n      eth1: {min_rate: 50, max_rate: 10}\n",
			[]ConfigError{{Line: 4, Column: 24, Field: "capture.adaptive.interfaces.eth1.min_rate"}}},
	} {
		_, err := ParseConfig("t.yaml", []byte(tc.src))
		if err == nil {
			t.Errorf("%q: accepted", tc.src)
			continue
		}
		var got []ConfigError
		for _, e := range flatten(err) {
			var ce *ConfigError
			if !errors.As(e, &ce) {
				t.Errorf("%q: %T %v is not a ConfigError", tc.src, e, e)
				continue
			}
			if ce.File != "t.yaml" || ce.Msg == "" || !strings.HasPrefix(ce.Error(), "t.yaml:") {
				t.Errorf("%q: error %q does not name the file", tc.src, ce.Error())
			}
			got = append(got, ConfigError{Line: ce.Line, Column: ce.Column, Field: ce.Field})
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%q: errors (-want +got):\n%s\n%v", tc.src, diff, err)
		}
	}
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
