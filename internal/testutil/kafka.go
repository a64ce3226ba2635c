package testutil

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ConsumeKafka reads the topics of a client made of opts (its brokers,
// topics, dialer) from their start until want records arrived or wait
// passed, then polls once more so that duplicates would show.
func ConsumeKafka(tb testing.TB, want int, wait time.Duration, opts ...kgo.Opt) []*kgo.Record {
	tb.Helper()
	opts = append([]kgo.Opt{kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200 * time.Millisecond)}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	poll := func(d time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		fs := cl.PollFetches(ctx)
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				tb.Errorf("consuming %s/%d: %v", topic, p, err)
			}
		})
		out = append(out, fs.Records()...)
	}
	deadline := time.Now().Add(wait)
	for i := 0; i < 10_000 && len(out) < want && time.Now().Before(deadline); i++ {
		poll(time.Until(deadline))
	}
	poll(500 * time.Millisecond)
	return out
}

// KafkaHeader is the value of a record's header, or "".
func KafkaHeader(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
