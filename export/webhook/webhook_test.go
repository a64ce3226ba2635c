package export

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
