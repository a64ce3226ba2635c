package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestReloadEndpointGuarded: the daemon's mux answers POST /-/reload
// through the guard: a page's cross-site POST, a form post and a burst
// past the rate never reach the reload (this daemon has no pipeline: a
// reload that ran would panic).
func TestReloadEndpointGuarded(t *testing.T) {
	d := &daemon{c: &capture{}}
	reloads := 0
	d.guard = newReloadGuard(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { reloads++ }), nil)
	h := d.httpHandler(prometheus.NewRegistry())
	post := func(headers map[string]string) int {
		r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:10099/-/reload", strings.NewReader(""))
		for k, v := range headers {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	if code := post(map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}); code != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", code)
	}
	if code := post(map[string]string{"Content-Type": "text/plain"}); code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain POST: %d, want 415", code)
	}
	if reloads != 0 {
		t.Fatalf("%d reloads from refused requests", reloads)
	}
	var codes []int
	for range reloadBurst + 1 {
		codes = append(codes, post(nil))
	}
	if reloads != reloadBurst || codes[reloadBurst] != http.StatusTooManyRequests {
		t.Errorf("statuses %v with %d reloads; want %d reloads then 429", codes, reloads, reloadBurst)
	}
}

// TestRunWarnsPublicListen: `vigil run` logs the configuration's
// warnings at start, a non-loopback http.listen among them. (A missing
// token file then stops it before anything is attached.)
func TestRunWarnsPublicListen(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HTTP.Listen = "0.0.0.0:0"
	cfg.HTTP.ReloadTokenFile = filepath.Join(t.TempDir(), "missing")
	var logs bytes.Buffer
	err := Run(context.Background(), RunOptions{Config: cfg, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err == nil || !strings.Contains(err.Error(), "reload_token_file") {
		t.Fatalf("Run: %v, want the missing token file", err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), `http.listen: \"0.0.0.0:0\" is not a loopback address`) {
		t.Errorf("no warning for a public http.listen at start:\n%s", logs.String())
	}
}
