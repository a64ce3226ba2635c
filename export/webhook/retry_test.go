package webhook

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/export"
)

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
	tr := newWHTransport(t, rc.srv.URL, func(c *whSettings) { c.Attempts = 4 })
	items := whItems(2)
	n, err := sendWithin(t, t.Context(), tr, items)
	if n != 2 || err != nil {
		t.Fatalf("Send = %d, %v; want 2, nil", n, err)
	}
	reqs, delivered := rc.seen()
	if len(reqs) != 5 || len(delivered) != 2 || !bytes.Equal(delivered[0], items[0]) || !bytes.Equal(delivered[1], items[1]) {
		t.Fatalf("receiver: %d requests (want 4 attempts + 1), %d delivered (want items 0, 1)", len(reqs), len(delivered))
	}
	id := reqs[0].header.Get(HeaderDelivery)
	for i, r := range reqs[:4] {
		if got := r.header.Get(HeaderDelivery); got != id || !bytes.Equal(r.body, items[0]) {
			t.Errorf("attempt %d: delivery %q, body changed: %v; want the same item and id %q", i, got, !bytes.Equal(r.body, items[0]), id)
		}
	}
	if reqs[4].header.Get(HeaderDelivery) == id {
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
	if _, ok := errors.AsType[*export.RejectedError](err); ok {
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
		ra, ok := errors.AsType[*export.RetryAfterError](err)
		if !ok || ra.Delay < c.min || ra.Delay > c.max {
			t.Errorf("%d Retry-After %s: error %v; want a export.RetryAfterError with delay in [%v, %v]", c.code, c.retryAfter, err, c.min, c.max)
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
	rej, ok := errors.AsType[*export.RejectedError](err)
	if !ok {
		t.Fatalf("error %v: want a export.RejectedError", err)
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
		tr := newWHTransport(t, rc.srv.URL, func(cfg *whSettings) { cfg.Attempts = 2 })
		n, err := sendWithin(t, t.Context(), tr, whItems(1))
		reqs, _ := rc.seen()
		_, rejected := errors.AsType[*export.RejectedError](err)
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
	tr := newWHTransport(t, srv.URL, func(c *whSettings) { c.Timeout.D = time.Hour })
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
	tr := newWHTransport(t, rc.srv.URL, func(c *whSettings) { c.Backoff = time.Hour })
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
	tr := newWHTransport(t, srv.URL+"/hook?token=sekrit", func(c *whSettings) { c.Timeout.D = 50 * time.Millisecond; c.Attempts = 2 })
	n, err := sendWithin(t, t.Context(), tr, whItems(1))
	if n != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send = %d, %v; want 0, a deadline exceeded", n, err)
	}
	if _, ok := errors.AsType[*export.RejectedError](err); ok {
		t.Errorf("a timeout must be retryable: %v", err)
	}
	if len(arrived) != 2 {
		t.Errorf("server saw %d requests, want 2 attempts", len(arrived))
	}
	if strings.Contains(err.Error(), "sekrit") || !strings.Contains(err.Error(), srv.URL+"/hook") {
		t.Errorf("error should name the endpoint without its query: %v", err)
	}
}
