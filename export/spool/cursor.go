package spool

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"
)

// The cursor file has two slots written in turn; each holds a sequence
// number, the acknowledged position, the in-flight end and a CRC. A torn
// write spoils one slot only, and the other is a valid older cursor.
func (s *Spool) writeCursor() {
	s.cursorN++
	var b [cursorSlot]byte
	binary.LittleEndian.PutUint64(b[0:], s.cursorN)
	binary.LittleEndian.PutUint64(b[8:], s.acked.seg)
	binary.LittleEndian.PutUint64(b[16:], uint64(s.acked.off))
	binary.LittleEndian.PutUint64(b[24:], s.flight.seg)
	binary.LittleEndian.PutUint64(b[32:], uint64(s.flight.off))
	binary.LittleEndian.PutUint32(b[40:], crc32.Checksum(b[:40], castagnoli))
	if s.cursor == nil {
		return // kept in memory only (see openCursor)
	}
	s.cursor.WriteAt(b[:], int64(s.cursorN%2)*cursorSlot)
	s.dirty = true
}

func (s *Spool) readCursor() (acked, flight pos) {
	var best uint64
	for slot := range 2 {
		var b [cursorSlot]byte
		if _, err := s.cursor.ReadAt(b[:], int64(slot)*cursorSlot); err != nil {
			continue
		}
		if crc32.Checksum(b[:40], castagnoli) != binary.LittleEndian.Uint32(b[40:]) {
			continue
		}
		if n := binary.LittleEndian.Uint64(b[0:]); n > best {
			best = n
			acked = pos{binary.LittleEndian.Uint64(b[8:]), int64(binary.LittleEndian.Uint64(b[16:]))}
			flight = pos{binary.LittleEndian.Uint64(b[24:]), int64(binary.LittleEndian.Uint64(b[32:]))}
		}
	}
	s.cursorN = best
	return acked, flight
}

func (s *Spool) syncLoop() {
	defer close(s.syncDone)
	t := time.NewTicker(s.opt.FsyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopSync:
			return
		case <-t.C:
			s.Sync()
		}
	}
}

// Sync writes the segment being appended to and the cursor to disk.
func (s *Spool) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dirty || s.closed {
		return nil
	}
	s.dirty = false
	err := s.segs[len(s.segs)-1].f.Sync()
	if s.cursor != nil {
		err = errors.Join(err, s.cursor.Sync())
	}
	return err
}
