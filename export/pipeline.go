package export

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-sensor/vigil/export/spool"
	"github.com/vigil-sensor/vigil/flow"
)

// SinkOptions tune how a spooled sink sends.
type SinkOptions struct {
	BatchItems   int           // items per Send; default 512
	BatchBytes   int64         // about this many bytes per Send; default 1 MiB
	BackoffMin   time.Duration // first retry delay; default 100 ms
	BackoffMax   time.Duration // retry delay cap; default 30 s
	ShutdownWait time.Duration // Close keeps sending this long; default 5 s
	Log          *slog.Logger
}

func (o *SinkOptions) defaults() {
	if o.BatchItems <= 0 {
		o.BatchItems = 512
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 1 << 20
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 100 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 30 * time.Second
	}
	if o.ShutdownWait <= 0 {
		o.ShutdownWait = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Sink is a network sink behind a spool, an Output: the data path encodes records
// into the spool and never waits on the network; Run sends from the spool
// with retries and exponential backoff, and acknowledges what the
// upstream took. Records survive upstream outages and restarts.
type Sink struct {
	name  string
	enc   Encoder
	tr    Transport
	spool *spool.Spool
	opt   SinkOptions

	mu    sync.Mutex // encoding scratch
	buf   []byte
	items [][]byte

	sent, failures, retries, rejected, spoolErrs atomic.Uint64
	up                                           atomic.Bool
}

// NewSink returns a sink named name that encodes with enc, keeps records
// in sp and sends them with tr. The sink owns sp and tr: Close closes them.
func NewSink(name string, enc Encoder, tr Transport, sp *spool.Spool, opt SinkOptions) *Sink {
	opt.defaults()
	opt.Log = opt.Log.With("sink", name)
	return &Sink{name: name, enc: enc, tr: tr, spool: sp, opt: opt}
}

// Name returns the sink's name.
func (s *Sink) Name() string { return s.name }

// Kinds returns what the sink carries.
func (s *Sink) Kinds() Kinds { return s.enc.Kinds() }

// WriteFlows encodes records into the spool.
func (s *Sink) WriteFlows(recs []flow.Record) error {
	if s.enc.Kinds()&KindFlows == 0 {
		return nil
	}
	return spoolAll(s, recs, s.enc.AppendFlow)
}

// WriteAlerts encodes alerts into the spool.
func (s *Sink) WriteAlerts(alerts []flow.Alert) error {
	if s.enc.Kinds()&KindAlerts == 0 {
		return nil
	}
	return spoolAll(s, alerts, s.enc.AppendAlert)
}

// spoolAll encodes each value as one item and appends them to the spool.
// (An item made before s.buf grew still points into the old array,
// which holds its bytes.)
func spoolAll[T any](s *Sink, vs []T, appendItem func([]byte, *T) []byte) error {
	if len(vs) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf, s.items = s.buf[:0], s.items[:0]
	for i := range vs {
		n := len(s.buf)
		s.buf = appendItem(s.buf, &vs[i])
		s.items = append(s.items, s.buf[n:len(s.buf):len(s.buf)])
	}
	if err := s.spool.Append(s.items); err != nil && !onlyOversize(err) {
		s.spoolErrs.Add(1)
		return fmt.Errorf("sink %s: %w", s.name, err)
	}
	return nil
}

// onlyOversize reports whether every error Append joined is a record too
// large for a segment (dropped and counted as oversize, not a failure of
// the spool): a write error joined with one still counts.
func onlyOversize(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !onlyOversize(e) {
				return false
			}
		}
		return true
	}
	return errors.Is(err, spool.ErrOversize)
}

// Flush does nothing: written records are in the spool already.
func (s *Sink) Flush() error { return nil }

// Reopen does nothing: a sink has no file to reopen.
func (s *Sink) Reopen() error { return nil }

// Run sends from the spool until ctx is done.
func (s *Sink) Run(ctx context.Context) error {
	var b spool.Batch
	backoff := time.Duration(0)
	for {
		if err := s.spool.Next(ctx, &b, s.opt.BatchItems, s.opt.BatchBytes); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		n, err := s.tr.Send(ctx, b.Items)
		n = min(max(n, 0), len(b.Items))
		if n > 0 {
			s.sent.Add(uint64(n))
		}
		var rej *RejectedError
		if err != nil && errors.As(err, &rej) && n < len(b.Items) {
			s.rejected.Add(1)
			s.opt.Log.Warn("upstream rejected a record; dropping it", "error", err)
			n++ // the rejected one is given up
			err = nil
		}
		s.spool.Ack(&b, n)
		if err == nil {
			if !s.up.Swap(true) && backoff > 0 {
				s.opt.Log.Info("upstream is back", "resent", len(b.Items))
			}
			backoff = 0
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		s.failures.Add(1)
		if s.up.Swap(false) || backoff == 0 {
			s.opt.Log.Warn("send failed; records stay in the spool", "error", err)
		}
		backoff = s.nextBackoff(backoff, err)
		s.retries.Add(1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
	}
}

// nextBackoff doubles the delay up to the cap, with ±20% jitter so a
// fleet of sensors does not retry in step; the upstream's Retry-After
// wins when it is longer.
func (s *Sink) nextBackoff(prev time.Duration, err error) time.Duration {
	d := min(max(prev*2, s.opt.BackoffMin), s.opt.BackoffMax)
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	var ra *RetryAfterError
	if errors.As(err, &ra) && ra.Delay > d {
		d = min(ra.Delay, 10*s.opt.BackoffMax)
	}
	return d
}

// Close stops the sink after Run has returned: it keeps sending for up to ShutdownWait (or
// until ctx is done) while records are pending, then closes the
// transport and the spool. What is left is sent after the next start.
func (s *Sink) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opt.ShutdownWait)
	defer cancel()
	var b spool.Batch
	var sendErr error
	for s.spool.Pending() > 0 && ctx.Err() == nil {
		if sendErr = s.spool.Next(ctx, &b, s.opt.BatchItems, s.opt.BatchBytes); sendErr != nil {
			break
		}
		n, err := s.tr.Send(ctx, b.Items)
		n = min(max(n, 0), len(b.Items))
		s.sent.Add(uint64(n))
		s.spool.Ack(&b, n)
		if sendErr = err; err != nil {
			break
		}
	}
	// Not an error of the run: the records wait on disk for the next
	// start. But say so, with how many, or a run into a dead upstream
	// looks like a clean one.
	if left := s.spool.Pending(); left > 0 {
		s.opt.Log.Warn("upstream not reached before shutdown; records left in the spool for the next start",
			"records", left, "error", cmp.Or(sendErr, ctx.Err()))
	}
	return errors.Join(s.tr.Close(), s.spool.Close())
}

// SinkStats are a sink's counters.
type SinkStats struct {
	Spool       spool.Stats
	Pending     int64  // records waiting in the spool
	Sent        uint64 // records accepted upstream
	Failures    uint64 // failed sends
	Retries     uint64 // sends retried after a backoff
	Rejected    uint64 // records the upstream refused for good
	SpoolErrors uint64 // appends that failed (disk errors)
	Up          bool   // the last send worked
}

// Stats returns the sink's counters.
func (s *Sink) Stats() SinkStats {
	return SinkStats{
		Spool:       s.spool.Stats(),
		Pending:     s.spool.Pending(),
		Sent:        s.sent.Load(),
		Failures:    s.failures.Load(),
		Retries:     s.retries.Load(),
		Rejected:    s.rejected.Load(),
		SpoolErrors: s.spoolErrs.Load(),
		Up:          s.up.Load(),
	}
}
