package flow

import "testing"

func TestOutcomeNames(t *testing.T) {
	want := []string{"ok", "not_ip", "truncated", "bad_header", "fragment", "tunnel"}
	for i, w := range want {
		if got := Outcome(i).String(); got != w {
			t.Errorf("Outcome(%d) = %q, want %q", i, got, w)
		}
	}
	if len(want) != NumOutcomes {
		t.Errorf("%d names for %d outcomes", len(want), NumOutcomes)
	}
	if got := Outcome(NumOutcomes).String(); got != "unknown" {
		t.Errorf("out of range outcome = %q", got)
	}
}

func TestSampleHelpers(t *testing.T) {
	s := Sample{Timestamp: 1_700_000_000_123_456_789}
	if got := s.Time().UnixNano(); got != s.Timestamp {
		t.Errorf("Time() = %d ns, want %d", got, s.Timestamp)
	}
	if s.Tunneled() {
		t.Error("a sample without tunnel flags is tunneled")
	}
	for _, f := range []Flags{FlagVXLAN, FlagGENEVE} {
		s.Flags = f | FlagFragment
		if !s.Tunneled() {
			t.Errorf("flags %#x: not tunneled", f)
		}
	}
	if Ingress.String() != "ingress" || Egress.String() != "egress" {
		t.Error("direction names")
	}
}
