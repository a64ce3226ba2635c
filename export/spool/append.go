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
// and counted; the others are still appended. A record that does not
// reach the segment file (a full disk) is dropped and counted as
// DropWriteError, never counted as spooled: the segment is cut back to
// its last whole frame and later appends go on from there.
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
	var pending, written int64 // frames in buf; frames written by this call
	failed := false            // a write failed in this call
	flush := func() {
		if len(buf) == 0 {
			return
		}
		sg := s.segs[len(s.segs)-1]
		n, err := s.writeAt(sg.f, buf, sg.size)
		if err != nil {
			failed = true
			kept, err := s.writeFailed(sg, buf, n, pending, err)
			written += kept
			errs = errors.Join(errs, err)
		} else {
			sg.size += int64(len(buf))
			sg.records += pending
			written += pending
		}
		buf, pending = buf[:0], 0
	}
	for i, it := range items {
		need := int64(frameHeader + len(it))
		if headerSize+need > s.opt.SegmentBytes {
			s.stats.dropped[dropOversize].Add(1)
			errs = errors.Join(errs, fmt.Errorf("%w: %d bytes", ErrOversize, len(it)))
			continue
		}
		sg := s.segs[len(s.segs)-1]
		if sg.size+int64(len(buf))+need > s.opt.SegmentBytes {
			flush()
			if err := s.newSegment(sg.id + 1); err != nil {
				// The records left cannot be written anywhere; the
				// next Append tries a new segment again.
				lost := uint64(len(items) - i)
				s.stats.dropped[dropWriteError].Add(lost)
				err = fmt.Errorf("%w: %d records dropped", err, lost)
				failed = true
				s.logWriteError(err)
				errs = errors.Join(errs, err)
				break
			}
			s.enforceBudget()
		}
		buf = appendFrame(buf, now, it)
		pending++
	}
	flush()
	if !failed && written > 0 && s.writeFailing {
		s.writeFailing = false
		s.opt.Log.Info("spool writes work again", "dropped_write_error", s.stats.dropped[dropWriteError].Load())
	}
	s.stats.appended.Add(uint64(written))
	s.enforceBudget()
	s.updateBytes()
	if written == 0 {
		return errs
	}
	if s.stats.oldest.Load() == 0 {
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

// writeFailed handles a write of buf (frames frames) at the end of sg
// that put only n bytes in the file: the whole frames among them count
// as written (it returns how many), the others are dropped and counted,
// and the file is cut back to the last whole frame so that nothing torn
// is left past it.
func (s *Spool) writeFailed(sg *segment, buf []byte, n int, frames int64, err error) (int64, error) {
	kept, keptBytes := wholeFrames(buf[:min(max(n, 0), len(buf))])
	sg.size += keptBytes
	sg.records += kept
	lost := frames - kept
	s.stats.dropped[dropWriteError].Add(uint64(lost))
	err = fmt.Errorf("writing spool segment %d: %d records dropped: %w", sg.id, lost, err)
	if terr := sg.f.Truncate(sg.size); terr != nil {
		// What is past sg.size is overwritten by the next append, and
		// cut off (last segment) or skipped (sealed) by the next Open.
		err = errors.Join(err, fmt.Errorf("cutting spool segment %d back to %d bytes: %w", sg.id, sg.size, terr))
	}
	s.logWriteError(err)
	return kept, err
}

// logWriteError logs the first of a run of failed writes (a full disk
// fails every append until room is made); Append logs the recovery.
func (s *Spool) logWriteError(err error) {
	if !s.writeFailing {
		s.writeFailing = true
		s.opt.Log.Error("spool write failed; records are dropped (reason write_error) until writes work again", "error", err)
	}
}

// wholeFrames returns how many whole frames b starts with and their size.
func wholeFrames(b []byte) (n, size int64) {
	for int64(len(b)) >= size+frameHeader {
		end := size + frameHeader + int64(binary.LittleEndian.Uint32(b[size:]))
		if end > int64(len(b)) {
			break
		}
		n, size = n+1, end
	}
	return n, size
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
			s.stats.dropped[dropFull].Add(uint64(lost))
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
