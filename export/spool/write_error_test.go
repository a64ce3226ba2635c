package spool

import (
	"errors"
	"log/slog"
	"os"
	"syscall"
	"testing"
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
