package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
)

// Append adds records to the end of the queue, in order, stamped with the
// current time. It makes room by dropping the oldest segments when the
// budget would be exceeded. A record that cannot fit a segment is dropped
// and counted; the others are still appended.
func (s *Spool) Append(items [][]byte) error {
	if len(items) == 0 {
		return nil
	}
	now := s.opt.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("spool is closed")
	}
	buf := s.writeBuf[:0]
	defer func() { s.writeBuf = buf[:0] }()
	var errs error
	flush := func() {
		if len(buf) == 0 {
			return
		}
		sg := s.segs[len(s.segs)-1]
		if _, err := sg.f.WriteAt(buf, sg.size); err != nil {
			// Nothing of buf counts as written: a later scan cuts it off.
			errs = errors.Join(errs, fmt.Errorf("writing spool segment %d: %w", sg.id, err))
			buf = buf[:0]
			return
		}
		sg.size += int64(len(buf))
		buf = buf[:0]
	}
	var pending int64
	for _, it := range items {
		need := int64(frameHeader + len(it))
		if headerSize+need > s.opt.SegmentBytes {
			s.stats.dropped[2].Add(1)
			errs = errors.Join(errs, fmt.Errorf("%w: %d bytes", ErrOversize, len(it)))
			continue
		}
		sg := s.segs[len(s.segs)-1]
		if sg.size+int64(len(buf))+need > s.opt.SegmentBytes {
			flush()
			sg.records += pending
			s.stats.appended.Add(uint64(pending))
			pending = 0
			if err := s.newSegment(sg.id + 1); err != nil {
				return errors.Join(errs, err)
			}
			s.enforceBudget()
		}
		buf = appendFrame(buf, now, it)
		pending++
	}
	flush()
	s.segs[len(s.segs)-1].records += pending
	s.stats.appended.Add(uint64(pending))
	s.enforceBudget()
	s.updateBytes()
	if s.stats.oldest.Load() == 0 && pending > 0 {
		s.refreshOldest()
	}
	s.dirty = true
	if s.opt.Fsync == FsyncAlways {
		if err := s.segs[len(s.segs)-1].f.Sync(); err != nil {
			errs = errors.Join(errs, fmt.Errorf("syncing spool: %w", err))
		}
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return errs
}

func appendFrame(b []byte, t int64, payload []byte) []byte {
	n := len(b)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint64(b, uint64(t))
	b = append(b, payload...)
	binary.LittleEndian.PutUint32(b[n+4:], crc32.Checksum(b[n+8:], castagnoli))
	return b
}

// enforceBudget deletes the oldest segments, sent or not, until the
// spool fits its budget. The segment being written is never deleted.
func (s *Spool) enforceBudget() {
	for len(s.segs) > 1 && s.totalBytes() > s.opt.MaxBytes {
		sg := s.segs[0]
		if lost := sg.records - sg.read; lost > 0 {
			s.stats.dropped[0].Add(uint64(lost))
		}
		s.removeFirst()
		if s.acked.seg <= sg.id {
			s.acked = pos{s.segs[0].id, headerSize}
			s.gen++
		}
		if s.flight.less(s.acked) {
			s.flight = s.acked
		}
		s.refreshOldest()
	}
}

func (s *Spool) removeFirst() {
	sg := s.segs[0]
	sg.f.Close()
	os.Remove(s.segPath(sg.id))
	s.segs = s.segs[1:]
}

func (s *Spool) totalBytes() int64 {
	var n int64
	for _, sg := range s.segs {
		n += sg.size
	}
	return n
}

func (s *Spool) updateBytes() { s.stats.bytes.Store(s.totalBytes()) }
