package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func item(i int) []byte { return []byte(fmt.Sprintf("record-%06d-%s", i, "payload")) }

func open(t *testing.T, dir string, opt Options) *Spool {
	t.Helper()
	s, err := Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func appendN(t *testing.T, s *Spool, from, n int) {
	t.Helper()
	items := make([][]byte, 0, n)
	for i := from; i < from+n; i++ {
		items = append(items, item(i))
	}
	if err := s.Append(items); err != nil {
		t.Fatal(err)
	}
}

// drain reads and acknowledges everything pending, returning the record
// numbers in the order they came out.
func drain(t *testing.T, s *Spool, maxItems int) []int {
	t.Helper()
	var got []int
	var b Batch
	for s.Pending() > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := s.Next(ctx, &b, maxItems, 4096)
		cancel()
		if err != nil {
			t.Fatalf("next with %d pending: %v", s.Pending(), err)
		}
		for _, it := range b.Items {
			got = append(got, num(t, it))
		}
		s.Ack(&b, len(b.Items))
	}
	return got
}

func num(t *testing.T, it []byte) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscanf(string(it), "record-%06d-", &n); err != nil {
		t.Fatalf("bad item %q: %v", it, err)
	}
	return n
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func equalInts(t *testing.T, what string, got, want []int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d records, want %d (first %v)", what, len(got), len(want), got[:min(len(got), 10)])
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: record %d is %d, want %d", what, i, got[i], want[i])
		}
	}
}

func TestFIFOAcrossSegments(t *testing.T) {
	s := open(t, t.TempDir(), Options{MaxBytes: 1 << 20, SegmentBytes: 1024})
	defer s.Close()
	appendN(t, s, 0, 500)
	if segs := len(s.segs); segs < 10 {
		t.Fatalf("500 records in 1 KiB segments made only %d segments", segs)
	}
	equalInts(t, "drained", drain(t, s, 7), seq(0, 500))
	st := s.Stats()
	if st.Appended != 500 || st.Delivered != 500 || st.DroppedFull+st.DroppedCorrupt != 0 {
		t.Errorf("stats %+v", st)
	}
	if len(s.segs) != 1 {
		t.Errorf("%d segments left after everything was acknowledged, want 1", len(s.segs))
	}
	if !st.Oldest.IsZero() {
		t.Errorf("oldest unsent %v with nothing pending", st.Oldest)
	}
}

func TestRetryReturnsSameRecordsAndPartialAck(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	defer s.Close()
	appendN(t, s, 0, 10)
	var b Batch
	ctx := context.Background()
	if err := s.Next(ctx, &b, 4, 1<<20); err != nil {
		t.Fatal(err)
	}
	first := num(t, b.Items[0])
	if err := s.Next(ctx, &b, 4, 1<<20); err != nil { // no ack: a retry
		t.Fatal(err)
	}
	if n := num(t, b.Items[0]); n != first || len(b.Items) != 4 {
		t.Fatalf("retry starts at %d with %d items, want %d with 4", n, len(b.Items), first)
	}
	s.Ack(&b, 3) // partial: the 4th goes again
	if err := s.Next(ctx, &b, 4, 1<<20); err != nil {
		t.Fatal(err)
	}
	if n := num(t, b.Items[0]); n != 3 {
		t.Fatalf("after acking 3 the next batch starts at %d, want 3", n)
	}
}

func TestRestartResumesAndCountsRedelivered(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 2048})
	appendN(t, s, 0, 100)
	got := drainSome(t, s, 30)
	// Hand out 20 more without acknowledging them, then "crash": no
	// Close, the files are left as a killed process leaves them.
	var b Batch
	if err := s.Next(context.Background(), &b, 20, 1<<20); err != nil {
		t.Fatal(err)
	}
	abandon(s)

	s2 := open(t, dir, Options{SegmentBytes: 2048})
	defer s2.Close()
	if p := s2.Pending(); p != 70 {
		t.Fatalf("after restart %d pending, want 70", p)
	}
	got = append(got, drain(t, s2, 15)...)
	equalInts(t, "delivered across the restart", got, seq(0, 100))
	if r := s2.Stats().Redelivered; r != 20 {
		t.Errorf("redelivered %d, want the 20 handed out before the crash", r)
	}
}

// drainSome reads and acknowledges n records.
func drainSome(t *testing.T, s *Spool, n int) []int {
	t.Helper()
	var got []int
	var b Batch
	for len(got) < n {
		if err := s.Next(context.Background(), &b, n-len(got), 1<<20); err != nil {
			t.Fatal(err)
		}
		for _, it := range b.Items {
			got = append(got, num(t, it))
		}
		s.Ack(&b, len(b.Items))
	}
	return got
}

// abandon releases a spool's files the way a killed process would: no
// sync, no final cursor write.
func abandon(s *Spool) {
	if s.stopSync != nil {
		close(s.stopSync)
		<-s.syncDone
	}
	s.closeFiles()
}

func TestBudgetDropsOldestAndCounts(t *testing.T) {
	s := open(t, t.TempDir(), Options{MaxBytes: 8 << 10, SegmentBytes: 1 << 10})
	defer s.Close()
	const n = 2000 // about 78 KiB of frames into an 8 KiB budget
	for i := 0; i < n; i += 50 {
		appendN(t, s, i, 50)
		if b := s.Stats().Bytes; b > 8<<10+1<<10 {
			t.Fatalf("spool holds %d bytes, budget 8 KiB (+1 segment being written)", b)
		}
	}
	got := drain(t, s, 64)
	st := s.Stats()
	if uint64(len(got))+st.DroppedFull != n {
		t.Fatalf("delivered %d + dropped %d != appended %d", len(got), st.DroppedFull, n)
	}
	if st.DroppedFull == 0 {
		t.Fatal("nothing counted as dropped though the budget was far exceeded")
	}
	// What survives is the newest records, in order.
	equalInts(t, "survivors", got, seq(n-len(got), n))
}

func TestDropUnderOutstandingBatch(t *testing.T) {
	s := open(t, t.TempDir(), Options{MaxBytes: 4 << 10, SegmentBytes: 1 << 10})
	defer s.Close()
	appendN(t, s, 0, 10)
	var b Batch
	if err := s.Next(context.Background(), &b, 5, 1<<20); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 10, 400) // the upstream is down: the batch's segment goes
	s.Ack(&b, len(b.Items))
	got := drain(t, s, 64)
	st := s.Stats()
	if uint64(len(got))+st.DroppedFull != 410 {
		t.Fatalf("delivered %d + dropped %d != 410 appended", len(got), st.DroppedFull)
	}
	equalInts(t, "survivors", got, seq(410-len(got), 410))
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(m)
	return m
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

// fillSegments appends records one segment's worth at a time and returns
// the record numbers in each segment file.
func fillSegments(t *testing.T, s *Spool, n int) map[uint64][]int {
	t.Helper()
	for i := range n {
		appendN(t, s, i, 1)
	}
	in := map[uint64][]int{}
	var b Batch
	// Read without acknowledging to learn which segment holds what.
	for _, sg := range s.segs {
		for off := int64(headerSize); off < sg.size; {
			s.acked = pos{sg.id, off}
			if ok, err := s.read(&b, 1, 1<<20); err != nil || !ok {
				t.Fatalf("reading segment %d at %d: %v", sg.id, off, err)
			}
			in[sg.id] = append(in[sg.id], num(t, b.Items[0]))
			off = b.ends[0]
		}
	}
	s.acked = pos{s.segs[0].id, headerSize}
	s.flight = s.acked
	s.writeCursor()
	return in
}

func TestCorruptSegmentOnDiskIsSkippedAndCounted(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 600})
	in := fillSegments(t, s, 60)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files := segFiles(t, dir)
	if len(files) < 4 {
		t.Fatalf("want at least 4 segments, have %d", len(files))
	}
	// Corrupt the second segment's third frame payload.
	victim := files[1]
	id, _ := strconv.ParseUint(filepath.Base(victim)[:20], 10, 64)
	size := int64(frameHeader + len(item(0)))
	flipByte(t, victim, headerSize+2*size+frameHeader+3)

	s2 := open(t, dir, Options{SegmentBytes: 600})
	defer s2.Close()
	got := drain(t, s2, 8)
	var want []int
	for i := range 60 {
		lost := false
		for j, n := range in[id] {
			if n == i && j >= 2 {
				lost = true
			}
		}
		if !lost {
			want = append(want, i)
		}
	}
	equalInts(t, "delivered around the corrupt frame", got, want)
	st := s2.Stats()
	if st.CorruptSegments != 1 {
		t.Errorf("corrupt segments %d, want 1", st.CorruptSegments)
	}
	if st.DroppedCorrupt != 0 {
		// Records past a bad frame cannot be counted after a restart:
		// the length chain is broken. The segment count says it.
		t.Logf("dropped as corrupt: %d", st.DroppedCorrupt)
	}
}

func TestCorruptionWhileRunningIsSkippedAndCounted(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 600})
	defer s.Close()
	in := fillSegments(t, s, 60)
	files := segFiles(t, dir)
	victim := files[0]
	id, _ := strconv.ParseUint(filepath.Base(victim)[:20], 10, 64)
	flipByte(t, victim, headerSize+frameHeader+1) // the very first record
	got := drain(t, s, 8)
	equalInts(t, "delivered", got, seq(len(in[id]), 60))
	st := s.Stats()
	if st.CorruptSegments != 1 || st.DroppedCorrupt != uint64(len(in[id])) {
		t.Errorf("corrupt segments %d dropped %d, want 1 and %d", st.CorruptSegments, st.DroppedCorrupt, len(in[id]))
	}
}

func TestTornTailIsCutOff(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	appendN(t, s, 0, 10)
	abandon(s)
	files := segFiles(t, dir)
	f, err := os.OpenFile(files[len(files)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(appendFrame(nil, 1, item(10))[:20]) // a frame cut by a crash
	f.Close()
	s2 := open(t, dir, Options{})
	defer s2.Close()
	appendN(t, s2, 11, 5)
	equalInts(t, "after a torn write", drain(t, s2, 100), append(seq(0, 10), seq(11, 16)...))
}

func TestGarbageFilesDoNotStopOpen(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "00000000000000000001.seg"), []byte("not a segment at all"), 0o640)
	os.WriteFile(filepath.Join(dir, "00000000000000000002.seg"), nil, 0o640)
	os.WriteFile(filepath.Join(dir, cursorName), []byte("garbage cursor"), 0o640)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("left alone"), 0o640)
	s := open(t, dir, Options{})
	defer s.Close()
	appendN(t, s, 0, 3)
	equalInts(t, "fresh records after garbage", drain(t, s, 10), seq(0, 3))
	if st := s.Stats(); st.CorruptSegments != 1 {
		t.Errorf("corrupt segments %d, want 1 (the file without a header)", st.CorruptSegments)
	}
}

func TestOversizeAndLargeRecords(t *testing.T) {
	s := open(t, t.TempDir(), Options{SegmentBytes: 4096})
	defer s.Close()
	big := make([]byte, 3000)
	copy(big, item(1))
	err := s.Append([][]byte{item(0), make([]byte, 5000), big, item(2)})
	if err == nil {
		t.Fatal("a record larger than a segment was accepted")
	}
	if st := s.Stats(); st.DroppedOversize != 1 || st.Appended != 3 {
		t.Fatalf("stats %+v: want 1 oversize dropped, 3 appended", st)
	}
	var b Batch
	var got []int
	for s.Pending() > 0 {
		if err := s.Next(context.Background(), &b, 10, 100); err != nil { // maxBytes below the big record
			t.Fatal(err)
		}
		for _, it := range b.Items {
			got = append(got, num(t, it))
		}
		s.Ack(&b, len(b.Items))
	}
	equalInts(t, "with a record larger than maxBytes", got, []int{0, 1, 2})
}

func TestNextWaitsForAppendAndHonoursContext(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var b Batch
	if err := s.Next(ctx, &b, 1, 100); err != context.DeadlineExceeded {
		t.Fatalf("Next on an empty spool returned %v, want the deadline", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 1000 {
			if err := s.Append([][]byte{item(i)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var got []int
	for len(got) < 1000 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := s.Next(ctx, &b, 64, 1<<20)
		cancel()
		if err != nil {
			t.Fatalf("after %d records: %v", len(got), err)
		}
		for _, it := range b.Items {
			got = append(got, num(t, it))
		}
		s.Ack(&b, len(b.Items))
	}
	wg.Wait()
	equalInts(t, "concurrent append and read", got, seq(0, 1000))
}

func TestOldestUnsentAge(t *testing.T) {
	now := time.Unix(1000, 0)
	s := open(t, t.TempDir(), Options{Now: func() time.Time { return now }})
	defer s.Close()
	appendN(t, s, 0, 2)
	now = now.Add(time.Minute)
	appendN(t, s, 2, 2)
	if got := s.Stats().Oldest; !got.Equal(time.Unix(1000, 0)) {
		t.Fatalf("oldest %v, want the first append time", got)
	}
	drainSome(t, s, 2)
	if got := s.Stats().Oldest; !got.Equal(time.Unix(1060, 0)) {
		t.Fatalf("oldest after acknowledging the first two: %v, want 1060", got)
	}
	drainSome(t, s, 2)
	if got := s.Stats().Oldest; !got.IsZero() {
		t.Fatalf("oldest %v with nothing pending", got)
	}
}

func TestFsyncPolicies(t *testing.T) {
	for _, p := range []string{"always", "interval", "never"} {
		t.Run(p, func(t *testing.T) {
			pol, err := ParseFsyncPolicy(p)
			if err != nil || pol.String() != p {
				t.Fatalf("parse %q: %v %v", p, pol, err)
			}
			dir := t.TempDir()
			s := open(t, dir, Options{Fsync: pol, FsyncInterval: 10 * time.Millisecond})
			appendN(t, s, 0, 20)
			drainSome(t, s, 5)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s2 := open(t, dir, Options{Fsync: pol})
			defer s2.Close()
			equalInts(t, "after close and open", drain(t, s2, 100), seq(5, 20))
		})
	}
	if _, err := ParseFsyncPolicy("sometimes"); err == nil {
		t.Error("a bad policy parsed")
	}
}

// A directory, a FIFO or a symlink named like a segment, and a segment
// name that is not the canonical one, are skipped with a logged reason
// and counted; they never stop Open, and new segments do not collide
// with them (issue: a directory named like a segment stopped startup).
func TestEntriesNamedLikeSegmentsDoNotStopOpen(t *testing.T) {
	dir := t.TempDir()
	opt := Options{SegmentBytes: 256}
	s := open(t, dir, opt)
	appendN(t, s, 0, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	last := segFiles(t, dir)[len(segFiles(t, dir))-1]
	id, _ := strconv.ParseUint(filepath.Base(last)[:20], 10, 64)
	// The next two segment numbers are taken by a directory and a FIFO.
	if err := os.Mkdir(filepath.Join(dir, fmt.Sprintf("%020d.seg", id+1)), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, fmt.Sprintf("%020d.seg", id+2)), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(last, filepath.Join(dir, fmt.Sprintf("%020d.seg", id+3))); err != nil {
		t.Fatal(err)
	}
	// Parses as a number but is not the name the spool writes.
	if err := os.WriteFile(filepath.Join(dir, "7.seg"), []byte(magic), 0o640); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	opt.Log = slog.New(slog.NewTextHandler(&logs, nil))
	s2, err := Open(dir, opt)
	if err != nil {
		t.Fatalf("Open failed on entries named like segments: %v", err)
	}
	defer s2.Close()
	appendN(t, s2, 3, 40) // rolls segments past the taken numbers
	equalInts(t, "records around the skipped entries", drain(t, s2, 100), seq(0, 43))
	if st := s2.Stats(); st.SkippedEntries != 4 || st.CorruptSegments != 4 {
		t.Errorf("skipped %d, corrupt segments %d; want 4 and 4", st.SkippedEntries, st.CorruptSegments)
	}
	for _, want := range []string{"not a regular file", "not a segment name"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no %q in the log:\n%s", want, logs.String())
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, fmt.Sprintf("%020d.seg", id+1))); err != nil || !fi.IsDir() {
		t.Errorf("the directory was touched: %v %v", fi, err)
	}
}

// A directory where the cursor file goes is skipped with a logged reason
// and counted: the spool opens and works, keeping its cursor in memory.
func TestCursorDirectoryDoesNotStopOpen(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, cursorName), 0o750); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s, err := Open(dir, Options{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("Open failed on a directory named cursor: %v", err)
	}
	appendN(t, s, 0, 5)
	equalInts(t, "with no cursor file", drain(t, s, 2), seq(0, 5))
	if st := s.Stats(); st.SkippedEntries != 1 {
		t.Errorf("skipped %d, want 1", st.SkippedEntries)
	}
	if !strings.Contains(logs.String(), "cursor") {
		t.Errorf("nothing about the cursor in the log:\n%s", logs.String())
	}
	if err := s.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

// A spool open in one process cannot be opened again until it is
// closed: a replay sharing the running sensor's spool appended over the
// sensor's unsent records (issue: replay into a dead sink lost the
// spool's records and exited 0).
func TestOpenTwiceIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	appendN(t, s, 0, 10)
	if s2, err := Open(dir, Options{}); !errors.Is(err, ErrInUse) {
		if s2 != nil {
			appendN(t, s2, 100, 5)
			s2.Close()
		}
		t.Fatalf("a second Open of a spool in use returned %v, want ErrInUse", err)
	}
	appendN(t, s, 10, 5)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s3 := open(t, dir, Options{})
	defer s3.Close()
	equalInts(t, "after the refused Open", drain(t, s3, 100), seq(0, 15))
}
