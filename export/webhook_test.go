package export

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/flow"
)

const whSecret = "s3cret-shared-with-the-receiver"

var whT0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func whAlert(i int) flow.Alert {
	t := whT0.Add(time.Duration(i) * time.Second)
	return flow.Alert{
		ID: fmt.Sprintf("syn_flood/198.51.100.%d", i), Rule: "syn_flood", State: flow.AlertStart, Severity: flow.SeverityHigh,
		Key:  []flow.KeyValue{{Name: "dst_addr", Value: fmt.Sprintf("198.51.100.%d", i)}},
		Time: t.UnixNano(), Start: t.Add(-time.Second).UnixNano(), End: t.UnixNano(),
		Packets: 100000, Bytes: 6400000, PeakPPS: 100000, PeakBPS: 51.2e6, CurrentPPS: 90000, CurrentBPS: 46e6,
		TopSources: []flow.Top{{Value: "192.0.2.1", Packets: 60000}, {Value: "192.0.2.2", Packets: 40000}},
		TopPorts:   []flow.Top{{Value: "tcp/443", Packets: 100000}}, SamplingRate: 100,
		Techniques: []string{"T1498.001", "T1499.002"}, Summary: "SYN flood against 198.51.100.x",
	}
}

func whItems(n int) [][]byte {
	enc, err := NewWebhookEncoder("", OCSFProduct{})
	if err != nil {
		panic(err)
	}
	items := make([][]byte, n)
	for i := range items {
		a := whAlert(i)
		items[i] = enc.AppendAlert(nil, &a)
	}
	return items
}

// whRequest is one request the receiver saw.
type whRequest struct {
	body     []byte
	header   http.Header
	verified error
	status   int
}

// whReceiver is a webhook endpoint that verifies signatures as a real
// receiver would, answers with respond, and keeps what it saw.
type whReceiver struct {
	srv *httptest.Server
	// respond picks the answer to request n (0-based) that passed
	// verification; nil answers 204.
	respond func(n int, w http.ResponseWriter) int
	clock   func() time.Time // the receiver's clock; nil is time.Now

	mu        sync.Mutex
	requests  []whRequest
	delivered [][]byte
}

func newWHReceiver(t *testing.T, respond func(n int, w http.ResponseWriter) int) *whReceiver {
	rc := &whReceiver{respond: respond}
	rc.srv = httptest.NewServer(rc)
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *whReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	now := time.Now()
	if rc.clock != nil {
		now = rc.clock()
	}
	verr := VerifyWebhookSignature(whSecret, r.Header.Get(HeaderWebhookTimestamp), r.Header.Get(HeaderWebhookSignature), body, now, 5*time.Minute)
	rc.mu.Lock()
	n := len(rc.requests)
	rc.requests = append(rc.requests, whRequest{body: body, header: r.Header.Clone(), verified: verr})
	rc.mu.Unlock()
	status := http.StatusNoContent
	switch {
	case r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json":
		status = http.StatusMethodNotAllowed
		w.WriteHeader(status)
	case verr != nil:
		status = http.StatusUnauthorized
		http.Error(w, verr.Error(), status)
	case rc.respond != nil:
		status = rc.respond(n, w)
	default:
		w.WriteHeader(status)
	}
	rc.mu.Lock()
	rc.requests[n].status = status
	if status/100 == 2 {
		rc.delivered = append(rc.delivered, body)
	}
	rc.mu.Unlock()
}

func (rc *whReceiver) seen() ([]whRequest, [][]byte) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]whRequest(nil), rc.requests...), append([][]byte(nil), rc.delivered...)
}

func newWHTransport(t *testing.T, url string, edit func(*WebhookConfig)) *WebhookTransport {
	t.Helper()
	cfg := DefaultWebhookConfig()
	cfg.URL, cfg.Secret, cfg.Version, cfg.Backoff = url, []byte(whSecret), "1.2.3", time.Millisecond
	if edit != nil {
		edit(&cfg)
	}
	tr, err := NewWebhookTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// sendWithin runs Send and fails the test if it does not return in time.
func sendWithin(t *testing.T, ctx context.Context, tr Transport, items [][]byte) (int, error) {
	t.Helper()
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := tr.Send(ctx, items)
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		return r.n, r.err
	case <-time.After(20 * time.Second):
		t.Fatal("Send did not return within 20 s")
		return 0, nil
	}
}

func TestWebhookEncoder(t *testing.T) {
	enc, err := NewWebhookEncoder("", OCSFProduct{})
	if err != nil {
		t.Fatal(err)
	}
	var _ Encoder = enc
	if enc.Kinds() != KindAlerts {
		t.Errorf("Kinds() = %v, want KindAlerts only", enc.Kinds())
	}
	dst := []byte("prefix")
	if got := enc.AppendFlow(dst, &flow.Record{}); string(got) != "prefix" {
		t.Errorf("AppendFlow changed dst: %q", got)
	}
	a := whAlert(1)
	if got, want := enc.AppendAlert([]byte("x"), &a), AppendAlertJSON([]byte("x"), &a); !bytes.Equal(got, want) {
		t.Errorf("AppendAlert = %s, want AppendAlertJSON's %s", got, want)
	}
	if v, err := NewWebhookEncoder(WebhookFormatVigil, OCSFProduct{}); err != nil || v.format != WebhookFormatVigil {
		t.Errorf("NewWebhookEncoder(vigil, OCSFProduct{}) = %v, %v", v, err)
	}
	ocsf, err := NewWebhookEncoder(WebhookFormatOCSF, OCSFProduct{Version: "1.2.3", Sensor: "gw1"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ocsf.AppendAlert(nil, &a), AppendAlertOCSF(nil, &a, OCSFProduct{Version: "1.2.3", Sensor: "gw1"}); !bytes.Equal(got, want) {
		t.Errorf("OCSF AppendAlert = %s, want AppendAlertOCSF's %s", got, want)
	}
	if _, err := NewWebhookEncoder("xml", OCSFProduct{}); err == nil {
		t.Error("NewWebhookEncoder(xml, OCSFProduct{}) accepted an unknown format")
	}
	buf := make([]byte, 0, 4096)
	if allocs := testing.AllocsPerRun(100, func() { buf = enc.AppendAlert(buf[:0], &a) }); allocs != 0 {
		t.Errorf("AppendAlert into a reused buffer: %v allocs, want 0", allocs)
	}
}

func TestWebhookDeliversSignedInOrder(t *testing.T) {
	rc := newWHReceiver(t, nil)
	tr := newWHTransport(t, rc.srv.URL+"/hook?token=abc", func(c *WebhookConfig) {
		c.Headers = map[string]string{"Authorization": "Bearer t0ken", "X-Tenant": "edge-7"}
	})
	var _ Transport = tr
	items := whItems(5)
	n, err := sendWithin(t, t.Context(), tr, items)
	if n != 5 || err != nil {
		t.Fatalf("Send = %d, %v; want 5, nil", n, err)
	}
	// Send reconnects after Close.
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := sendWithin(t, t.Context(), tr, items[:1]); n != 1 || err != nil {
		t.Fatalf("Send after Close = %d, %v; want 1, nil", n, err)
	}
	reqs, delivered := rc.seen()
	if len(reqs) != 6 || len(delivered) != 6 {
		t.Fatalf("receiver saw %d requests, %d delivered; want 6, 6", len(reqs), len(delivered))
	}
	for i, r := range reqs {
		want := items[i%5]
		if r.verified != nil {
			t.Errorf("request %d: signature: %v", i, r.verified)
		}
		if !bytes.Equal(r.body, want) {
			t.Errorf("request %d body = %s, want item %d %s", i, r.body, i%5, want)
		}
		h := r.header
		for name, v := range map[string]string{
			"User-Agent": "vigil/1.2.3", "Content-Type": "application/json",
			"Authorization": "Bearer t0ken", "X-Tenant": "edge-7",
			HeaderWebhookDelivery: fmt.Sprintf("syn_flood%%2F198.51.100.%d/start/%s", i%5,
				whT0.Add(time.Duration(i%5)*time.Second).Format(timeLayout)),
		} {
			if got := h.Get(name); got != v {
				t.Errorf("request %d: %s = %q, want %q", i, name, got, v)
			}
		}
		ts, err := strconv.ParseInt(h.Get(HeaderWebhookTimestamp), 10, 64)
		if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
			t.Errorf("request %d: timestamp %q is not now", i, h.Get(HeaderWebhookTimestamp))
		}
	}
}

// TestWebhookSignatureScheme computes the documented scheme by hand and
// checks that the verifier accepts it and refuses every alteration.
func TestWebhookSignatureScheme(t *testing.T) {
	body := whItems(1)[0]
	now := time.Unix(1_790_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	sign := func(secret, ts string, body []byte) string {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(ts + "." + string(body)))
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	good := sign(whSecret, ts, body)
	if got := signWebhook(hmac.New(sha256.New, []byte(whSecret)), ts, body); got != good {
		t.Fatalf("transport signs %s, documented scheme gives %s", got, good)
	}
	tampered := bytes.Replace(body, []byte(`"severity":"high"`), []byte(`"severity":"info"`), 1)
	if bytes.Equal(tampered, body) {
		t.Fatal("tampering changed nothing")
	}
	old := strconv.FormatInt(now.Add(-301*time.Second).Unix(), 10)
	future := strconv.FormatInt(now.Add(301*time.Second).Unix(), 10)
	edge := strconv.FormatInt(now.Add(-300*time.Second).Unix(), 10)
	for _, c := range []struct {
		name, secret, ts, sig string
		body                  []byte
		want                  error // nil: accepted
	}{
		{"good", whSecret, ts, good, body, nil},
		{"good at the skew's edge", whSecret, edge, sign(whSecret, edge, body), body, nil},
		{"wrong secret", "not-the-secret", ts, good, body, ErrWebhookSignature},
		{"signed with a wrong secret", whSecret, ts, sign("not-the-secret", ts, body), body, ErrWebhookSignature},
		{"tampered body", whSecret, ts, good, tampered, ErrWebhookSignature},
		{"timestamp swapped", whSecret, strconv.FormatInt(now.Unix()+1, 10), good, body, ErrWebhookSignature},
		{"stale timestamp, validly signed", whSecret, old, sign(whSecret, old, body), body, ErrWebhookStale},
		{"future timestamp, validly signed", whSecret, future, sign(whSecret, future, body), body, ErrWebhookStale},
		{"no sha256= prefix", whSecret, ts, strings.TrimPrefix(good, "sha256="), body, ErrWebhookMalformed},
		{"not hex", whSecret, ts, "sha256=" + strings.Repeat("zz", 32), body, ErrWebhookMalformed},
		{"short", whSecret, ts, good[:len(good)-2], body, ErrWebhookMalformed},
		{"timestamp not a number", whSecret, "yesterday", good, body, ErrWebhookMalformed},
		{"empty", whSecret, "", "", body, ErrWebhookMalformed},
		{"empty secret", "", ts, sign("", ts, body), body, ErrWebhookSignature},
	} {
		err := VerifyWebhookSignature(c.secret, c.ts, c.sig, c.body, now, 5*time.Minute)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: VerifyWebhookSignature = %v, want %v", c.name, err, c.want)
		}
	}
}

// TestWebhookReceiverRefuses runs the receiver's verification over HTTP:
// a sender with the wrong secret, a body changed on the way, and a
// receiver whose clock is ahead are all refused, and nothing counts as
// delivered.
func TestWebhookReceiverRefuses(t *testing.T) {
	for _, c := range []struct {
		name   string
		secret string
		wrap   func(http.Handler) http.Handler
		clock  func() time.Time
		want   error
	}{
		{name: "wrong secret", secret: "guessed", want: ErrWebhookSignature},
		{name: "tampered on the way", secret: whSecret, want: ErrWebhookSignature,
			wrap: func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(r.Body)
					body = bytes.Replace(body, []byte(`"packets":100000`), []byte(`"packets":100001`), 1)
					r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
					h.ServeHTTP(w, r)
				})
			}},
		{name: "replayed 10 minutes later", secret: whSecret, want: ErrWebhookStale,
			clock: func() time.Time { return time.Now().Add(10 * time.Minute) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := &whReceiver{clock: c.clock}
			var h http.Handler = rc
			if c.wrap != nil {
				h = c.wrap(h)
			}
			rc.srv = httptest.NewServer(h)
			t.Cleanup(rc.srv.Close)
			tr := newWHTransport(t, rc.srv.URL, func(cfg *WebhookConfig) { cfg.Secret = []byte(c.secret) })
			n, err := sendWithin(t, t.Context(), tr, whItems(2))
			if n != 0 || err == nil {
				t.Fatalf("Send = %d, %v; want 0 and an error", n, err)
			}
			reqs, delivered := rc.seen()
			if len(delivered) != 0 || len(reqs) != 3 {
				t.Fatalf("receiver: %d requests (want 3 attempts of item 0), %d delivered (want 0)", len(reqs), len(delivered))
			}
			for i, r := range reqs {
				if !errors.Is(r.verified, c.want) || r.status != http.StatusUnauthorized {
					t.Errorf("request %d: verification %v, status %d; want %v, 401", i, r.verified, r.status, c.want)
				}
			}
			// 401 is the sender's configuration, not the item: retryable.
			if se, ok := errors.AsType[*HTTPStatusError](err); !ok || se.StatusCode != 401 {
				t.Errorf("error %v: want an HTTP 401", err)
			}
			if _, ok := errors.AsType[*RejectedError](err); ok {
				t.Errorf("error %v: a 401 must not drop the item", err)
			}
		})
	}
}

func TestWebhookRetriesServerErrors(t *testing.T) {
	codes := []int{500, 502, 503}
	rc := newWHReceiver(t, func(n int, w http.ResponseWriter) int {
		if n < len(codes) {
			http.Error(w, "busy", codes[n])
			return codes[n]
		}
		w.WriteHeader(http.StatusOK)
		return http.StatusOK
	})
	tr := newWHTransport(t, rc.srv.URL, func(c *WebhookConfig) { c.Attempts = 4 })
	items := whItems(2)
	n, err := sendWithin(t, t.Context(), tr, items)
	if n != 2 || err != nil {
		t.Fatalf("Send = %d, %v; want 2, nil", n, err)
	}
	reqs, delivered := rc.seen()
	if len(reqs) != 5 || len(delivered) != 2 || !bytes.Equal(delivered[0], items[0]) || !bytes.Equal(delivered[1], items[1]) {
		t.Fatalf("receiver: %d requests (want 4 attempts + 1), %d delivered (want items 0, 1)", len(reqs), len(delivered))
	}
	id := reqs[0].header.Get(HeaderWebhookDelivery)
	for i, r := range reqs[:4] {
		if got := r.header.Get(HeaderWebhookDelivery); got != id || !bytes.Equal(r.body, items[0]) {
			t.Errorf("attempt %d: delivery %q, body changed: %v; want the same item and id %q", i, got, !bytes.Equal(r.body, items[0]), id)
		}
	}
	if reqs[4].header.Get(HeaderWebhookDelivery) == id {
		t.Error("two items share one delivery id")
	}
}

func TestWebhookGivesUpAfterAttempts(t *testing.T) {
	rc := newWHReceiver(t, func(_ int, w http.ResponseWriter) int {
		http.Error(w, "down for maintenance", http.StatusInternalServerError)
		return 500
	})
	tr := newWHTransport(t, rc.srv.URL, nil)
	n, err := sendWithin(t, t.Context(), tr, whItems(3))
	reqs, _ := rc.seen()
	if n != 0 || len(reqs) != 3 {
		t.Fatalf("Send = %d after %d requests; want 0 after 3 attempts", n, len(reqs))
	}
	se, ok := errors.AsType[*HTTPStatusError](err)
	if !ok || se.StatusCode != 500 || se.Body != "down for maintenance" {
		t.Errorf("error %v: want HTTP 500 with the body", err)
	}
	if _, ok := errors.AsType[*RejectedError](err); ok {
		t.Errorf("error %v: a 500 is retryable, not rejected", err)
	}
}

func TestWebhookRetryAfter(t *testing.T) {
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	for _, c := range []struct {
		code       int
		retryAfter string
		min, max   time.Duration
	}{
		{429, "7", 7 * time.Second, 7 * time.Second},
		{503, date, 80 * time.Second, 90 * time.Second},
		{429, "99999999", time.Hour, time.Hour},
	} {
		rc := newWHReceiver(t, func(n int, w http.ResponseWriter) int {
			if n == 0 {
				w.WriteHeader(http.StatusNoContent)
				return http.StatusNoContent
			}
			w.Header().Set("Retry-After", c.retryAfter)
			w.WriteHeader(c.code)
			return c.code
		})
		tr := newWHTransport(t, rc.srv.URL, nil)
		n, err := sendWithin(t, t.Context(), tr, whItems(3))
		reqs, delivered := rc.seen()
		if n != 1 || len(delivered) != 1 || len(reqs) != 2 {
			t.Errorf("%d Retry-After %s: Send = %d after %d requests; want 1 after 2 (no retry inside Send)", c.code, c.retryAfter, n, len(reqs))
		}
		ra, ok := errors.AsType[*RetryAfterError](err)
		if !ok || ra.Delay < c.min || ra.Delay > c.max {
			t.Errorf("%d Retry-After %s: error %v; want a RetryAfterError with delay in [%v, %v]", c.code, c.retryAfter, err, c.min, c.max)
			continue
		}
		if se, ok := errors.AsType[*HTTPStatusError](err); !ok || se.StatusCode != c.code {
			t.Errorf("error %v does not carry HTTP %d", err, c.code)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"120", 2 * time.Minute, true},
		{" 0 ", 0, true},
		{"Sun, 22 Nov 2026 10:00:30 GMT", 30 * time.Second, true},
		{"Sun, 22 Nov 2026 09:00:00 GMT", 0, true},
		{"18446744073709551615", time.Hour, true},
		{"", 0, false},
		{"-1", 0, false},
		{"soon", 0, false},
	} {
		got, ok := parseRetryAfter(c.in, now)
		if got != c.want || ok != c.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestWebhookRejected(t *testing.T) {
	rc := newWHReceiver(t, func(n int, w http.ResponseWriter) int {
		if n == 2 {
			http.Error(w, "unknown field severity", http.StatusBadRequest)
			return 400
		}
		w.WriteHeader(http.StatusAccepted)
		return http.StatusAccepted
	})
	tr := newWHTransport(t, rc.srv.URL, nil)
	items := whItems(4)
	n, err := sendWithin(t, t.Context(), tr, items)
	if n != 2 {
		t.Fatalf("Send = %d, %v; want 2 (item 2 rejected)", n, err)
	}
	rej, ok := errors.AsType[*RejectedError](err)
	if !ok {
		t.Fatalf("error %v: want a RejectedError", err)
	}
	se, ok := errors.AsType[*HTTPStatusError](rej)
	if !ok || se.StatusCode != 400 || se.Body != "unknown field severity" {
		t.Errorf("rejection %v: want HTTP 400 with the receiver's reason", rej)
	}
	reqs, delivered := rc.seen()
	if len(reqs) != 3 || len(delivered) != 2 || !bytes.Equal(reqs[2].body, items[2]) {
		t.Errorf("receiver: %d requests, %d delivered; want 3 (no retry of a 400), 2", len(reqs), len(delivered))
	}
	// The caller drops item 2 and sends the rest.
	if n, err := sendWithin(t, t.Context(), tr, items[3:]); n != 1 || err != nil {
		t.Errorf("Send of the rest = %d, %v; want 1, nil", n, err)
	}
}

// TestWebhookStatusClasses checks which answers drop the item, which are
// retried, and that a redirect is not followed.
func TestWebhookStatusClasses(t *testing.T) {
	var hits sync.Map
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Store(r.URL.Path, true)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(other.Close)
	for _, c := range []struct {
		code     int
		rejected bool
	}{
		{400, true}, {405, true}, {409, true}, {413, true}, {415, true}, {422, true},
		{401, false}, {403, false}, {404, false}, {408, false}, {429, false},
		{500, false}, {504, false}, {307, false}, {302, false},
	} {
		rc := newWHReceiver(t, func(_ int, w http.ResponseWriter) int {
			if c.code/100 == 3 {
				w.Header().Set("Location", other.URL+"/moved")
			}
			w.WriteHeader(c.code)
			return c.code
		})
		tr := newWHTransport(t, rc.srv.URL, func(cfg *WebhookConfig) { cfg.Attempts = 2 })
		n, err := sendWithin(t, t.Context(), tr, whItems(1))
		reqs, _ := rc.seen()
		_, rejected := errors.AsType[*RejectedError](err)
		se, ok := errors.AsType[*HTTPStatusError](err)
		switch {
		case n != 0 || !ok || se.StatusCode != c.code:
			t.Errorf("HTTP %d: Send = %d, %v", c.code, n, err)
		case rejected != c.rejected:
			t.Errorf("HTTP %d: rejected = %v, want %v (%v)", c.code, rejected, c.rejected, err)
		case c.rejected && len(reqs) != 1, !c.rejected && len(reqs) != 2:
			t.Errorf("HTTP %d: %d attempts", c.code, len(reqs))
		}
	}
	if _, ok := hits.Load("/moved"); ok {
		t.Error("a redirect was followed")
	}
}

// whBlocking answers nothing until the client gives up; arrived gets a
// value per request.
func whBlocking(t *testing.T) (*httptest.Server, chan struct{}) {
	arrived := make(chan struct{}, 16)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // before srv.Close, which waits for handlers
	return srv, arrived
}

func TestWebhookCancelStopsSlowServer(t *testing.T) {
	srv, arrived := whBlocking(t)
	tr := newWHTransport(t, srv.URL, func(c *WebhookConfig) { c.Timeout = time.Hour })
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
		}
		cancel()
	}()
	n, err := sendWithin(t, ctx, tr, whItems(2))
	if n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Send = %d, %v; want 0, context.Canceled", n, err)
	}
}

func TestWebhookCancelDuringBackoff(t *testing.T) {
	rc := newWHReceiver(t, func(_ int, w http.ResponseWriter) int {
		w.WriteHeader(http.StatusBadGateway)
		return 502
	})
	tr := newWHTransport(t, rc.srv.URL, func(c *WebhookConfig) { c.Backoff = time.Hour })
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	n, err := sendWithin(t, ctx, tr, whItems(1))
	reqs, _ := rc.seen()
	if n != 0 || !errors.Is(err, context.DeadlineExceeded) || len(reqs) != 1 {
		t.Fatalf("Send = %d, %v after %d requests; want 0, deadline exceeded, 1 request", n, err, len(reqs))
	}
	if se, ok := errors.AsType[*HTTPStatusError](err); ok {
		t.Errorf("error %v: the ctx error, not the 502, is the cause (502 = %v)", err, se)
	}
}

func TestWebhookTimeout(t *testing.T) {
	srv, arrived := whBlocking(t)
	tr := newWHTransport(t, srv.URL+"/hook?token=sekrit", func(c *WebhookConfig) { c.Timeout = 50 * time.Millisecond; c.Attempts = 2 })
	n, err := sendWithin(t, t.Context(), tr, whItems(1))
	if n != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send = %d, %v; want 0, a deadline exceeded", n, err)
	}
	if _, ok := errors.AsType[*RejectedError](err); ok {
		t.Errorf("a timeout must be retryable: %v", err)
	}
	if len(arrived) != 2 {
		t.Errorf("server saw %d requests, want 2 attempts", len(arrived))
	}
	if strings.Contains(err.Error(), "sekrit") || !strings.Contains(err.Error(), srv.URL+"/hook") {
		t.Errorf("error should name the endpoint without its query: %v", err)
	}
}

func TestWebhookTLS(t *testing.T) {
	var got int
	var mu sync.Mutex
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := VerifyWebhookSignature(whSecret, r.Header.Get(HeaderWebhookTimestamp), r.Header.Get(HeaderWebhookSignature), body, time.Now(), time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		mu.Lock()
		got++
		mu.Unlock()
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(*WebhookConfig)
		ok   bool
	}{
		{"ca file", func(c *WebhookConfig) { c.CAFile = ca }, true},
		{"insecure", func(c *WebhookConfig) { c.InsecureSkipVerify = true }, true},
		{"system roots", nil, false},
	} {
		tr := newWHTransport(t, srv.URL, func(cfg *WebhookConfig) {
			cfg.Attempts = 1
			if c.edit != nil {
				c.edit(cfg)
			}
		})
		n, err := sendWithin(t, t.Context(), tr, whItems(1))
		if c.ok && (n != 1 || err != nil) || !c.ok && (n != 0 || err == nil || !strings.Contains(err.Error(), "certificate")) {
			t.Errorf("%s: Send = %d, %v", c.name, n, err)
		}
	}
	if got != 2 {
		t.Errorf("server accepted %d, want 2", got)
	}
}

// whClientCert makes a CA and a client certificate it signs, and writes
// the client's certificate and key as PEM files.
func whClientCert(t *testing.T) (ca *x509.Certificate, certFile, keyFile string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, key := newKey(), newKey()
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "receiver's client CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "sensor-gw1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca, certFile, keyFile
}

// TestWebhookMutualTLS: a receiver that requires a client certificate
// accepts the configured one and refuses a sender without it; the
// server name to verify can differ from the URL's host.
func TestWebhookMutualTLS(t *testing.T) {
	ca, certFile, keyFile := whClientCert(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	var clients sync.Map
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clients.Store(r.TLS.PeerCertificates[0].Subject.CommonName, true)
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	serverCA := filepath.Join(t.TempDir(), "server-ca.pem")
	if err := os.WriteFile(serverCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		cert       bool
		serverName string
		ok         bool
	}{
		{"client certificate", true, "", true},
		{"server name in the certificate", true, "example.com", true}, // httptest's certificate names example.com
		{"server name not in the certificate", true, "other.test", false},
		{"no client certificate", false, "", false},
	} {
		tr := newWHTransport(t, srv.URL, func(cfg *WebhookConfig) {
			cfg.Attempts, cfg.CAFile, cfg.ServerName = 1, serverCA, c.serverName
			if c.cert {
				cfg.CertFile, cfg.KeyFile = certFile, keyFile
			}
		})
		n, err := sendWithin(t, t.Context(), tr, whItems(1))
		if c.ok != (n == 1 && err == nil) {
			t.Errorf("%s: Send = %d, %v", c.name, n, err)
		}
	}
	if _, ok := clients.Load("sensor-gw1"); !ok {
		t.Error("the receiver never saw the client certificate")
	}
}

// TestWebhookOCSF posts OCSF bodies: signed like Vigil's, with a
// delivery id from the body's hash that stays the same on a retry.
func TestWebhookOCSF(t *testing.T) {
	product := OCSFProduct{Version: "1.2.3", Sensor: "gw1"}
	enc, err := NewWebhookEncoder(WebhookFormatOCSF, product)
	if err != nil {
		t.Fatal(err)
	}
	a := whAlert(1)
	buf := make([]byte, 0, 8192)
	if allocs := testing.AllocsPerRun(100, func() { buf = enc.AppendAlert(buf[:0], &a) }); allocs != 0 {
		t.Errorf("OCSF AppendAlert into a reused buffer: %v allocs, want 0", allocs)
	}
	items := [][]byte{enc.AppendAlert(nil, &a)}
	a.State = flow.AlertEnd
	items = append(items, enc.AppendAlert(nil, &a))
	rc := newWHReceiver(t, func(n int, w http.ResponseWriter) int {
		if n == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return 503
		}
		w.WriteHeader(http.StatusOK)
		return 200
	})
	tr := newWHTransport(t, rc.srv.URL, nil)
	if n, err := sendWithin(t, t.Context(), tr, items); n != 2 || err != nil {
		t.Fatalf("Send = %d, %v; want 2, nil", n, err)
	}
	reqs, delivered := rc.seen()
	if len(reqs) != 3 || len(delivered) != 2 {
		t.Fatalf("receiver: %d requests, %d delivered; want 3, 2", len(reqs), len(delivered))
	}
	var ev struct {
		ClassUID int `json:"class_uid"`
	}
	if err := json.Unmarshal(delivered[0], &ev); err != nil || ev.ClassUID != OCSFClassDetectionFinding {
		t.Errorf("delivered body is not a Detection Finding (%v): %s", err, delivered[0])
	}
	ids := []string{reqs[0].header.Get(HeaderWebhookDelivery), reqs[1].header.Get(HeaderWebhookDelivery), reqs[2].header.Get(HeaderWebhookDelivery)}
	if !strings.HasPrefix(ids[0], "sha256:") || ids[0] != ids[1] || ids[2] == ids[0] {
		t.Errorf("delivery ids %q: want sha256: ids, equal for the retry, different for the next alert", ids)
	}
}

func TestWebhookUnsigned(t *testing.T) {
	rc := newWHReceiver(t, nil)
	tr := newWHTransport(t, rc.srv.URL, func(c *WebhookConfig) { c.Secret = nil })
	if n, err := sendWithin(t, t.Context(), tr, whItems(1)); n != 0 || err == nil {
		t.Fatalf("unsigned Send to a verifying receiver = %d, %v; want refused", n, err)
	}
	reqs, _ := rc.seen()
	if len(reqs) == 0 || reqs[0].header.Get(HeaderWebhookSignature) != "" || reqs[0].header.Get(HeaderWebhookTimestamp) != "" ||
		!errors.Is(reqs[0].verified, ErrWebhookMalformed) {
		t.Errorf("unsigned request: %+v", reqs)
	}
}

func TestWebhookConfigErrors(t *testing.T) {
	noPEM := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(noPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(*WebhookConfig)
		want string
	}{
		{"no url", func(c *WebhookConfig) { c.URL = "" }, "http or https"},
		{"ftp", func(c *WebhookConfig) { c.URL = "ftp://example.test/x" }, "http or https"},
		{"no host", func(c *WebhookConfig) { c.URL = "http:///x" }, "http or https"},
		{"bad url", func(c *WebhookConfig) { c.URL = "http://[::1" }, "webhook url"},
		{"reserved header", func(c *WebhookConfig) { c.Headers = map[string]string{"x-vigil-signature": "x"} }, "set by vigil"},
		{"content-type", func(c *WebhookConfig) { c.Headers = map[string]string{"Content-Type": "text/plain"} }, "set by vigil"},
		{"header name", func(c *WebhookConfig) { c.Headers = map[string]string{"Bad Name": "x"} }, "valid header name"},
		{"header injection", func(c *WebhookConfig) { c.Headers = map[string]string{"X-A": "1\r\nX-B: 2"} }, "control character"},
		{"missing ca", func(c *WebhookConfig) { c.CAFile = "/nonexistent/ca.pem" }, "ca_file"},
		{"ca without pem", func(c *WebhookConfig) { c.CAFile = noPEM }, "no PEM"},
		{"cert without key", func(c *WebhookConfig) { c.CertFile = noPEM }, "both or neither"},
		{"bad client cert", func(c *WebhookConfig) { c.CertFile, c.KeyFile = noPEM, noPEM }, "client certificate"},
	} {
		cfg := DefaultWebhookConfig()
		cfg.URL = "https://example.test/hook"
		c.edit(&cfg)
		if _, err := NewWebhookTransport(cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: NewWebhookTransport error %v, want %q", c.name, err, c.want)
		}
	}
}

func TestWebhookDeliveryID(t *testing.T) {
	a := whAlert(3)
	a.ID, a.State = "dns amp/10.0.0.1", flow.AlertEnd
	body := AppendAlertJSON(nil, &a)
	if got, want := webhookDeliveryID(body), "dns%20amp%2F10.0.0.1/end/2026-11-22T10:00:03.000000000Z"; got != want {
		t.Errorf("delivery id = %q, want %q", got, want)
	}
	other := []byte(`{"class_uid":2004,"time":1790000000000}`)
	got := webhookDeliveryID(other)
	if !strings.HasPrefix(got, "sha256:") || len(got) != len("sha256:")+32 || got != webhookDeliveryID(bytes.Clone(other)) {
		t.Errorf("delivery id of a non-Vigil body = %q, want a stable sha256: id", got)
	}
	if webhookDeliveryID([]byte(`{"class_uid":2005}`)) == got {
		t.Error("different bodies share a delivery id")
	}
}
