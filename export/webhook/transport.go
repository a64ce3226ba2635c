package webhook

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/internal/secret"
)

// HTTPStatusError is a response that was not a 2xx.
type HTTPStatusError struct {
	StatusCode int
	Body       string // the start of the response body, for the log
}

func (e *HTTPStatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	return fmt.Sprintf("HTTP %d %s: %q", e.StatusCode, http.StatusText(e.StatusCode), e.Body)
}

// maxRetryAfter bounds what a receiver can ask the sender to wait.
const maxRetryAfter = time.Hour

// Transport posts one item per HTTP request (docs/WEBHOOK.md). Send
// may be called from several goroutines.
type Transport struct {
	url      string
	where    string // url without userinfo and query, for errors
	secret   []byte
	header   http.Header
	timeout  time.Duration
	attempts int
	backoff  time.Duration
	client   *http.Client
}

// reservedHeaders are set by the transport and cannot be configured.
var reservedHeaders = []string{"Content-Type", "Content-Length", "Transfer-Encoding", "Host", "User-Agent",
	HeaderTimestamp, HeaderSignature, HeaderDelivery}

// Retries of one item within one Send (docs/WEBHOOK.md): long outages
// are the sink's to retry, from its spool.
const (
	defaultAttempts = 3
	defaultBackoff  = 200 * time.Millisecond
)

// options are what a transport takes besides its Config; tests set
// them directly.
type options struct {
	Secret  []byte // HMAC-SHA256 key; empty: requests are not signed
	Version string // in the User-Agent "vigil/<version>"
	// Attempts bounds the tries of one item within one Send (1: no
	// retry); Backoff is the wait before the second, doubled after each
	// try, with jitter.
	Attempts int
	Backoff  time.Duration
}

// NewTransport checks c (Validate: its files too), reads its secret
// file and returns a transport that posts as vigil/version.
func NewTransport(c Config, version string) (*Transport, error) {
	if err := c.Validate().Err(); err != nil {
		return nil, err
	}
	o := options{Version: version, Attempts: defaultAttempts, Backoff: defaultBackoff}
	if c.SecretFile != "" {
		var err error
		if o.Secret, err = secret.Read(c.SecretFile); err != nil {
			return nil, fmt.Errorf("secret_file: %w", err)
		}
	}
	return newTransport(c, o)
}

func newTransport(c Config, o options) (*Transport, error) {
	u, err := checkURL(c.URL)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	for name, value := range c.Headers {
		if err := checkHeader(name, value); err != nil {
			return nil, fmt.Errorf("webhook header %q: %w", name, err)
		}
		h.Set(name, value)
	}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "vigil/"+cmp.Or(o.Version, "dev"))

	tlsConf, err := c.TLS.Build()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	tr.MaxIdleConnsPerHost = 4
	return &Transport{
		url:      u.String(),
		where:    (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String(),
		secret:   bytes.Clone(o.Secret),
		header:   h,
		timeout:  cmp.Or(c.Timeout.D, DefaultConfig().Timeout.D),
		attempts: cmp.Or(o.Attempts, defaultAttempts),
		backoff:  cmp.Or(o.Backoff, defaultBackoff),
		client: &http.Client{
			Transport: tr,
			// A redirected POST may become a GET or lose its body:
			// a 3xx is a configuration error, reported and retried.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// checkURL parses an http:// or https:// URL with a host.
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("webhook url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook url %q: want an http or https URL with a host", u.Redacted())
	}
	return u, nil
}

// checkHeader checks a configured header.
func checkHeader(name, value string) error {
	if name == "" || strings.ContainsFunc(name, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
	}) {
		return errors.New("not a valid header name")
	}
	if strings.ContainsFunc(value, func(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }) {
		return errors.New("value holds a control character")
	}
	for _, r := range reservedHeaders {
		if strings.EqualFold(name, r) {
			return errors.New("set by vigil, cannot be configured")
		}
	}
	return nil
}

// Send posts items in order, one request each, and stops at the first
// that fails. A 2xx delivers an item. A network error, timeout, 3xx,
// 5xx, 401, 403, 404, 407, 408, 425 or 429 is retried up to Attempts
// times within Send, then returned; with a Retry-After on 429 or 503
// it is returned at once as an *export.RetryAfterError. Any other 4xx
// returns an *export.RejectedError for item n.
func (t *Transport) Send(ctx context.Context, items [][]byte) (int, error) {
	var mac hash.Hash
	if len(t.secret) > 0 {
		mac = hmac.New(sha256.New, t.secret)
	}
	for i, item := range items {
		if err := t.sendOne(ctx, mac, item); err != nil {
			return i, fmt.Errorf("webhook %s: item %d: %w", t.where, i, err)
		}
	}
	return len(items), nil
}

func (t *Transport) sendOne(ctx context.Context, mac hash.Hash, item []byte) error {
	delivery := webhookDeliveryID(item)
	wait := t.backoff
	for attempt := 1; ; attempt++ {
		err := t.post(ctx, mac, item, delivery)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("attempt %d: %w", attempt, ctx.Err())
		}
		_, rejected := errors.AsType[*export.RejectedError](err)
		_, told := errors.AsType[*export.RetryAfterError](err)
		if rejected || told || attempt >= t.attempts {
			return fmt.Errorf("attempt %d/%d: %w", attempt, t.attempts, err)
		}
		// Equal jitter: between half and all of the doubled backoff.
		d := wait/2 + rand.N(wait/2+1)
		wait *= 2
		timer := time.NewTimer(d)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("attempt %d: %w (waiting to retry after: %v)", attempt, ctx.Err(), err)
		case <-timer.C:
		}
	}
}

func (t *Transport) post(ctx context.Context, mac hash.Hash, body []byte, delivery string) error {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header = t.header.Clone()
	req.Header.Set(HeaderDelivery, delivery)
	if mac != nil {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req.Header.Set(HeaderTimestamp, ts)
		req.Header.Set(HeaderSignature, signWebhook(mac, ts, body))
	}
	resp, err := t.client.Do(req)
	if err != nil {
		// url.Error repeats the URL, query tokens included: keep only
		// the cause.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return fmt.Errorf("posting: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// Drain so the connection is reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	serr := &HTTPStatusError{StatusCode: resp.StatusCode, Body: strings.TrimSpace(string(head))}
	switch c := resp.StatusCode; {
	case c == http.StatusTooManyRequests || c == http.StatusServiceUnavailable:
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return &export.RetryAfterError{Delay: d, Err: serr}
		}
		return serr
	case c >= 400 && c < 500 && !retryable4xx(c):
		return &export.RejectedError{Err: serr}
	}
	return serr
}

// retryable4xx are the client errors that say nothing against the item:
// a timeout, throttling, or the sender's credentials or URL, which an
// operator fixes; dropping every alert meanwhile would be worse.
func retryable4xx(code int) bool {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusProxyAuthRequired, http.StatusRequestTimeout, http.StatusTooEarly,
		http.StatusTooManyRequests:
		return true
	}
	return false
}

// parseRetryAfter reads delta-seconds or an HTTP date, bounded to
// [0, maxRetryAfter].
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if s, err := strconv.ParseUint(v, 10, 64); err == nil {
		d = maxRetryAfter
		if s < uint64(maxRetryAfter/time.Second) {
			d = time.Duration(s) * time.Second
		}
	} else if at, err := http.ParseTime(v); err == nil {
		d = at.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, 0), maxRetryAfter), true
}

// webhookDeliveryID derives the delivery header from the item: the
// alert's id, state and time ("<id>/<state>/<time>", id path-escaped)
// for Vigil's schema; for other bodies, "sha256:" and the first 32 hex
// digits of the body's SHA-256. Either is the same on every retry.
func webhookDeliveryID(body []byte) string {
	var a struct{ ID, State, Time string }
	if json.Unmarshal(body, &a) == nil && a.ID != "" && a.State != "" && a.Time != "" &&
		headerSafe(a.State) && headerSafe(a.Time) {
		return url.PathEscape(a.ID) + "/" + a.State + "/" + a.Time
	}
	sum := sha256.Sum256(body)
	return "sha256:" + hex.EncodeToString(sum[:16])
}

func headerSafe(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '/' })
}

// Close closes idle connections; the next Send opens new ones.
func (t *Transport) Close() error {
	t.client.CloseIdleConnections()
	return nil
}
