package sampler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/vigil-sensor/vigil/flow"
)

// ReaderConfig tunes how samples leave the ring buffer.
type ReaderConfig struct {
	BatchSize     int           // samples per batch; 0: 512
	FlushInterval time.Duration // longest a sample waits in a partial batch; 0: 100ms
	// SendTimeout is how long a full downstream channel may hold up the
	// reader before the batch is dropped (and counted); meanwhile the
	// ring buffer keeps absorbing the burst. 0: 50ms.
	SendTimeout time.Duration
}

// Reader drains the ring buffer into batches of flow.Sample and hands
// them downstream over a bounded channel. A slow consumer holds it up for
// at most SendTimeout per batch, while the ring buffer absorbs the burst;
// past that the batch is dropped and counted, so the reader never stalls
// behind a stuck consumer. Batches are recycled through Release, so the
// steady path does not allocate.
type Reader struct {
	rd   *ringbuf.Reader
	cfg  ReaderConfig
	free chan []flow.Sample

	samples     atomic.Uint64 // samples decoded
	batches     atomic.Uint64 // batches handed downstream
	dropped     atomic.Uint64 // samples dropped: downstream channel full
	badRecords  atomic.Uint64 // records too short to decode
	flushEvents atomic.Uint64 // partial batches sent on the flush timer
}

// NewReader opens a reader on the programs' ring buffer.
func (p *Programs) NewReader(cfg ReaderConfig) (*Reader, error) {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 512
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 100 * time.Millisecond
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = 50 * time.Millisecond
	}
	rd, err := ringbuf.NewReader(p.objs.Samples)
	if err != nil {
		return nil, fmt.Errorf("opening ring buffer reader: %w", err)
	}
	return &Reader{rd: rd, cfg: cfg, free: make(chan []flow.Sample, 64)}, nil
}

// Release gives a batch back for reuse once the consumer is done with it.
func (r *Reader) Release(batch []flow.Sample) {
	select {
	case r.free <- batch[:0]:
	default:
	}
}

func (r *Reader) newBatch() []flow.Sample {
	select {
	case b := <-r.free:
		return b
	default:
		return make([]flow.Sample, 0, r.cfg.BatchSize)
	}
}

// Run reads until ctx ends or the reader is closed, sending batches to out.
// It closes the ring buffer reader when it returns.
func (r *Reader) Run(ctx context.Context, out chan<- []flow.Sample) error {
	stop := context.AfterFunc(ctx, func() { r.rd.Close() })
	defer stop()
	defer r.rd.Close()

	var rec ringbuf.Record
	var arena []byte
	batch := r.newBatch()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	send := func() {
		if len(batch) == 0 {
			return
		}
		arena = nil
		select {
		case out <- batch:
			r.batches.Add(1)
			batch = r.newBatch()
			return
		default:
		}
		timer.Reset(r.cfg.SendTimeout)
		defer timer.Stop()
		select {
		case out <- batch:
			r.batches.Add(1)
			batch = r.newBatch()
		case <-timer.C:
			r.dropped.Add(uint64(len(batch)))
			batch = batch[:0]
		}
	}
	offset := monoToUnix()
	for {
		if len(batch) == 0 {
			// Deadlines are set from this goroutine only: setting one while
			// ReadInto blocks would wait for ReadInto's lock.
			r.rd.SetDeadline(time.Now().Add(r.cfg.FlushInterval))
			offset = monoToUnix()
		}
		err := r.rd.ReadInto(&rec)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			if len(batch) > 0 {
				r.flushEvents.Add(1)
			}
			send()
			continue
		case errors.Is(err, ringbuf.ErrFlushed):
			send()
			continue
		case errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrClosed):
			send()
			return nil
		default:
			send()
			return fmt.Errorf("reading ring buffer: %w", err)
		}
		batch = batch[:len(batch)+1]
		if err := decodeRecord(rec.RawSample, offset, &batch[len(batch)-1], &arena); err != nil {
			r.badRecords.Add(1)
			batch = batch[:len(batch)-1]
			continue
		}
		r.samples.Add(1)
		if len(batch) == cap(batch) {
			send()
		}
	}
}

// ReaderStats are the reader's counters.
type ReaderStats struct {
	Samples      uint64 // decoded
	Batches      uint64 // handed downstream
	Dropped      uint64 // samples dropped because downstream was full
	BadRecords   uint64 // records too short to decode
	TimerFlushes uint64 // partial batches sent because the flush interval passed
}

// Flush makes Run read everything in the ring buffer now and hand it
// downstream, partial batch included, without waiting for the flush
// interval.
func (r *Reader) Flush() error { return r.rd.Flush() }

// Stats returns the reader's counters.
func (r *Reader) Stats() ReaderStats {
	return ReaderStats{
		Samples:      r.samples.Load(),
		Batches:      r.batches.Load(),
		Dropped:      r.dropped.Load(),
		BadRecords:   r.badRecords.Load(),
		TimerFlushes: r.flushEvents.Load(),
	}
}
