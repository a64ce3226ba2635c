package daemon

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// guardReq is a POST /-/reload as a client sends it.
type guardReq struct {
	name    string
	host    string // Host header; "" : 127.0.0.1:10099
	headers map[string]string
	want    int    // status
	reason  string // refusal counted; "" when let through
}

func (c guardReq) request() *http.Request {
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:10099/-/reload", nil)
	if c.host != "" {
		r.Host = c.host
	}
	for k, v := range c.headers {
		r.Header.Set(k, v)
	}
	return r
}

func okHandler(calls *int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		*calls++
		w.Write([]byte("reloaded\n"))
	})
}

// TestReloadGuardCSRF: programs (curl, no Origin, no Sec-Fetch-*) pass;
// a browser's cross-site request, a DNS-rebound one, an opaque origin
// and the bodies a form or a no-preflight fetch sends are refused and
// counted, without reaching the reload.
func TestReloadGuardCSRF(t *testing.T) {
	cases := []guardReq{
		{name: "curl", want: 200},
		{name: "json body", headers: map[string]string{"Content-Type": "application/json"}, want: 200},
		{name: "same-origin loopback page", headers: map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:10099"}, want: 200},
		{name: "cross-site fetch", headers: map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, want: 403, reason: refusedCrossOrigin},
		{name: "same-site fetch", headers: map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://a.localhost:10099"}, want: 403, reason: refusedCrossOrigin},
		{name: "cross-site without Origin", headers: map[string]string{"Sec-Fetch-Site": "cross-site"}, want: 403, reason: refusedCrossOrigin},
		{name: "old browser, other origin", headers: map[string]string{"Origin": "http://evil.example"}, want: 403, reason: refusedCrossOrigin},
		{name: "other loopback port", headers: map[string]string{"Origin": "http://127.0.0.1:8080"}, want: 403, reason: refusedCrossOrigin},
		{name: "opaque origin", headers: map[string]string{"Origin": "null"}, want: 403, reason: refusedCrossOrigin},
		{name: "DNS rebinding", host: "rebind.example:10099", headers: map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://rebind.example:10099"}, want: 403, reason: refusedCrossOrigin},
		{name: "DNS rebinding, old browser", host: "rebind.example:10099", headers: map[string]string{"Origin": "http://rebind.example:10099"}, want: 403, reason: refusedCrossOrigin},
		{name: "form", headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, want: 415, reason: refusedContentType},
		{name: "multipart form", headers: map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, want: 415, reason: refusedContentType},
		{name: "text/plain", headers: map[string]string{"Content-Type": "Text/Plain; charset=utf-8"}, want: 415, reason: refusedContentType},
		{name: "unparsable type", headers: map[string]string{"Content-Type": "text/plain;;="}, want: 415, reason: refusedContentType},
	}
	calls := 0
	g := newReloadGuard(okHandler(&calls), nil)
	g.limiter.SetBurst(len(cases)) // this test is not about the rate
	wantCalls := 0
	counts := map[string]float64{}
	for _, c := range cases {
		w := httptest.NewRecorder()
		before := calls
		g.ServeHTTP(w, c.request())
		if w.Code != c.want {
			t.Errorf("%s: status %d (%q), want %d", c.name, w.Code, w.Body.String(), c.want)
		}
		if c.reason == "" {
			wantCalls++
			if calls != before+1 {
				t.Errorf("%s: not reloaded", c.name)
			}
		} else {
			counts[c.reason]++
			if calls != before {
				t.Errorf("%s: reloaded although refused", c.name)
			}
		}
	}
	for _, r := range refusedReasons {
		if got := counterValue(t, g.refused.WithLabelValues(r)); got != counts[r] {
			t.Errorf("refused{reason=%q} = %v, want %v", r, got, counts[r])
		}
	}
	if calls != wantCalls {
		t.Errorf("%d reloads, want %d", calls, wantCalls)
	}
}

// TestReloadGuardToken: with a token, only "Authorization: Bearer
// TOKEN" reloads; everything else is 401 with a challenge, counted.
func TestReloadGuardToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := HTTPConfig{Listen: DefaultMetricsAddr, ReloadTokenFile: path}
	tok, err := cfg.LoadReloadToken()
	if err != nil || string(tok) != "s3cret-token" {
		t.Fatalf("LoadReloadToken = %q, %v", tok, err)
	}
	calls := 0
	g := newReloadGuard(okHandler(&calls), tok)
	g.limiter.SetBurst(100)
	for auth, want := range map[string]int{
		"":                        401,
		"Bearer":                  401,
		"Bearer ":                 401,
		"Bearer s3cret":           401,
		"Bearer s3cret-token-and": 401,
		"Basic czNjcmV0LXRva2Vu":  401,
		"s3cret-token":            401,
		"Bearer s3cret-token":     200,
		"bearer s3cret-token":     200,
	} {
		r := guardReq{}.request()
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Authorization %q: status %d, want %d", auth, w.Code, want)
		}
		if want == 401 && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("Authorization %q: no Bearer challenge", auth)
		}
	}
	if calls != 2 {
		t.Errorf("%d reloads, want 2", calls)
	}
	if got := counterValue(t, g.refused.WithLabelValues(refusedToken)); got != 7 {
		t.Errorf("refused{reason=unauthorized} = %v, want 7", got)
	}
	// A rotated token replaces the old one.
	g.setToken([]byte("next"))
	for auth, want := range map[string]int{"Bearer s3cret-token": 401, "Bearer next": 200} {
		r := guardReq{}.request()
		r.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("after rotation, %q: status %d, want %d", auth, w.Code, want)
		}
	}
	// A cross-site request is refused even with the token.
	r := guardReq{headers: map[string]string{"Sec-Fetch-Site": "cross-site", "Authorization": "Bearer next"}}.request()
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	if w.Code != 403 {
		t.Errorf("cross-site with the token: status %d, want 403", w.Code)
	}

	for content, wantErr := range map[string]string{"": "empty", "\n": "empty"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := cfg.LoadReloadToken(); err == nil || !strings.Contains(err.Error(), wantErr) || !strings.Contains(err.Error(), "http.reload_token_file") {
			t.Errorf("token file %q: %v, want an error naming http.reload_token_file that says %s", content, err, wantErr)
		}
	}
	cfg.ReloadTokenFile = filepath.Join(t.TempDir(), "missing")
	if _, err := cfg.LoadReloadToken(); err == nil {
		t.Error("a missing token file was read")
	}
	if tok, err := (&HTTPConfig{}).LoadReloadToken(); tok != nil || err != nil {
		t.Errorf("no token file: %q, %v; want nil, nil", tok, err)
	}
}

// TestReloadGuardRate: a burst of reloadBurst passes, the next is 429
// with Retry-After, counted; refused requests of other kinds do not
// take from the budget.
func TestReloadGuardRate(t *testing.T) {
	calls := 0
	g := newReloadGuard(okHandler(&calls), nil)
	for range 5 { // refused before the limiter: no tokens taken
		w := httptest.NewRecorder()
		g.ServeHTTP(w, guardReq{headers: map[string]string{"Sec-Fetch-Site": "cross-site"}}.request())
	}
	codes := []int{}
	for range reloadBurst + 2 {
		w := httptest.NewRecorder()
		g.ServeHTTP(w, guardReq{}.request())
		codes = append(codes, w.Code)
		if w.Code == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	want := []int{200, 200, 200, 429, 429}
	if len(codes) != len(want) || calls != reloadBurst {
		t.Fatalf("statuses %v (%d reloads), want %v", codes, calls, want)
	}
	for i := range want {
		if codes[i] != want[i] {
			t.Fatalf("statuses %v, want %v", codes, want)
		}
	}
	if got := counterValue(t, g.refused.WithLabelValues(refusedRateLimited)); got != 2 {
		t.Errorf("refused{reason=rate_limited} = %v, want 2", got)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
