package spool

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vigil-sensor/vigil/internal/testutil"
)

// A write that fails part way (ENOSPC after some bytes) keeps the whole
// frames that reached the file, drops and counts the others as
// write_error, never counts them as spooled, and cuts the segment back
// so that later appends and a restart see only whole frames.
func TestFailedWriteDropsAndCountsRecords(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	s := open(t, dir, Options{Log: quiet})
	appendN(t, s, 0, 2)
	frame := int64(frameHeader + len(item(0)))
	s.writeAt = func(f *os.File, b []byte, off int64) (int, error) {
		n := int(min(int64(len(b)), 3*frame+frame/2)) // 3.5 frames fit
		if _, err := f.WriteAt(b[:n], off); err != nil {
			t.Fatal(err)
		}
		if n < len(b) {
			return n, syscall.ENOSPC
		}
		return n, nil
	}
	err := s.Append(batch(2, 10))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append on a full disk returned %v, want ENOSPC", err)
	}
	st := s.Stats()
	if st.Appended != 5 || st.DroppedWrite != 7 || s.Pending() != 5 {
		t.Fatalf("appended %d, dropped %d, pending %d; want 5, 7 and 5", st.Appended, st.DroppedWrite, s.Pending())
	}
	seg := segFiles(t, dir)[0]
	if fi, err := os.Stat(seg); err != nil || fi.Size() != headerSize+5*frame {
		t.Fatalf("segment not cut back to its last whole frame: %v %v", fi.Size(), err)
	}
	// The disk has room again.
	s.writeAt = (*os.File).WriteAt
	appendN(t, s, 12, 3)
	equalInts(t, "after a failed write", drain(t, s, 100), append(seq(0, 5), seq(12, 15)...))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, dir, Options{})
	defer s2.Close()
	appendN(t, s2, 15, 2)
	equalInts(t, "after a restart", drain(t, s2, 100), seq(15, 17))
	if st := s2.Stats(); st.CorruptSegments != 0 {
		t.Errorf("%d corrupt segments after a failed write", st.CorruptSegments)
	}
}

func batch(from, n int) [][]byte {
	var b [][]byte
	for i := from; i < from+n; i++ {
		b = append(b, item(i))
	}
	return b
}

// On a real full file system (a 64 KiB tmpfs) every record is either
// spooled and delivered or dropped and counted as write_error: none is
// counted as spooled without being on disk, nothing waits forever, and
// once the reader frees room appending works again. With 8 KiB segments
// the disk fills when a new segment is started, with 24 KiB in the
// middle of one. Needs root to mount.
func TestFullDisk(t *testing.T) {
	testutil.RequirePrivileged(t)
	for _, segBytes := range []int64{8 << 10, 24 << 10} {
		t.Run(fmt.Sprintf("segment %d KiB", segBytes>>10), func(t *testing.T) { testFullDisk(t, segBytes) })
	}
}

func testFullDisk(t *testing.T, segBytes int64) {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mounting tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	var logs bytes.Buffer
	opt := Options{MaxBytes: 1 << 20, SegmentBytes: segBytes, Fsync: FsyncNever, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	s := open(t, filepath.Join(dir, "spool"), opt)
	sent, failed := 0, 0
	for failed < 20 && sent < 100000 { // on into the full disk
		if err := s.Append(batch(sent, 25)); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Append: %v, want ENOSPC", err)
			}
			failed++
		}
		sent += 25
	}
	st := s.Stats()
	t.Logf("sent %d, appended %d, dropped %d, %d failed appends, %d bytes", sent, st.Appended, st.DroppedWrite, failed, st.Bytes)
	if failed == 0 || st.DroppedWrite == 0 {
		t.Fatalf("no write error after %d records on a 64 KiB file system", sent)
	}
	if st.Appended+st.DroppedWrite != uint64(sent) {
		t.Fatalf("appended %d + dropped %d != %d records", st.Appended, st.DroppedWrite, sent)
	}
	if uint64(s.Pending()) != st.Appended {
		t.Fatalf("%d pending, %d appended", s.Pending(), st.Appended)
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d errors logged for one full disk, want 1:\n%s", n, logs.String())
	}
	got := drain(t, s, 64) // fails if a record counted as pending cannot be read
	if uint64(len(got)) != st.Appended {
		t.Fatalf("delivered %d of %d spooled", len(got), st.Appended)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("out of order at %d: %d after %d", i, got[i], got[i-1])
		}
	}
	// The reader freed the sealed segments: there is room again.
	for i := range 3 {
		if err := s.Append(batch(sent+25*i, 25)); err != nil {
			t.Fatalf("Append after the spool drained: %v", err)
		}
	}
	equalInts(t, "after room was made", drain(t, s, 64), seq(sent, sent+75))
	if !strings.Contains(logs.String(), "spool writes work again") {
		t.Errorf("the recovery is not logged:\n%s", logs.String())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, filepath.Join(dir, "spool"), opt)
	defer s2.Close()
	if st := s2.Stats(); st.CorruptSegments != 0 || s2.Pending() != 0 {
		t.Errorf("after a restart: %d corrupt segments, %d pending", st.CorruptSegments, s2.Pending())
	}
}
