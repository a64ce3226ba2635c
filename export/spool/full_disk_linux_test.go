package spool

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vigil-sensor/vigil/internal/testutil"
)

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
