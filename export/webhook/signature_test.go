package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/export"
)

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
		{"wrong secret", "not-the-secret", ts, good, body, ErrSignature},
		{"signed with a wrong secret", whSecret, ts, sign("not-the-secret", ts, body), body, ErrSignature},
		{"tampered body", whSecret, ts, good, tampered, ErrSignature},
		{"timestamp swapped", whSecret, strconv.FormatInt(now.Unix()+1, 10), good, body, ErrSignature},
		{"stale timestamp, validly signed", whSecret, old, sign(whSecret, old, body), body, ErrStale},
		{"future timestamp, validly signed", whSecret, future, sign(whSecret, future, body), body, ErrStale},
		{"no sha256= prefix", whSecret, ts, strings.TrimPrefix(good, "sha256="), body, ErrMalformed},
		{"not hex", whSecret, ts, "sha256=" + strings.Repeat("zz", 32), body, ErrMalformed},
		{"short", whSecret, ts, good[:len(good)-2], body, ErrMalformed},
		{"timestamp not a number", whSecret, "yesterday", good, body, ErrMalformed},
		{"empty", whSecret, "", "", body, ErrMalformed},
		{"empty secret", "", ts, sign("", ts, body), body, ErrSignature},
	} {
		err := VerifySignature(c.secret, c.ts, c.sig, c.body, now, 5*time.Minute)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: VerifySignature = %v, want %v", c.name, err, c.want)
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
		{name: "wrong secret", secret: "guessed", want: ErrSignature},
		{name: "tampered on the way", secret: whSecret, want: ErrSignature,
			wrap: func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(r.Body)
					body = bytes.Replace(body, []byte(`"packets":100000`), []byte(`"packets":100001`), 1)
					r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
					h.ServeHTTP(w, r)
				})
			}},
		{name: "replayed 10 minutes later", secret: whSecret, want: ErrStale,
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
			tr := newWHTransport(t, rc.srv.URL, func(cfg *whSettings) { cfg.Secret = []byte(c.secret) })
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
			if _, ok := errors.AsType[*export.RejectedError](err); ok {
				t.Errorf("error %v: a 401 must not drop the item", err)
			}
		})
	}
}

func TestWebhookUnsigned(t *testing.T) {
	rc := newWHReceiver(t, nil)
	tr := newWHTransport(t, rc.srv.URL, func(c *whSettings) { c.Secret = nil })
	if n, err := sendWithin(t, t.Context(), tr, whItems(1)); n != 0 || err == nil {
		t.Fatalf("unsigned Send to a verifying receiver = %d, %v; want refused", n, err)
	}
	reqs, _ := rc.seen()
	if len(reqs) == 0 || reqs[0].header.Get(HeaderSignature) != "" || reqs[0].header.Get(HeaderTimestamp) != "" ||
		!errors.Is(reqs[0].verified, ErrMalformed) {
		t.Errorf("unsigned request: %+v", reqs)
	}
}
