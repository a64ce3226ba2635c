package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/export"
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
	enc, err := NewEncoder("", export.OCSFProduct{})
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
	verr := VerifySignature(whSecret, r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body, now, 5*time.Minute)
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

// whSettings are a transport's Config and options, edited together by
// the tests.
type whSettings struct {
	Config
	options
}

func newWHTransport(t *testing.T, url string, edit func(*whSettings)) *Transport {
	t.Helper()
	cfg := whSettings{Config: DefaultConfig(), options: options{Secret: []byte(whSecret), Version: "1.2.3", Attempts: defaultAttempts, Backoff: time.Millisecond}}
	cfg.URL = url
	if edit != nil {
		edit(&cfg)
	}
	tr, err := newTransport(cfg.Config, cfg.options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// sendWithin runs Send and fails the test if it does not return in time.
func sendWithin(t *testing.T, ctx context.Context, tr export.Transport, items [][]byte) (int, error) {
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
	enc, err := NewEncoder("", export.OCSFProduct{})
	if err != nil {
		t.Fatal(err)
	}
	var _ export.Encoder = enc
	if enc.Kinds() != export.KindAlerts {
		t.Errorf("Kinds() = %v, want KindAlerts only", enc.Kinds())
	}
	dst := []byte("prefix")
	if got := enc.AppendFlow(dst, &flow.Record{}); string(got) != "prefix" {
		t.Errorf("AppendFlow changed dst: %q", got)
	}
	a := whAlert(1)
	if got, want := enc.AppendAlert([]byte("x"), &a), export.AppendAlertJSON([]byte("x"), &a); !bytes.Equal(got, want) {
		t.Errorf("AppendAlert = %s, want AppendAlertJSON's %s", got, want)
	}
	if v, err := NewEncoder(FormatVigil, export.OCSFProduct{}); err != nil || v.format != FormatVigil {
		t.Errorf("NewEncoder(vigil) = %v, %v", v, err)
	}
	ocsf, err := NewEncoder(FormatOCSF, export.OCSFProduct{Version: "1.2.3", Sensor: "gw1"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ocsf.AppendAlert(nil, &a), export.AppendAlertOCSF(nil, &a, export.OCSFProduct{Version: "1.2.3", Sensor: "gw1"}); !bytes.Equal(got, want) {
		t.Errorf("OCSF AppendAlert = %s, want export.AppendAlertOCSF's %s", got, want)
	}
	if _, err := NewEncoder("xml", export.OCSFProduct{}); err == nil {
		t.Error("NewEncoder(xml, export.OCSFProduct{}) accepted an unknown format")
	}
	buf := make([]byte, 0, 4096)
	if allocs := testing.AllocsPerRun(100, func() { buf = enc.AppendAlert(buf[:0], &a) }); allocs != 0 {
		t.Errorf("AppendAlert into a reused buffer: %v allocs, want 0", allocs)
	}
}

func TestWebhookDeliversSignedInOrder(t *testing.T) {
	rc := newWHReceiver(t, nil)
	tr := newWHTransport(t, rc.srv.URL+"/hook?token=abc", func(c *whSettings) {
		c.Headers = map[string]string{"Authorization": "Bearer t0ken", "X-Tenant": "edge-7"}
	})
	var _ export.Transport = tr
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
			HeaderDelivery: fmt.Sprintf("syn_flood%%2F198.51.100.%d/start/%s", i%5,
				whT0.Add(time.Duration(i%5)*time.Second).Format(timeLayout)),
		} {
			if got := h.Get(name); got != v {
				t.Errorf("request %d: %s = %q, want %q", i, name, got, v)
			}
		}
		ts, err := strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64)
		if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
			t.Errorf("request %d: timestamp %q is not now", i, h.Get(HeaderTimestamp))
		}
	}
}

// TestWebhookOCSF posts OCSF bodies: signed like Vigil's, with a
// delivery id from the body's hash that stays the same on a retry.
func TestWebhookOCSF(t *testing.T) {
	product := export.OCSFProduct{Version: "1.2.3", Sensor: "gw1"}
	enc, err := NewEncoder(FormatOCSF, product)
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
	if err := json.Unmarshal(delivered[0], &ev); err != nil || ev.ClassUID != export.OCSFClassDetectionFinding {
		t.Errorf("delivered body is not a Detection Finding (%v): %s", err, delivered[0])
	}
	ids := []string{reqs[0].header.Get(HeaderDelivery), reqs[1].header.Get(HeaderDelivery), reqs[2].header.Get(HeaderDelivery)}
	if !strings.HasPrefix(ids[0], "sha256:") || ids[0] != ids[1] || ids[2] == ids[0] {
		t.Errorf("delivery ids %q: want sha256: ids, equal for the retry, different for the next alert", ids)
	}
}

// Validate reports each problem at its key, and NewTransport refuses
// what Validate refuses.
func TestWebhookConfigErrors(t *testing.T) {
	dir := t.TempDir()
	noPEM := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(noPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptySecret := filepath.Join(dir, "secret")
	if err := os.WriteFile(emptySecret, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"no url", func(c *Config) { c.URL = "" }, "url"},
		{"ftp", func(c *Config) { c.URL = "ftp://example.test/x" }, "url"},
		{"no host", func(c *Config) { c.URL = "http:///x" }, "url"},
		{"bad url", func(c *Config) { c.URL = "http://[::1" }, "url"},
		{"format", func(c *Config) { c.Format = "xml" }, "format"},
		{"timeout", func(c *Config) { c.Timeout.D = 0 }, "timeout"},
		{"reserved header", func(c *Config) { c.Headers = map[string]string{"x-vigil-signature": "x"} }, "headers.x-vigil-signature"},
		{"content-type", func(c *Config) { c.Headers = map[string]string{"Content-Type": "text/plain"} }, "headers.Content-Type"},
		{"header name", func(c *Config) { c.Headers = map[string]string{"Bad Name": "x"} }, "headers.Bad Name"},
		{"header injection", func(c *Config) { c.Headers = map[string]string{"X-A": "1\r\nX-B: 2"} }, "headers.X-A"},
		{"missing secret", func(c *Config) { c.SecretFile = filepath.Join(dir, "missing") }, "secret_file"},
		{"empty secret", func(c *Config) { c.SecretFile = emptySecret }, "secret_file"},
		{"missing ca", func(c *Config) { c.TLS.CAFile = "/nonexistent/ca.pem" }, "tls.ca_file"},
		{"ca without pem", func(c *Config) { c.TLS.CAFile = noPEM }, "tls.ca_file"},
		{"cert without key", func(c *Config) { c.TLS.CertFile = noPEM }, "tls.key_file"},
		{"bad client cert", func(c *Config) { c.TLS.CertFile, c.TLS.KeyFile = noPEM, noPEM }, "tls.cert_file"},
		{"tls over http", func(c *Config) { c.URL, c.TLS.InsecureSkipVerify = "http://example.test/hook", true }, "tls"},
		{"tls enabled over http", func(c *Config) { c.URL, c.TLS.Enabled = "http://example.test/hook", true }, "tls"},
	} {
		cfg := DefaultConfig()
		cfg.URL = "https://example.test/hook"
		c.edit(&cfg)
		if p := cfg.Validate(); len(p) != 1 || p[0].Field != c.field {
			t.Errorf("%s: problems %v, want one at %s", c.name, p, c.field)
		}
		if _, err := NewTransport(cfg, "1.2.3"); err == nil {
			t.Errorf("%s: NewTransport accepted it", c.name)
		}
	}
	ok := DefaultConfig()
	ok.URL = "https://example.test/hook"
	ok.TLS.InsecureSkipVerify = true // https: TLS without enabled
	if _, err := NewTransport(ok, "1.2.3"); err != nil {
		t.Errorf("NewTransport(%+v): %v", ok, err)
	}
}

func TestWebhookDeliveryID(t *testing.T) {
	a := whAlert(3)
	a.ID, a.State = "dns amp/10.0.0.1", flow.AlertEnd
	body := export.AppendAlertJSON(nil, &a)
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

// timeLayout is the time format of Vigil's JSON (export.AppendAlertJSON).
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"
