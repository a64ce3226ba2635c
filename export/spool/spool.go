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
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
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
	Log           *slog.Logger // what Open skips, write errors; default slog.Default()
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
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

// Drop reasons.
const (
	DropFull     = "spool_full" // the budget was reached: the oldest records went
	DropCorrupt  = "corrupt"    // a frame failed its checksum: the rest of its segment went
	DropOversize = "oversize"   // one record larger than a segment
	// DropWriteError: the record never reached the segment file (a full
	// disk, an I/O error).
	DropWriteError = "write_error"
)

// Indexes of the drop counters.
const (
	dropFull = iota
	dropCorrupt
	dropOversize
	dropWriteError
	dropReasons
)

// ErrOversize is returned by Append for a record that cannot fit a segment.
var ErrOversize = errors.New("record larger than a spool segment")

// ErrInUse is returned by Open for a spool another process (a running
// sensor, another replay) has open: sharing it would lose records.
var ErrInUse = errors.New("spool in use by another process (a running vigil with the same export.spool.dir?)")

const (
	magic       = "VIGILSP1"
	headerSize  = int64(len(magic))
	frameHeader = 16 // length u32, crc32c u32 (of time and payload), time i64
	segSuffix   = ".seg"
	cursorName  = "cursor"
	lockName    = "lock"
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

	mu           sync.Mutex
	segs         []*segment // oldest first; the last one is written
	acked        pos        // everything before is delivered
	flight       pos        // end of what was handed out for sending (persisted)
	redeliv      pos        // records before this were handed out before a restart
	gen          uint64     // bumped when records are dropped under the reader
	cursorN      uint64     // cursor writes, picks the slot
	cursor       *os.File
	lock         *os.File // held while open (lockDir)
	dirty        bool     // data or cursor written since the last fsync
	writeFailing bool     // the last append failed to write (logged once)
	nextID       uint64   // new segments are numbered at least this (past entries Open skipped)
	closed       bool
	wake         chan struct{}
	readBuf      []byte
	writeBuf     []byte

	stats struct {
		appended, delivered, redelivered atomic.Uint64
		dropped                          [dropReasons]atomic.Uint64
		corruptSegments                  atomic.Uint64
		skipped                          atomic.Uint64
		bytes                            atomic.Int64
		oldest                           atomic.Int64 // append time of the oldest unsent record, ns; 0: none
	}
	// writeAt writes appended frames: (*os.File).WriteAt, or a failing
	// one in tests.
	writeAt  func(f *os.File, b []byte, off int64) (int, error)
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
	opt.Log = opt.Log.With("spool", dir)
	s := &Spool{dir: dir, opt: opt, wake: make(chan struct{}, 1), writeAt: (*os.File).WriteAt}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("opening spool %s: %w", dir, err)
	}
	s.lock = lock
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

func (s *Spool) segPath(id uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d%s", id, segSuffix))
}

func (s *Spool) newSegment(id uint64) error {
	id = max(id, s.nextID)
	f, err := os.OpenFile(s.segPath(id), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("creating spool segment %d: %w", id, err)
	}
	if _, err := f.Write([]byte(magic)); err != nil {
		f.Close()
		os.Remove(f.Name()) // not a segment: no header
		return fmt.Errorf("writing spool segment %d header: %w", id, err)
	}
	s.segs = append(s.segs, &segment{id: id, size: headerSize, f: f})
	return nil
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
	if s.lock != nil {
		s.lock.Close() // last: the files are released
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
	DroppedWrite    uint64 // DropWriteError: never reached the disk
	CorruptSegments uint64
	SkippedEntries  uint64 // entries of the directory Open left alone (a directory named like a segment, an unusable cursor)
	Bytes           int64  // on disk now
	Oldest          time.Time
}

// Stats returns the spool's counters.
func (s *Spool) Stats() Stats {
	st := Stats{
		Appended:        s.stats.appended.Load(),
		Delivered:       s.stats.delivered.Load(),
		Redelivered:     s.stats.redelivered.Load(),
		DroppedFull:     s.stats.dropped[dropFull].Load(),
		DroppedCorrupt:  s.stats.dropped[dropCorrupt].Load(),
		DroppedOversize: s.stats.dropped[dropOversize].Load(),
		DroppedWrite:    s.stats.dropped[dropWriteError].Load(),
		CorruptSegments: s.stats.corruptSegments.Load(),
		SkippedEntries:  s.stats.skipped.Load(),
		Bytes:           s.stats.bytes.Load(),
	}
	if t := s.stats.oldest.Load(); t != 0 {
		st.Oldest = time.Unix(0, t)
	}
	return st
}
