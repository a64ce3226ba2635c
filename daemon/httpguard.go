package daemon

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/vigil-sensor/vigil/internal/metric"
	"github.com/vigil-sensor/vigil/internal/secret"
)

// Reasons a POST /-/reload is refused, the reason label of
// vigil_http_reload_refused_total.
const (
	refusedCrossOrigin = "cross_origin" // a browser's request from another site or origin (403)
	refusedContentType = "content_type" // a form or text/plain body, which a page can send without a preflight (415)
	refusedToken       = "unauthorized" // http.reload_token_file is set and the bearer token is missing or wrong (401)
	refusedRateLimited = "rate_limited" // over reloadRate (429)
)

// refusedReasons are every reason, each exported from the start.
var refusedReasons = []string{refusedCrossOrigin, refusedContentType, refusedToken, refusedRateLimited}

// Reloads over HTTP: one a second on average, up to reloadBurst at once.
const (
	reloadRate  = rate.Limit(1)
	reloadBurst = 3
)

// LoadReloadToken reads http.reload_token_file: the token without its
// trailing line end; nil when the key is unset. An empty file is an
// error.
func (c *HTTPConfig) LoadReloadToken() ([]byte, error) {
	if c.ReloadTokenFile == "" {
		return nil, nil
	}
	tok, err := secret.Read(c.ReloadTokenFile)
	if err != nil {
		return nil, fmt.Errorf("http.reload_token_file: %w", err)
	}
	return tok, nil
}

// reloadGuard stands before POST /-/reload. A reload changes what the
// sensor does, so the endpoint is not for any page a browser on the
// sensor's host happens to show, nor for a flood of requests:
//
//   - Cross-site requests are refused (the CSRF defence): a request
//     whose Sec-Fetch-Site is not same-origin or none, or whose Origin
//     is not the origin of the request's Host (net/http's
//     CrossOriginProtection), and any request with an Origin that is
//     not a loopback origin (a DNS-rebound name is "same-origin" to the
//     browser but not loopback). Browsers send Origin with every POST;
//     curl and other programs send neither header and pass.
//   - A body of a type an HTML form or a no-preflight fetch can send
//     (application/x-www-form-urlencoded, multipart/form-data,
//     text/plain) is refused: the endpoint takes no body.
//   - With http.reload_token_file, the request must carry
//     "Authorization: Bearer TOKEN", compared in constant time. A page
//     cannot add that header to a cross-origin request without a CORS
//     preflight, which vigil never grants.
//   - At most one reload a second on average (a burst of reloadBurst);
//     past it the answer is 429.
//
// Each refusal is counted by reason.
type reloadGuard struct {
	next    http.Handler
	cop     *http.CrossOriginProtection
	limiter *rate.Limiter
	refused *prometheus.CounterVec

	mu    sync.Mutex
	token []byte // SHA-256 of the token; nil: none needed
}

func newReloadGuard(next http.Handler, token []byte) *reloadGuard {
	g := &reloadGuard{
		next:    next,
		cop:     http.NewCrossOriginProtection(),
		limiter: rate.NewLimiter(reloadRate, reloadBurst),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metric.Name("http_reload_refused_total"),
			Help: "POST /-/reload requests refused, by reason: cross_origin, content_type, unauthorized, rate_limited.",
		}, []string{"reason"}),
	}
	for _, r := range refusedReasons {
		g.refused.WithLabelValues(r)
	}
	g.setToken(token)
	return g
}

// setToken replaces the token a reload must carry; nil: none.
func (g *reloadGuard) setToken(token []byte) {
	var sum []byte
	if token != nil {
		h := sha256.Sum256(token)
		sum = h[:]
	}
	g.mu.Lock()
	g.token = sum
	g.mu.Unlock()
}

func (g *reloadGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := g.crossOrigin(r); err != nil {
		g.refuse(w, refusedCrossOrigin, http.StatusForbidden, err.Error())
		return
	}
	if simpleContentType(r.Header.Get("Content-Type")) {
		g.refuse(w, refusedContentType, http.StatusUnsupportedMediaType,
			"POST /-/reload takes no body: send none (curl -X POST URL), not a form or text/plain")
		return
	}
	if !g.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
		g.refuse(w, refusedToken, http.StatusUnauthorized, "a valid Authorization: Bearer token is required (http.reload_token_file)")
		return
	}
	if !g.limiter.Allow() {
		w.Header().Set("Retry-After", "1")
		g.refuse(w, refusedRateLimited, http.StatusTooManyRequests, "too many reloads; try again in a second")
		return
	}
	g.next.ServeHTTP(w, r)
}

func (g *reloadGuard) refuse(w http.ResponseWriter, reason string, code int, msg string) {
	g.refused.WithLabelValues(reason).Inc()
	http.Error(w, msg, code)
}

// crossOrigin is the CSRF check; nil lets the request through.
func (g *reloadGuard) crossOrigin(r *http.Request) error {
	if err := g.cop.Check(r); err != nil {
		return err
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || !loopbackHost(u.Hostname()) || !strings.EqualFold(u.Host, r.Host) {
		return fmt.Errorf("cross-origin request from %q refused: POST /-/reload is not for browsers", origin)
	}
	return nil
}

// authorized reports whether r carries the token, or none is needed.
func (g *reloadGuard) authorized(r *http.Request) bool {
	g.mu.Lock()
	want := g.token
	g.mu.Unlock()
	if want == nil {
		return true
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	// Both sides hashed: the comparison takes the same time whatever
	// the length of what was sent.
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}

// loopbackHost reports whether host, an address or name from
// HOST:PORT, can only be reached from this machine: "localhost" or a
// loopback IP address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// simpleContentType reports whether ct is one of the types a browser
// sends cross-origin without a CORS preflight.
func simpleContentType(ct string) bool {
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		// Unparsable: a browser may still treat it as simple; refuse.
		return true
	}
	switch mt {
	case "application/x-www-form-urlencoded", "multipart/form-data", "text/plain":
		return true
	}
	return false
}
