package spool

// Opening a spool directory: the segments found, what is skipped, the
// cursor, and the recovery of a torn or corrupt tail.

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// load reads the directory: its segments, in order, and the cursor.
func (s *Spool) load() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil {
			continue
		}
		switch {
		case name != filepath.Base(s.segPath(id)):
			// Not a name the spool writes ("7.seg"): reading it as
			// segment 7 would open another file.
			s.skip(name, "not a segment name (segments are named with 20 digits)", nil)
			continue
		case !e.Type().IsRegular():
			s.nextID = max(s.nextID, id+1) // never create a segment over it
			s.skip(name, "not a regular file", nil)
			continue
		}
		s.segs = append(s.segs, &segment{id: id})
	}
	slices.SortFunc(s.segs, func(a, b *segment) int { return cmp.Compare(a.id, b.id) })
	// A segment that cannot be opened is skipped like one that is not a
	// segment; the last one that can is the one appended to.
	s.segs = slices.DeleteFunc(s.segs, func(sg *segment) bool {
		if err := s.open(sg); err != nil {
			s.nextID = max(s.nextID, sg.id+1)
			s.skip(filepath.Base(s.segPath(sg.id)), "cannot be opened", err)
			return true
		}
		return false
	})
	for i, sg := range s.segs {
		if err := s.scan(sg, i == len(s.segs)-1); err != nil {
			return err
		}
	}
	s.openCursor()
	acked, flight := s.readCursor()
	if len(s.segs) == 0 {
		if err := s.newSegment(max(acked.seg, flight.seg) + 1); err != nil {
			return err
		}
	}
	first := pos{s.segs[0].id, headerSize}
	if acked.less(first) {
		acked = first
	}
	acked = s.cursorOnDisk(acked)
	s.acked, s.flight, s.redeliv = acked, acked, flight
	// Count the records before the cursor in its segment as read.
	for _, sg := range s.segs {
		if sg.id < acked.seg {
			continue
		}
		if sg.id == acked.seg {
			n, off := s.countFrames(sg, acked.off)
			sg.read, s.acked.off = n, off
		}
		break
	}
	s.removeAcked()
	s.updateBytes()
	s.refreshOldest()
	return nil
}

// cursorOnDisk moves an acknowledged position that points into a
// segment no longer on disk (a segment lost with the power before the
// directory was synced, or removed by hand) to the next record that is:
// the start of the first segment after it, or, when every segment is
// before it, the end of the last. Left there, the reader would wait for
// that segment for good, and every record appended after it with it.
func (s *Spool) cursorOnDisk(acked pos) pos {
	for _, sg := range s.segs {
		if sg.id == acked.seg {
			return acked
		}
		if sg.id > acked.seg {
			s.opt.Log.Warn("the spool cursor points into a segment that is gone; reading on from the next one",
				"cursor_segment", acked.seg, "next_segment", sg.id)
			return pos{sg.id, headerSize}
		}
	}
	last := s.segs[len(s.segs)-1]
	s.opt.Log.Warn("the spool cursor points past every segment; reading on from the end of the last one",
		"cursor_segment", acked.seg, "last_segment", last.id)
	return pos{last.id, last.size}
}

// skip counts and logs an entry of the spool directory that Open leaves
// alone. One named like a segment counts as a corrupt segment too: it is
// not a segment at all, and is skipped the same way.
func (s *Spool) skip(name, reason string, err error) {
	s.stats.skipped.Add(1)
	if strings.HasSuffix(name, segSuffix) {
		s.stats.corruptSegments.Add(1)
	}
	args := []any{"entry", name, "reason", reason}
	if err != nil {
		args = append(args, "error", err)
	}
	s.opt.Log.Warn("skipping an entry of the spool directory", args...)
}

// open opens a segment file found in the directory, checking that it is
// still a regular file (it was one when the directory was listed).
func (s *Spool) open(sg *segment) error {
	f, err := os.OpenFile(s.segPath(sg.id), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", fi.Mode().Type())
	}
	if err != nil {
		f.Close()
		return err
	}
	sg.f = f
	return nil
}

// openCursor opens or creates the cursor file. When it cannot (a
// directory in its place), the spool runs with its cursor in memory: a
// restart then sends everything still on disk again (at least once).
func (s *Spool) openCursor() {
	path := filepath.Join(s.dir, cursorName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err == nil {
		if fi, serr := f.Stat(); serr != nil || !fi.Mode().IsRegular() {
			f.Close()
			f, err = nil, cmp.Or(serr, fmt.Errorf("%s is not a regular file", fi.Mode().Type()))
		}
	}
	if err != nil {
		s.stats.skipped.Add(1)
		s.opt.Log.Error("cannot use the spool cursor file; the acknowledged position is kept in memory only, and after a restart every record left on disk is sent again",
			"entry", cursorName, "error", err)
		return
	}
	s.cursor = f
}

// scan validates a segment's frames. A bad frame in the last segment is a
// torn write and is cut off; elsewhere it is corruption, skipped on read.
func (s *Spool) scan(sg *segment, last bool) error {
	f := sg.f
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	var hdr [headerSize]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil || string(hdr[:]) != magic {
		sg.size, sg.corrupt = headerSize, fi.Size() > 0
		if last {
			sg.corrupt = false
			return s.truncate(sg)
		}
		s.stats.corruptSegments.Add(1)
		return nil
	}
	n, off := s.countFrames(sg, fi.Size())
	sg.records, sg.size = n, off
	if off < fi.Size() {
		if last {
			return s.truncate(sg)
		}
		sg.corrupt = true
		s.stats.corruptSegments.Add(1)
	}
	return nil
}

func (s *Spool) truncate(sg *segment) error {
	if err := sg.f.Truncate(sg.size); err != nil {
		return err
	}
	if sg.size == headerSize {
		if _, err := sg.f.WriteAt([]byte(magic), 0); err != nil {
			return err
		}
	}
	return nil
}

// countFrames walks valid frames from the segment's start up to limit
// bytes and returns how many there are and where they end.
func (s *Spool) countFrames(sg *segment, limit int64) (int64, int64) {
	off, n := headerSize, int64(0)
	var h [frameHeader]byte
	buf := s.readBuf
	for off+frameHeader <= limit {
		if _, err := sg.f.ReadAt(h[:], off); err != nil {
			break
		}
		size := int64(binary.LittleEndian.Uint32(h[0:]))
		if off+frameHeader+size > limit || size > s.opt.SegmentBytes {
			break
		}
		if int64(cap(buf)) < size+8 {
			buf = make([]byte, size+8)
		}
		b := buf[:size+8]
		copy(b, h[8:16])
		if _, err := sg.f.ReadAt(b[8:], off+frameHeader); err != nil {
			break
		}
		if crc32.Checksum(b, castagnoli) != binary.LittleEndian.Uint32(h[4:]) {
			break
		}
		off += frameHeader + size
		n++
	}
	s.readBuf = buf
	return n, off
}
