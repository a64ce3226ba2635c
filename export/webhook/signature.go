package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"
)

// Webhook headers (docs/WEBHOOK.md).
const (
	// HeaderTimestamp carries the Unix time in seconds at which
	// the request was signed.
	HeaderTimestamp = "X-Vigil-Timestamp"
	// HeaderSignature carries "sha256=" and the hex HMAC-SHA256
	// of timestamp + "." + body under the shared secret.
	HeaderSignature = "X-Vigil-Signature"
	// HeaderDelivery is the same for every retry of one item, so
	// a receiver can drop duplicates of at-least-once delivery.
	HeaderDelivery = "X-Vigil-Delivery"
)

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

// Errors of VerifySignature.
var (
	ErrMalformed = errors.New("webhook signature or timestamp malformed")
	ErrStale     = errors.New("webhook timestamp outside the allowed skew")
	ErrSignature = errors.New("webhook signature does not match")
)

// VerifySignature checks a request from a Transport:
// timestamp and signature are the X-Vigil-Timestamp and
// X-Vigil-Signature headers, body the raw request body. The timestamp
// must be within maxSkew of now (maxSkew <= 0 means 5 minutes), which
// bounds how long a captured request can be replayed.
func VerifySignature(secret, timestamp, signature string, body []byte, now time.Time, maxSkew time.Duration) error {
	if secret == "" {
		return fmt.Errorf("%w: empty secret", ErrSignature)
	}
	if maxSkew <= 0 {
		maxSkew = 5 * time.Minute
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q", ErrMalformed, timestamp)
	}
	hexSum, ok := strings.CutPrefix(signature, "sha256=")
	if !ok {
		return fmt.Errorf("%w: signature does not start with sha256=", ErrMalformed)
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: signature is not 64 hex digits", ErrMalformed)
	}
	if skew := now.Sub(time.Unix(ts, 0)); skew > maxSkew || skew < -maxSkew {
		return fmt.Errorf("%w: timestamp %d is %v from now", ErrStale, ts, skew.Round(time.Second))
	}
	want := webhookMAC(hmac.New(sha256.New, []byte(secret)), timestamp, body, nil)
	if !hmac.Equal(got, want) {
		return ErrSignature
	}
	return nil
}
