package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/export"
)

// BenchmarkWebhookEncode is the encode path: one alert into a reused
// buffer.
func BenchmarkWebhookEncode(b *testing.B) {
	enc, err := NewEncoder("", export.OCSFProduct{})
	if err != nil {
		b.Fatal(err)
	}
	a := whAlert(1)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = enc.AppendAlert(buf[:0], &a)
	}
	b.ReportMetric(float64(len(buf)), "bytes/alert")
}

// BenchmarkWebhookSign is the HMAC and delivery id the transport adds to
// each request.
func BenchmarkWebhookSign(b *testing.B) {
	item := whItems(1)[0]
	mac := hmac.New(sha256.New, []byte(whSecret))
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	b.ReportAllocs()
	for b.Loop() {
		_ = signWebhook(mac, ts, item)
		_ = webhookDeliveryID(item)
	}
}

// BenchmarkWebhookSend signs and POSTs one alert per request to a local
// receiver that reads the body and answers 204, over one keep-alive
// connection. Run with -cpu 1 for one core (shared with the receiver).
func BenchmarkWebhookSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.URL = srv.URL
	cfg.Headers = map[string]string{"Authorization": "Bearer t0ken"}
	tr, err := newTransport(cfg, options{Secret: []byte(whSecret)})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	items := whItems(1)
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if n, err := tr.Send(b.Context(), items); n != 1 || err != nil {
			b.Fatalf("Send = %d, %v", n, err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "alerts/s")
	b.ReportMetric(float64(len(items[0])), "bytes/alert")
}
