// Package spool is a bounded, durable FIFO queue on disk: a sink's records
// wait here until the upstream acknowledges them, across upstream outages
// and sensor restarts.
//
// The queue is a directory of segment files written in order. Each record
// is a frame: length, CRC-32C, append time, payload. A small cursor file
// holds the acknowledged position and the end of what was last handed out
// for sending, so that after a crash the records that may have been
// delivered already are counted as redelivered (delivery is at least
// once). When the directory would exceed its byte budget the oldest
// segment is deleted and its unsent records are counted as dropped; a
// corrupt frame makes the reader skip the rest of its segment and count
// it. Nothing here panics or stops on bad data.
//
// One goroutine (or several, serialised by the spool) appends; one
// goroutine reads with Next and acknowledges with Ack.
package spool

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FsyncPolicy says when appended data and the cursor reach the disk.
// Killing the process loses nothing under any policy (the data is in the
// page cache); the policy matters for power loss and kernel crashes.
type FsyncPolicy uint8

// Fsync policies.
const (
	FsyncInterval FsyncPolicy = iota // every Options.FsyncInterval
	FsyncAlways                      // after every Append and every Ack
	FsyncNever                       // leave it to the kernel
)

// ParseFsyncPolicy parses "interval", "always" or "never".
func ParseFsyncPolicy(s string) (FsyncPolicy, error) {
	switch s {
	case "interval", "":
		return FsyncInterval, nil
	case "always":
		return FsyncAlways, nil
	case "never":
		return FsyncNever, nil
	}
	return 0, fmt.Errorf("unknown fsync policy %q (want interval, always or never)", s)
}

func (p FsyncPolicy) String() string {
	return [...]string{"interval", "always", "never"}[p]
}

// Options configure a spool.
type Options struct {
	MaxBytes      int64         // budget for all segments; default 256 MiB
	SegmentBytes  int64         // a segment is sealed past this size; default MaxBytes/16, at most 8 MiB
	Fsync         FsyncPolicy   // default FsyncInterval
	FsyncInterval time.Duration // default 1s
	Now           func() time.Time
}

func (o *Options) defaults() {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 256 << 20
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = min(o.MaxBytes/16, 8<<20)
	}
	o.SegmentBytes = max(min(o.SegmentBytes, o.MaxBytes/2), headerSize+frameHeader+1)
	if o.FsyncInterval <= 0 {
		o.FsyncInterval = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Drop reasons.
const (
	DropFull     = "spool_full" // the budget was reached: the oldest records went
	DropCorrupt  = "corrupt"    // a frame failed its checksum: the rest of its segment went
	DropOversize = "oversize"   // one record larger than a segment
)

// ErrOversize is returned by Append for a record that cannot fit a segment.
var ErrOversize = errors.New("record larger than a spool segment")

const (
	magic       = "VIGILSP1"
	headerSize  = int64(len(magic))
	frameHeader = 16 // length u32, crc32c u32 (of time and payload), time i64
	segSuffix   = ".seg"
	cursorName  = "cursor"
	cursorSlot  = 64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// pos is a place in the queue: a segment and a byte offset in it.
type pos struct {
	seg uint64
	off int64
}

func (p pos) less(q pos) bool { return p.seg < q.seg || p.seg == q.seg && p.off < q.off }

type segment struct {
	id      uint64
	size    int64 // bytes of valid frames, header included
	records int64 // frames in the segment
	read    int64 // frames before the acknowledged position
	corrupt bool  // frames past size are bad: skip them
	f       *os.File
}

// Spool is a durable queue. Its methods are safe for concurrent use, but
// Next and Ack belong to one reader.
type Spool struct {
	dir string
	opt Options

	mu       sync.Mutex
	segs     []*segment // oldest first; the last one is written
	acked    pos        // everything before is delivered
	flight   pos        // end of what was handed out for sending (persisted)
	redeliv  pos        // records before this were handed out before a restart
	gen      uint64     // bumped when records are dropped under the reader
	cursorN  uint64     // cursor writes, picks the slot
	cursor   *os.File
	dirty    bool // data or cursor written since the last fsync
	closed   bool
	wake     chan struct{}
	readBuf  []byte
	writeBuf []byte

	stats struct {
		appended, delivered, redelivered atomic.Uint64
		dropped                          [3]atomic.Uint64 // full, corrupt, oversize
		corruptSegments                  atomic.Uint64
		bytes                            atomic.Int64
		oldest                           atomic.Int64 // append time of the oldest unsent record, ns; 0: none
	}
	stopSync chan struct{}
	syncDone chan struct{}
}

// Open opens or creates the spool in dir, checks every segment, truncates
// a torn last frame, and resumes from the persisted cursor.
func Open(dir string, opt Options) (*Spool, error) {
	opt.defaults()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("creating spool directory: %w", err)
	}
	s := &Spool{dir: dir, opt: opt, wake: make(chan struct{}, 1)}
	if err := s.load(); err != nil {
		s.closeFiles()
		return nil, fmt.Errorf("opening spool %s: %w", dir, err)
	}
	if opt.Fsync == FsyncInterval {
		s.stopSync, s.syncDone = make(chan struct{}), make(chan struct{})
		go s.syncLoop()
	}
	return s, nil
}

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
		s.segs = append(s.segs, &segment{id: id})
	}
	slices.SortFunc(s.segs, func(a, b *segment) int { return cmp.Compare(a.id, b.id) })
	for i, sg := range s.segs {
		if err := s.scan(sg, i == len(s.segs)-1); err != nil {
			return err
		}
	}
	if s.cursor, err = os.OpenFile(filepath.Join(s.dir, cursorName), os.O_RDWR|os.O_CREATE, 0o640); err != nil {
		return err
	}
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

// scan validates a segment's frames. A bad frame in the last segment is a
// torn write and is cut off; elsewhere it is corruption, skipped on read.
func (s *Spool) scan(sg *segment, last bool) error {
	f, err := os.OpenFile(s.segPath(sg.id), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	sg.f = f
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

func (s *Spool) segPath(id uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d%s", id, segSuffix))
}

func (s *Spool) newSegment(id uint64) error {
	f, err := os.OpenFile(s.segPath(id), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("creating spool segment: %w", err)
	}
	if _, err := f.Write([]byte(magic)); err != nil {
		f.Close()
		return fmt.Errorf("writing spool segment header: %w", err)
	}
	s.segs = append(s.segs, &segment{id: id, size: headerSize, f: f})
	return nil
}

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
				s.stats.dropped[1].Add(uint64(lost))
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
		s.stats.dropped[1].Add(uint64(lost))
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
	if s.opt.Fsync == FsyncAlways {
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
	return errors.Join(err, s.cursor.Sync())
}

// Close syncs and closes the spool. Unsent records stay for the next Open.
func (s *Spool) Close() error {
	if s.stopSync != nil {
		close(s.stopSync)
		<-s.syncDone
	}
	err := s.Sync()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.closeFiles()
	return err
}

func (s *Spool) closeFiles() {
	for _, sg := range s.segs {
		if sg.f != nil {
			sg.f.Close()
		}
	}
	if s.cursor != nil {
		s.cursor.Close()
	}
}

// Pending returns how many records wait to be acknowledged.
func (s *Spool) Pending() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, sg := range s.segs {
		n += sg.records - sg.read
	}
	return n
}

// Stats are a spool's counters.
type Stats struct {
	Appended        uint64 // records appended
	Delivered       uint64 // records acknowledged
	Redelivered     uint64 // acknowledged records handed out before a restart too
	DroppedFull     uint64
	DroppedCorrupt  uint64
	DroppedOversize uint64
	CorruptSegments uint64
	Bytes           int64 // on disk now
	Oldest          time.Time
}

// Stats returns the spool's counters.
func (s *Spool) Stats() Stats {
	st := Stats{
		Appended:        s.stats.appended.Load(),
		Delivered:       s.stats.delivered.Load(),
		Redelivered:     s.stats.redelivered.Load(),
		DroppedFull:     s.stats.dropped[0].Load(),
		DroppedCorrupt:  s.stats.dropped[1].Load(),
		DroppedOversize: s.stats.dropped[2].Load(),
		CorruptSegments: s.stats.corruptSegments.Load(),
		Bytes:           s.stats.bytes.Load(),
	}
	if t := s.stats.oldest.Load(); t != 0 {
		st.Oldest = time.Unix(0, t)
	}
	return st
}
