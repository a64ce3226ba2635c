package daemon

import (
	"strings"
	"testing"
)

// TestHTTPListenWarnings: a listen address that is not loopback is
// allowed (it validates) but warned about, with a hint when no reload
// token is set; loopback addresses are not.
func TestHTTPListenWarnings(t *testing.T) {
	for _, tc := range []struct {
		listen, token string
		want          string // "" : no warning; else a part of it
	}{
		{listen: "127.0.0.1:10099"},
		{listen: "127.5.6.7:10099"},
		{listen: "[::1]:10099"},
		{listen: "[::ffff:127.0.0.1]:10099"},
		{listen: "localhost:10099"},
		{listen: "LocalHost:10099"},
		{listen: "not an address"}, // Validate's business, not a warning
		{listen: ":10099", want: `":10099" is not a loopback address: /metrics, /api/v1/rules and POST /-/reload are served on every interface; set http.reload_token_file`},
		{listen: "0.0.0.0:10099", want: "served on every interface"},
		{listen: "[::]:10099", want: "served on every interface"},
		{listen: "192.0.2.7:10099", want: "served on 192.0.2.7; set http.reload_token_file"},
		{listen: "sensor.example:10099", want: "served on sensor.example"},
		{listen: "192.0.2.7:10099", token: "/etc/vigil/reload.token", want: "served on 192.0.2.7"},
	} {
		c := Config{HTTP: HTTPConfig{Listen: tc.listen, ReloadTokenFile: tc.token}}
		ws := c.Warnings()
		switch {
		case tc.want == "" && len(ws) != 0:
			t.Errorf("%q: warnings %q, want none", tc.listen, ws)
		case tc.want != "" && (len(ws) != 1 || !strings.HasPrefix(ws[0], "http.listen: ") || !strings.Contains(ws[0], tc.want)):
			t.Errorf("%q: warnings %q, want one on http.listen containing %q", tc.listen, ws, tc.want)
		case tc.want != "" && tc.token != "" && strings.Contains(ws[0], "reload_token_file"):
			t.Errorf("%q with a token: %q still asks for a token", tc.listen, ws[0])
		}
	}
	// Allowed: a public address validates.
	h := HTTPConfig{Listen: "0.0.0.0:10099"}
	if ps := h.Validate(); len(ps) != 0 {
		t.Errorf("0.0.0.0:10099 refused: %v", ps)
	}
}
