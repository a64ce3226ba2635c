package spool_test

// FuzzSpool: a spool directory holding a segment file of any bytes (and,
// optionally, valid segments around it and a cursor pointing anywhere
// near it) opens, and reading it with Next and Ack delivers the valid
// frames in order, counts a damaged segment as corrupt, ends, and goes
// on delivering what is appended afterwards. Nothing panics or hangs.
// Two corpus entries are the bug it found, a cursor past the last
// segment on disk that stopped the reader for good (cursorOnDisk):
// 97d5618ee80b7db2 and 750d7f0e71d40983.
//
// The test knows the on-disk format (spool.go): a segment is the magic
// "VIGILSP1" and frames of length u32, CRC-32C u32 (of time and
// payload), time i64 and payload, all little-endian; the cursor file has
// two 64-byte slots of sequence, acked segment and offset, in-flight
// segment and offset (u64 each) and a CRC-32C of those 40 bytes. The
// seeds are segments the spool wrote itself, and the fuzzer checks that
// it reads them as the spool does: if the format changes, this file
// must change with it.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/export/spool"
)

const (
	fzMagic        = "VIGILSP1"
	fzFrameHeader  = 16
	fzSegmentBytes = 4096
	fzID           = 5 // the fuzzed segment's id
)

var fzCastagnoli = crc32.MakeTable(crc32.Castagnoli)

func fzSegName(id uint64) string { return fmt.Sprintf("%020d.seg", id) }

func fzOptions() spool.Options {
	t := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	return spool.Options{MaxBytes: 1 << 20, SegmentBytes: fzSegmentBytes, Fsync: spool.FsyncNever, Now: func() time.Time { return t }}
}

// fzFrames returns the payloads of the valid frames at the start of a
// segment, as the spool's scan finds them, and whether the segment is
// damaged: bytes follow them, or it has no header (an empty file too).
func fzFrames(seg []byte) (items [][]byte, rest bool) {
	if len(seg) < len(fzMagic) || string(seg[:len(fzMagic)]) != fzMagic {
		return nil, true
	}
	off := len(fzMagic)
	for off+fzFrameHeader <= len(seg) {
		size := int(binary.LittleEndian.Uint32(seg[off:]))
		if size > fzSegmentBytes || off+fzFrameHeader+size > len(seg) {
			break
		}
		if crc32.Checksum(seg[off+8:off+fzFrameHeader+size], fzCastagnoli) != binary.LittleEndian.Uint32(seg[off+4:]) {
			break
		}
		items = append(items, seg[off+fzFrameHeader:off+fzFrameHeader+size])
		off += fzFrameHeader + size
	}
	return items, off < len(seg)
}

// fzTemplate is a segment the spool wrote, and its records.
type fzTemplate struct {
	seg   []byte
	items [][]byte
}

// fzTemplates has the spool write a few segments and checks that the
// test reads them as the spool wrote them.
func fzTemplates(f *testing.F) []fzTemplate {
	dir := f.TempDir()
	s, err := spool.Open(dir, fzOptions())
	if err != nil {
		f.Fatal(err)
	}
	var all [][]byte
	for i := range 80 {
		it := bytes.Repeat([]byte{byte('a' + i%26)}, i*13%300)
		all = append(all, it)
	}
	all = append(all, nil)
	if err := s.Append(all); err != nil {
		f.Fatal(err)
	}
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		f.Fatal(err)
	}
	slices.Sort(names)
	var ts []fzTemplate
	var got [][]byte
	for _, name := range names {
		seg, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		items, rest := fzFrames(seg)
		if rest {
			f.Fatalf("%s: bytes after the frames the spool wrote: has the format changed?", name)
		}
		ts = append(ts, fzTemplate{seg, items})
		got = append(got, items...)
	}
	if len(ts) < 3 || !slices.EqualFunc(got, all, bytes.Equal) {
		f.Fatalf("%d segments of %d records, %d appended: has the format changed?", len(ts), len(got), len(all))
	}
	return ts
}

// fzCursor is a cursor file with one valid slot.
func fzCursor(acked, ackedOff, flight, flightOff uint64) []byte {
	b := make([]byte, 128)
	slot := b[64:] // sequence 1 goes in slot 1
	binary.LittleEndian.PutUint64(slot[0:], 1)
	binary.LittleEndian.PutUint64(slot[8:], acked)
	binary.LittleEndian.PutUint64(slot[16:], ackedOff)
	binary.LittleEndian.PutUint64(slot[24:], flight)
	binary.LittleEndian.PutUint64(slot[32:], flightOff)
	binary.LittleEndian.PutUint32(slot[40:], crc32.Checksum(slot[:40], fzCastagnoli))
	return b
}

func FuzzSpool(f *testing.F) {
	ts := fzTemplates(f)
	for i, tp := range ts {
		f.Add(tp.seg, uint8(i), int8(0), uint16(0), int8(0), uint16(0))
		// A torn last frame; a flipped byte in a payload.
		f.Add(tp.seg[:len(tp.seg)-3], uint8(1), int8(0), uint16(0), int8(0), uint16(0))
		bad := bytes.Clone(tp.seg)
		bad[len(bad)/2] ^= 0x40
		f.Add(bad, uint8(3), int8(0), uint16(0), int8(0), uint16(0))
		// A cursor inside the segment, in flight to its end.
		f.Add(tp.seg, uint8(4|i&3), int8(0), uint16(len(tp.seg)/2), int8(0), uint16(len(tp.seg)))
	}
	f.Add([]byte{}, uint8(1), int8(0), uint16(0), int8(0), uint16(0))
	f.Add([]byte("VIGILSP"), uint8(3), int8(0), uint16(0), int8(0), uint16(0))
	f.Add([]byte("not a spool segment at all"), uint8(1), int8(0), uint16(0), int8(0), uint16(0))
	before, after := ts[0], ts[1]

	f.Fuzz(func(t *testing.T, seg []byte, mode uint8, ackDelta int8, ackOff uint16, flightDelta int8, flightOff uint16) {
		if len(seg) > 1<<20 {
			return
		}
		dir := t.TempDir()
		write := func(name string, b []byte) {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o640); err != nil {
				t.Fatal(err)
			}
		}
		var want [][]byte
		if mode&2 != 0 {
			write(fzSegName(fzID-1), before.seg)
			want = append(want, before.items...)
		}
		write(fzSegName(fzID), seg)
		items, rest := fzFrames(seg)
		want = append(want, items...)
		last := mode&1 == 0
		if !last {
			write(fzSegName(fzID+1), after.seg)
			want = append(want, after.items...)
		}
		cursor := mode&4 != 0
		if cursor {
			write("cursor", fzCursor(uint64(fzID+int64(ackDelta%4)), uint64(ackOff), uint64(fzID+int64(flightDelta%4)), uint64(flightOff)))
		}

		s, err := spool.Open(dir, fzOptions())
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close()
		pending := s.Pending()
		if !cursor && pending != int64(len(want)) {
			t.Errorf("%d records pending, %d valid frames on disk", pending, len(want))
		}

		maxItems := int(mode>>3&3)*5 + 1
		maxBytes := int64(64)
		if mode&0x20 != 0 {
			maxBytes = 1 << 16
		}
		next := func() (*spool.Batch, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var b spool.Batch
			err := s.Next(ctx, &b, maxItems, maxBytes)
			return &b, err
		}
		var got [][]byte
		for round := 0; s.Pending() > 0; round++ {
			if round > 2*len(want)+int(pending)+10 {
				t.Fatalf("still %d pending after %d reads", s.Pending(), round)
			}
			b, err := next()
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Next waited with %d records pending (%d of %d delivered)", s.Pending(), len(got), pending)
			}
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if len(b.Items) == 0 || len(b.Items) > maxItems || len(b.Times) != len(b.Items) || b.Redelivered > len(b.Items) {
				t.Fatalf("a batch of %d items, %d times, %d redelivered (max %d)", len(b.Items), len(b.Times), b.Redelivered, maxItems)
			}
			n := len(b.Items)
			if mode&0x40 != 0 {
				n = (n + 1) / 2
			}
			for _, it := range b.Items[:n] {
				got = append(got, bytes.Clone(it))
			}
			s.Ack(b, n)
		}
		st := s.Stats()
		if !cursor {
			if !slices.EqualFunc(got, want, bytes.Equal) {
				t.Errorf("delivered %d records, want the %d valid frames", len(got), len(want))
			}
			if st.Redelivered != 0 {
				t.Errorf("%d redelivered with no cursor", st.Redelivered)
			}
			if damaged := rest && !last; damaged != (st.CorruptSegments > 0) {
				t.Errorf("%d corrupt segments; the fuzzed one is damaged: %v, last: %v", st.CorruptSegments, rest, last)
			}
		}
		if st.Delivered != uint64(len(got)) {
			t.Errorf("stats: %d delivered, %d acknowledged", st.Delivered, len(got))
		}

		// The spool goes on: a record appended now is delivered.
		rec := []byte("after the fuzzed segment")
		if err := s.Append([][]byte{rec}); err != nil {
			t.Fatalf("Append: %v", err)
		}
		b, err := next()
		if err != nil {
			t.Fatalf("Next after Append (%d pending): %v", s.Pending(), err)
		}
		if len(b.Items) != 1 || !bytes.Equal(b.Items[0], rec) {
			t.Fatalf("after Append, Next gave %d items: %q", len(b.Items), b.Items)
		}
		s.Ack(b, 1)
		if p := s.Pending(); p != 0 {
			t.Errorf("%d pending at the end", p)
		}
	})
}
