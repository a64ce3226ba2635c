package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/internal/secret"
)

// Transport produces spool items of an Encoder to Kafka with one
// franz-go client: idempotent, acks from all in-sync replicas. Send
// is not safe for concurrent use; Close may be called at any time.
type Transport struct {
	opts  Config
	codec kgo.CompressionCodec
	log   *slog.Logger

	mu sync.Mutex
	cl *kgo.Client

	// Reused by each Send.
	recs []kgo.Record
	hdrs []kgo.RecordHeader
	errs []error
}

// kafkaCloseGrace bounds the wait for a closed client to fail the
// records it still holds.
const kafkaCloseGrace = 10 * time.Second

// NewTransport checks o (Validate: its files too) and returns a
// transport. It connects at the first Send. log may be nil.
func NewTransport(o Config, log *slog.Logger) (*Transport, error) {
	if err := o.Validate().Err(); err != nil {
		return nil, err
	}
	codec, _ := kafkaCompression(o.Compression)
	if log == nil {
		log = slog.Default()
	}
	return &Transport{opts: o, codec: codec, log: log.With("transport", "kafka")}, nil
}

// Send produces items in order and waits for their acknowledgements. It
// returns the number of leading items acknowledged: if item i failed, i,
// even when later items were acknowledged (they are sent again: at least
// once). It returns within SendTimeout or when ctx is done; records still
// in flight then are abandoned by closing the client, and the next Send
// connects again. An item that can never be sent (unreadable, or too
// large for the brokers) ends the send with a *export.RejectedError: Send
// returns its index, and the caller drops it.
func (t *Transport) Send(ctx context.Context, items [][]byte) (int, error) {
	if len(items) == 0 {
		return 0, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("kafka send: %w", err)
	}
	cl, err := t.client()
	if err != nil {
		return 0, err
	}
	n := len(items)
	if cap(t.recs) < n {
		t.recs = make([]kgo.Record, n)
		t.hdrs = make([]kgo.RecordHeader, 2*n)
		t.errs = make([]error, n)
	}
	recs, hdrs, errs := t.recs[:n], t.hdrs[:2*n], t.errs[:n]
	clear(errs)
	b := &kafkaBatch{errs: errs, done: make(chan struct{})}
	b.pending.Store(int64(n))

	sendCtx, cancel := context.WithTimeout(ctx, t.opts.SendTimeout.D)
	defer cancel()
	var rejected error
	for i, item := range items {
		it, err := parseKafkaItem(item)
		if err != nil {
			// Stop here: the items before it go out, the caller
			// drops this one (a damaged spool) and sends the rest.
			rejected = &export.RejectedError{Err: fmt.Errorf("unreadable kafka spool item %d: %w", i+1, err)}
			for j := i; j < n; j++ {
				b.finish(j, errKafkaNotSent)
			}
			break
		}
		h := hdrs[2*i : 2*i : 2*i+2]
		h = append(h, kgo.RecordHeader{Key: "content-type", Value: kafkaContentTypes[it.kind][it.format]})
		if len(it.sensor) > 0 {
			h = append(h, kgo.RecordHeader{Key: "sensor", Value: it.sensor})
		}
		topic := t.opts.FlowsTopic
		if it.kind == kafkaKindAlert {
			topic = t.opts.AlertsTopic
		}
		recs[i] = kgo.Record{Topic: topic, Key: it.key, Value: it.value, Headers: h}
		cl.Produce(sendCtx, &recs[i], func(_ *kgo.Record, err error) { b.finish(i, err) })
	}

	// Flush skips the linger: the batch is complete.
	if err := cl.Flush(sendCtx); err == nil {
		select {
		case <-b.done:
		case <-sendCtx.Done():
		}
	}
	select {
	case <-b.done:
	default:
		// kgo cannot fail records already sent in a request (the
		// idempotent sequence would break), so stop waiting for them:
		// closing the client fails them all.
		t.drop(cl)
		select {
		case <-b.done:
		case <-time.After(kafkaCloseGrace):
			// Leave the records to the closed client, not to the next Send.
			t.recs, t.hdrs, t.errs = nil, nil, nil
			return 0, fmt.Errorf("kafka send: records not released %v after closing the client: %w", kafkaCloseGrace, context.Cause(sendCtx))
		}
	}
	// Records must not point into items after Send returns.
	clear(recs)
	clear(hdrs)
	return t.result(ctx, sendCtx, cl, errs, rejected)
}

// errKafkaNotSent marks the items after an unreadable one.
var errKafkaNotSent = errors.New("not sent")

// result turns the records' outcomes into Send's results.
func (t *Transport) result(ctx, sendCtx context.Context, cl *kgo.Client, errs []error, rejected error) (int, error) {
	n := len(errs)
	for i, err := range errs {
		if err == nil {
			continue
		}
		if err == errKafkaNotSent {
			return i, rejected
		}
		failed := 0
		for _, e := range errs[i:] {
			if e != nil && e != errKafkaNotSent {
				failed++
			}
		}
		err = fmt.Errorf("kafka: producing item %d of %d (%d not acknowledged): %w", i+1, n, failed, err)
		if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) || errors.Is(err, kerr.InvalidRecord) {
			return i, &export.RejectedError{Err: err} // sending it again would fail again
		}
		t.drop(cl) // start afresh at the next Send
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", err, ctx.Err())
		} else if sendCtx.Err() != nil {
			err = fmt.Errorf("%w (send_timeout %v)", err, t.opts.SendTimeout.D)
		}
		return i, err
	}
	return n, nil
}

type kafkaBatch struct {
	errs    []error
	pending atomic.Int64
	done    chan struct{}
}

func (b *kafkaBatch) finish(i int, err error) {
	b.errs[i] = err
	if b.pending.Add(-1) == 0 {
		close(b.done)
	}
}

// Close closes the client. A later Send connects again.
func (t *Transport) Close() error {
	t.mu.Lock()
	cl := t.cl
	t.cl = nil
	t.mu.Unlock()
	if cl != nil {
		cl.Close()
	}
	return nil
}

// drop closes cl if it is still the transport's client.
func (t *Transport) drop(cl *kgo.Client) {
	t.mu.Lock()
	if t.cl == cl {
		t.cl = nil
	}
	t.mu.Unlock()
	cl.Close()
}

func (t *Transport) client() (*kgo.Client, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cl != nil {
		return t.cl, nil
	}
	opts, err := t.clientOpts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	t.cl = cl
	return cl, nil
}

func (t *Transport) clientOpts() ([]kgo.Opt, error) {
	o := &t.opts
	opts := []kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.ClientID(o.ClientID),
		kgo.WithLogger(kgoLogger{t.log}),
		kgo.RequiredAcks(kgo.AllISRAcks()),                   // needed by the idempotent producer, which kgo enables by default
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), // murmur2 of the key, as Kafka's Java client
		kgo.ProducerBatchCompression(t.codec),
		kgo.ProduceRequestTimeout(o.RequestTimeout.D),
		kgo.DialTimeout(o.RequestTimeout.D),
		kgo.RecordDeliveryTimeout(o.SendTimeout.D),
	}
	if o.TLS.Enabled {
		cfg, err := o.TLS.Build()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if o.SASL.Mechanism != "" {
		m, err := o.SASL.mechanism()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func (s *SASLConfig) mechanism() (sasl.Mechanism, error) {
	b, err := secret.Read(s.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("sasl.password_file: %w", err)
	}
	pass := string(b)
	switch s.Mechanism {
	case SASLPlain:
		return plain.Auth{User: s.Username, Pass: pass}.AsMechanism(), nil
	case SASLScramSHA256:
		return scram.Auth{User: s.Username, Pass: pass}.AsSha256Mechanism(), nil
	case SASLScramSHA512:
		return scram.Auth{User: s.Username, Pass: pass}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("sasl.mechanism: %q is not %s, %s or %s", s.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
}

// kgoLogger passes franz-go's logs to slog: its errors, and its info
// and warnings when slog logs debug. Its warnings come with every
// reconnect attempt; the sink logs an outage once.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel {
	if k.l.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelInfo
	}
	return kgo.LogLevelError
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lvl = slog.LevelError
	case kgo.LogLevelWarn:
		lvl = slog.LevelWarn
	}
	k.l.Log(context.Background(), lvl, msg, keyvals...)
}
