package export

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sensor/vigil/flow"
)

// Webhook headers (docs/WEBHOOK.md).
const (
	// HeaderWebhookTimestamp carries the Unix time in seconds at which
	// the request was signed.
	HeaderWebhookTimestamp = "X-Vigil-Timestamp"
	// HeaderWebhookSignature carries "sha256=" and the hex HMAC-SHA256
	// of timestamp + "." + body under the shared secret.
	HeaderWebhookSignature = "X-Vigil-Signature"
	// HeaderWebhookDelivery is the same for every retry of one item, so
	// a receiver can drop duplicates of at-least-once delivery.
	HeaderWebhookDelivery = "X-Vigil-Delivery"
)

// WebhookFormat names the JSON body a webhook sends.
type WebhookFormat string

// Webhook body formats.
const (
	WebhookFormatVigil WebhookFormat = "vigil" // AppendAlertJSON, docs/FLOWS.md
	WebhookFormatOCSF  WebhookFormat = "ocsf"  // AppendAlertOCSF, docs/OCSF.md
)

// WebhookEncoder makes one webhook body per alert: the item is the exact
// JSON the transport posts. It carries alerts only.
type WebhookEncoder struct {
	format  WebhookFormat
	product OCSFProduct
}

// NewWebhookEncoder returns an encoder of bodies in format; "" means
// "vigil". product fills the OCSF metadata.
func NewWebhookEncoder(format WebhookFormat, product OCSFProduct) (*WebhookEncoder, error) {
	switch format {
	case "", WebhookFormatVigil:
		return &WebhookEncoder{format: WebhookFormatVigil}, nil
	case WebhookFormatOCSF:
		return &WebhookEncoder{format: format, product: product}, nil
	}
	return nil, fmt.Errorf("webhook format %q: want %q or %q", format, WebhookFormatVigil, WebhookFormatOCSF)
}

// Kinds returns KindAlerts.
func (e *WebhookEncoder) Kinds() Kinds { return KindAlerts }

// AppendFlow returns dst unchanged: webhooks carry no flows.
func (e *WebhookEncoder) AppendFlow(dst []byte, _ *flow.Record) []byte { return dst }

// AppendAlert appends the JSON body for a to dst.
func (e *WebhookEncoder) AppendAlert(dst []byte, a *flow.Alert) []byte {
	if e.format == WebhookFormatOCSF {
		return AppendAlertOCSF(dst, a, e.product)
	}
	return AppendAlertJSON(dst, a)
}

// RejectedError says that item n (the count Send returned) is rejected
// by the upstream and will not be accepted on retry: the caller drops
// it and counts it.
type RejectedError struct{ Err error }

func (e *RejectedError) Error() string { return "rejected by upstream: " + e.Err.Error() }
func (e *RejectedError) Unwrap() error { return e.Err }

// RetryAfterError is a retryable failure for which the upstream asked
// to wait Delay before the next try (HTTP Retry-After on 429 or 503).
type RetryAfterError struct {
	Delay time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %v)", e.Err, e.Delay)
}
func (e *RetryAfterError) Unwrap() error { return e.Err }

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

// WebhookConfig configures a WebhookTransport.
type WebhookConfig struct {
	URL     string            // http:// or https:// endpoint
	Secret  []byte            // HMAC-SHA256 key; empty: requests are not signed
	Headers map[string]string // static extra headers, e.g. Authorization
	Version string            // in the User-Agent "vigil/<version>"
	Timeout time.Duration     // per request, response body included
	// Attempts bounds the tries of one item within one Send (1: no
	// retry); Backoff is the wait before the second, doubled after each
	// try, with jitter. Long outages are the caller's to retry.
	Attempts int
	Backoff  time.Duration
	// TLS, for https: a PEM bundle of CAs to trust instead of the
	// system's, or no verification at all (tests, labs); a client
	// certificate and key (PEM) for mutual TLS; the name to verify and
	// send as SNI when it is not the URL's host.
	CAFile             string
	InsecureSkipVerify bool
	CertFile, KeyFile  string
	ServerName         string
}

// DefaultWebhookConfig returns the defaults: 5 s timeout, 3 attempts,
// 200 ms backoff.
func DefaultWebhookConfig() WebhookConfig {
	return WebhookConfig{Version: "dev", Timeout: 5 * time.Second, Attempts: 3, Backoff: 200 * time.Millisecond}
}

// WebhookTransport posts one item per HTTP request (docs/WEBHOOK.md).
// Send may be called from several goroutines.
type WebhookTransport struct {
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
	HeaderWebhookTimestamp, HeaderWebhookSignature, HeaderWebhookDelivery}

// NewWebhookTransport checks cfg and returns a transport. Zero Timeout,
// Attempts and Backoff take their defaults.
func NewWebhookTransport(cfg WebhookConfig) (*WebhookTransport, error) {
	def := DefaultWebhookConfig()
	if cfg.Timeout <= 0 {
		cfg.Timeout = def.Timeout
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = def.Attempts
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = def.Backoff
	}
	if cfg.Version == "" {
		cfg.Version = def.Version
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("webhook url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook url %q: want an http or https URL with a host", u.Redacted())
	}
	h := http.Header{}
	for name, value := range cfg.Headers {
		if err := checkHeader(name, value); err != nil {
			return nil, err
		}
		h.Set(name, value)
	}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "vigil/"+cfg.Version)

	tlsConf, err := webhookTLS(&cfg)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	tr.MaxIdleConnsPerHost = 4
	return &WebhookTransport{
		url:      u.String(),
		where:    (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String(),
		secret:   bytes.Clone(cfg.Secret),
		header:   h,
		timeout:  cfg.Timeout,
		attempts: cfg.Attempts,
		backoff:  cfg.Backoff,
		client: &http.Client{
			Transport: tr,
			// A redirected POST may become a GET or lose its body:
			// a 3xx is a configuration error, reported and retried.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

func webhookTLS(cfg *WebhookConfig) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify, ServerName: cfg.ServerName}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("webhook ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("webhook ca_file %s: no PEM certificate in it", cfg.CAFile)
		}
		conf.RootCAs = pool
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("webhook cert_file and key_file: give both or neither")
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("webhook client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

func checkHeader(name, value string) error {
	if name == "" || strings.ContainsFunc(name, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
	}) {
		return fmt.Errorf("webhook header %q: not a valid header name", name)
	}
	if strings.ContainsFunc(value, func(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }) {
		return fmt.Errorf("webhook header %s: value holds a control character", name)
	}
	for _, r := range reservedHeaders {
		if strings.EqualFold(name, r) {
			return fmt.Errorf("webhook header %s: set by vigil, cannot be configured", name)
		}
	}
	return nil
}

// Send posts items in order, one request each, and stops at the first
// that fails. A 2xx delivers an item. A network error, timeout, 3xx,
// 5xx, 401, 403, 404, 407, 408, 425 or 429 is retried up to Attempts
// times within Send, then returned; with a Retry-After on 429 or 503
// it is returned at once as a *RetryAfterError. Any other 4xx returns
// a *RejectedError for item n.
func (t *WebhookTransport) Send(ctx context.Context, items [][]byte) (int, error) {
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

func (t *WebhookTransport) sendOne(ctx context.Context, mac hash.Hash, item []byte) error {
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
		_, rejected := errors.AsType[*RejectedError](err)
		_, told := errors.AsType[*RetryAfterError](err)
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

func (t *WebhookTransport) post(ctx context.Context, mac hash.Hash, body []byte, delivery string) error {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header = t.header.Clone()
	req.Header.Set(HeaderWebhookDelivery, delivery)
	if mac != nil {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req.Header.Set(HeaderWebhookTimestamp, ts)
		req.Header.Set(HeaderWebhookSignature, signWebhook(mac, ts, body))
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
			return &RetryAfterError{Delay: d, Err: serr}
		}
		return serr
	case c >= 400 && c < 500 && !retryable4xx(c):
		return &RejectedError{Err: serr}
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

// signWebhook returns "sha256=" and the hex HMAC of ts + "." + body.
func signWebhook(mac hash.Hash, ts string, body []byte) string {
	var sum [sha256.Size]byte
	buf := make([]byte, 0, len("sha256=")+2*sha256.Size)
	buf = append(buf, "sha256="...)
	return string(hex.AppendEncode(buf, webhookMAC(mac, ts, body, sum[:0])))
}

// webhookMAC appends the HMAC of ts + "." + body to dst.
func webhookMAC(mac hash.Hash, ts string, body, dst []byte) []byte {
	mac.Reset()
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return mac.Sum(dst)
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
func (t *WebhookTransport) Close() error {
	t.client.CloseIdleConnections()
	return nil
}

// Errors of VerifyWebhookSignature.
var (
	ErrWebhookMalformed = errors.New("webhook signature or timestamp malformed")
	ErrWebhookStale     = errors.New("webhook timestamp outside the allowed skew")
	ErrWebhookSignature = errors.New("webhook signature does not match")
)

// VerifyWebhookSignature checks a request from a WebhookTransport:
// timestamp and signature are the X-Vigil-Timestamp and
// X-Vigil-Signature headers, body the raw request body. The timestamp
// must be within maxSkew of now (maxSkew <= 0 means 5 minutes), which
// bounds how long a captured request can be replayed.
func VerifyWebhookSignature(secret, timestamp, signature string, body []byte, now time.Time, maxSkew time.Duration) error {
	if secret == "" {
		return fmt.Errorf("%w: empty secret", ErrWebhookSignature)
	}
	if maxSkew <= 0 {
		maxSkew = 5 * time.Minute
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrWebhookMalformed, timestamp)
	}
	hexSum, ok := strings.CutPrefix(signature, "sha256=")
	if !ok {
		return fmt.Errorf("%w: signature does not start with sha256=", ErrWebhookMalformed)
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: signature is not 64 hex digits", ErrWebhookMalformed)
	}
	if skew := now.Sub(time.Unix(ts, 0)); skew > maxSkew || skew < -maxSkew {
		return fmt.Errorf("%w: timestamp %d is %v from now", ErrWebhookStale, ts, skew.Round(time.Second))
	}
	want := webhookMAC(hmac.New(sha256.New, []byte(secret)), timestamp, body, nil)
	if !hmac.Equal(got, want) {
		return ErrWebhookSignature
	}
	return nil
}
