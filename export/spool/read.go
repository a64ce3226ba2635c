package spool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// Batch is records handed out by Next. Items and Times are valid until
// the next call to Next.
type Batch struct {
	Items [][]byte
	Times []int64 // append time of each item, ns since the Unix epoch
	// Redelivered is how many leading items were handed out before a
	// restart and may have reached the upstream already.
	Redelivered int
	gen         uint64
	start       pos
	ends        []int64 // offset after each item, in segment start.seg
}

// Next returns the oldest unacknowledged records, up to maxItems and
// about maxBytes, waiting until there is at least one or ctx is done.
// Calling Next again without Ack returns the same records (a retry).
func (s *Spool) Next(ctx context.Context, b *Batch, maxItems int, maxBytes int64) error {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return errors.New("spool is closed")
		}
		ok, err := s.read(b, maxItems, maxBytes)
		s.mu.Unlock()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.wake:
		}
	}
}

// read fills b from the acknowledged position; it reports false when
// there is nothing to read.
func (s *Spool) read(b *Batch, maxItems int, maxBytes int64) (bool, error) {
	b.Items, b.Times, b.ends, b.Redelivered = b.Items[:0], b.Times[:0], b.ends[:0], 0
	for {
		sg := s.segment(s.acked.seg)
		if sg == nil {
			return false, nil
		}
		if s.acked.off < sg.size {
			break
		}
		if sg == s.segs[len(s.segs)-1] {
			return false, nil // caught up with the writer
		}
		if sg.corrupt {
			// The frames past sg.size cannot be read: count what is
			// known to be lost and go on with the next segment.
			if lost := sg.records - sg.read; lost > 0 {
				s.stats.dropped[dropCorrupt].Add(uint64(lost))
			}
		}
		s.acked = pos{s.segs[slices.Index(s.segs, sg)+1].id, headerSize}
		s.removeAcked()
	}
	sg := s.segment(s.acked.seg)
	b.start, b.gen = s.acked, s.gen
	end := min(sg.size, s.acked.off+maxBytes+frameHeader)
	n := int(end - s.acked.off)
	if cap(s.readBuf) < n {
		s.readBuf = make([]byte, n)
	}
	data := s.readBuf[:n]
	if _, err := sg.f.ReadAt(data, s.acked.off); err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("reading spool segment %d: %w", sg.id, err)
	}
	off := 0
	for len(b.Items) < maxItems && off+frameHeader <= len(data) {
		size := int(binary.LittleEndian.Uint32(data[off:]))
		if off+frameHeader+size > len(data) {
			if len(b.Items) == 0 && s.acked.off+int64(off+frameHeader+size) <= sg.size {
				// One record larger than maxBytes: read it alone.
				return s.readOne(b, sg)
			}
			break
		}
		want := binary.LittleEndian.Uint32(data[off+4:])
		if crc32.Checksum(data[off+8:off+frameHeader+size], castagnoli) != want {
			s.skipCorrupt(sg)
			return s.read(b, maxItems, maxBytes)
		}
		b.Times = append(b.Times, int64(binary.LittleEndian.Uint64(data[off+8:])))
		b.Items = append(b.Items, data[off+frameHeader:off+frameHeader+size:off+frameHeader+size])
		off += frameHeader + size
		b.ends = append(b.ends, s.acked.off+int64(off))
	}
	s.markFlight(b)
	return len(b.Items) > 0, nil
}

func (s *Spool) readOne(b *Batch, sg *segment) (bool, error) {
	var h [frameHeader]byte
	if _, err := sg.f.ReadAt(h[:], s.acked.off); err != nil {
		return false, fmt.Errorf("reading spool segment %d: %w", sg.id, err)
	}
	size := int64(binary.LittleEndian.Uint32(h[0:]))
	data := make([]byte, size+8)
	copy(data, h[8:])
	if _, err := sg.f.ReadAt(data[8:], s.acked.off+frameHeader); err != nil {
		return false, fmt.Errorf("reading spool segment %d: %w", sg.id, err)
	}
	if crc32.Checksum(data, castagnoli) != binary.LittleEndian.Uint32(h[4:]) {
		s.skipCorrupt(sg)
		return s.read(b, 1, size)
	}
	b.Times = append(b.Times, int64(binary.LittleEndian.Uint64(h[8:])))
	b.Items = append(b.Items, data[8:])
	b.ends = append(b.ends, s.acked.off+frameHeader+size)
	s.markFlight(b)
	return true, nil
}

// skipCorrupt gives up the rest of a segment whose frame at the
// acknowledged position fails its checksum (the disk changed under us).
func (s *Spool) skipCorrupt(sg *segment) {
	s.stats.corruptSegments.Add(1)
	if lost := sg.records - sg.read; lost > 0 {
		s.stats.dropped[dropCorrupt].Add(uint64(lost))
	}
	sg.read = sg.records
	if sg == s.segs[len(s.segs)-1] {
		// Writing goes on in a fresh segment; this one is finished.
		if err := s.newSegment(sg.id + 1); err != nil {
			sg.size = s.acked.off
			return
		}
	}
	sg.size, sg.corrupt = s.acked.off, false
	s.refreshOldest()
}

// markFlight persists the end of what is being handed out, so that a
// restart knows these records may have been delivered.
func (s *Spool) markFlight(b *Batch) {
	if len(b.Items) == 0 {
		return
	}
	for i := range b.ends {
		if p := (pos{b.start.seg, b.ends[i]}); !s.redeliv.less(p) {
			b.Redelivered = i + 1
		}
	}
	if end := (pos{b.start.seg, b.ends[len(b.ends)-1]}); s.flight.less(end) {
		s.flight = end
		s.writeCursor()
	}
}

// Ack acknowledges the first n records of the batch returned by the last
// Next: they are delivered (or, for a rejected record, given up).
func (s *Spool) Ack(b *Batch, n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.gen != s.gen || s.acked != b.start {
		// Records were dropped under the reader (budget): they are
		// already counted as dropped.
		return
	}
	n = min(n, len(b.ends))
	s.acked.off = b.ends[n-1]
	if sg := s.segment(s.acked.seg); sg != nil {
		sg.read += int64(n)
	}
	redeliv := min(n, b.Redelivered)
	s.stats.redelivered.Add(uint64(redeliv))
	s.stats.delivered.Add(uint64(n))
	s.removeAcked()
	if n < len(b.Times) {
		s.stats.oldest.Store(b.Times[n])
	} else {
		s.refreshOldest()
	}
	s.writeCursor()
	if s.opt.Fsync == FsyncAlways && s.cursor != nil {
		s.cursor.Sync()
	}
}

// removeAcked deletes sealed segments that are fully acknowledged.
func (s *Spool) removeAcked() {
	for len(s.segs) > 1 && (s.segs[0].id < s.acked.seg ||
		s.segs[0].id == s.acked.seg && s.acked.off >= s.segs[0].size) {
		s.removeFirst()
		if s.acked.seg < s.segs[0].id {
			s.acked = pos{s.segs[0].id, headerSize}
		}
	}
	s.updateBytes()
}

func (s *Spool) segment(id uint64) *segment {
	for _, sg := range s.segs {
		if sg.id == id {
			return sg
		}
	}
	return nil
}

// refreshOldest reads the append time of the oldest unsent record.
func (s *Spool) refreshOldest() {
	for _, sg := range s.segs {
		if sg.id < s.acked.seg {
			continue
		}
		off := int64(headerSize)
		if sg.id == s.acked.seg {
			off = s.acked.off
		}
		if off+frameHeader > sg.size {
			continue
		}
		var h [frameHeader]byte
		if _, err := sg.f.ReadAt(h[:], off); err == nil {
			s.stats.oldest.Store(int64(binary.LittleEndian.Uint64(h[8:])))
			return
		}
	}
	s.stats.oldest.Store(0)
}
