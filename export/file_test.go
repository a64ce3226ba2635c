package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

// numberedFlows returns n records told apart by their source port,
// starting at first.
func numberedFlows(first, n int) []flow.Record {
	recs := make([]flow.Record, n)
	for i := range recs {
		recs[i] = ocsfRecord("192.0.2.10", "198.51.100.7", 17, uint16(first+i), 53, flow.EndIdle)
	}
	return recs
}

// readLines returns a file's lines and fails the test if the file does
// not end with a newline or a line is not JSON.
func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 {
		return nil
	}
	if data[len(data)-1] != '\n' {
		t.Fatalf("%s does not end with a newline", path)
	}
	lines := bytes.Split(data[:len(data)-1], []byte("\n"))
	for i, l := range lines {
		if !json.Valid(l) {
			t.Fatalf("%s line %d is not JSON: %q", path, i+1, l)
		}
	}
	return lines
}

// srcPort returns the src_port of a Vigil flow line.
func srcPort(t *testing.T, line []byte) int {
	t.Helper()
	var v struct {
		SrcPort *int `json:"src_port"`
	}
	if err := json.Unmarshal(line, &v); err != nil || v.SrcPort == nil {
		t.Fatalf("no src_port in %s (%v)", line, err)
	}
	return *v.SrcPort
}

func TestFileWriterConfig(t *testing.T) {
	dir := t.TempDir()
	for _, edit := range []func(*FileConfig){
		func(c *FileConfig) { c.Path = "" },
		func(c *FileConfig) { c.Format = "csv" },
		func(c *FileConfig) { c.Format = "" },
		func(c *FileConfig) { c.Records = "packets" },
		func(c *FileConfig) { c.RotateMiB = -1 },
		func(c *FileConfig) { c.Keep = -1 },
		func(c *FileConfig) { c.Path = filepath.Join(dir, "missing", "x") },
	} {
		c := DefaultFileConfig()
		c.Path = filepath.Join(dir, "x")
		edit(&c)
		if w, err := NewFileWriter(c, Dependencies{}); err == nil {
			w.Close(context.Background())
			t.Errorf("NewFileWriter(%+v) accepted", c)
		}
	}
	c := DefaultFileConfig()
	c.Path = filepath.Join(dir, "x")
	w, err := NewFileWriter(c, Dependencies{})
	if err != nil {
		t.Fatalf("NewFileWriter(%+v): %v", c, err)
	}
	w.Close(context.Background())
}

func TestFileWriterRotation(t *testing.T) {
	lineLen := len(AppendFlowJSON(nil, &numberedFlows(0, 1)[0], nil)) + 1
	const maxBytes, keep, total = 4096, 3, 1000
	path := filepath.Join(t.TempDir(), "flows.jsonl")
	w, err := newFileWriter(FileConfig{Path: path, Keep: keep}, maxBytes, Dependencies{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < total; i += 37 {
		if err := w.WriteFlows(numberedFlows(i, min(37, total-i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.Written() != total || w.Dropped() != 0 {
		t.Fatalf("written %d dropped %d, want %d and 0", w.Written(), w.Dropped(), total)
	}
	if _, err := os.Stat(path + "." + strconv.Itoa(keep+1)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s.%d exists (err %v), want only %d rotated files", path, keep+1, err, keep)
	}
	// Oldest first, the kept lines are the last records, in order, and
	// each rotated file is as full as MaxBytes allows.
	var ports []int
	for i := keep; i >= 0; i-- {
		p := path
		if i > 0 {
			p += "." + strconv.Itoa(i)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > maxBytes {
			t.Errorf("%s: %d bytes > MaxBytes %d", p, st.Size(), maxBytes)
		}
		if i > 0 && st.Size()+int64(lineLen) <= maxBytes {
			t.Errorf("%s rotated at %d bytes while a %d-byte line still fitted under %d", p, st.Size(), lineLen, maxBytes)
		}
		for _, l := range readLines(t, p) {
			ports = append(ports, srcPort(t, l))
		}
	}
	perFile := maxBytes / lineLen
	if len(ports) < keep*perFile {
		t.Fatalf("%d lines kept, want at least %d", len(ports), keep*perFile)
	}
	for i, p := range ports {
		if want := total - len(ports) + i; p != want {
			t.Fatalf("line %d of the kept files is record %d, want %d", i, p, want)
		}
	}
}

// A line larger than MaxBytes gets a file of its own; with Keep 0 a full
// file is deleted.
func TestFileWriterOversizeLinesKeepZero(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.jsonl")
	w, err := newFileWriter(FileConfig{Path: path}, 100, Dependencies{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := w.WriteFlows(numberedFlows(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != 1 || srcPort(t, lines[0]) != 4 {
		t.Fatalf("%s holds %d lines, want the last record alone", path, len(lines))
	}
	if m, _ := filepath.Glob(path + ".*"); len(m) != 0 {
		t.Errorf("rotated files %v with Keep 0", m)
	}
}

// An existing file counts toward MaxBytes, and a file that ends in the
// middle of a line (a crash) gets the line ended before new lines.
func TestFileWriterAppendsToExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flows.jsonl")
	if err := os.WriteFile(path, []byte(`{"cut":`), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := newFileWriter(FileConfig{Path: path}, 0, Dependencies{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFlows(numberedFlows(7, 2)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	if len(lines) != 3 || string(lines[0]) != `{"cut":` || srcPort(t, lines[1]) != 7 || srcPort(t, lines[2]) != 8 {
		t.Fatalf("file:\n%s", data)
	}
}

// Reopen after an external rotation (rename, then SIGHUP) starts a new
// file at the path; lines written between the rename and Reopen land in
// the renamed file.
func TestFileWriterReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alerts.jsonl")
	w, err := newFileWriter(FileConfig{Path: path, Format: FileFormatOCSF}, 0, testDeps)
	if err != nil {
		t.Fatal(err)
	}
	alert := func(id string) []flow.Alert {
		a := ocsfAlert(flow.AlertStart, flow.SeverityHigh)
		a.ID = id
		return []flow.Alert{a}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.WriteAlerts(alert("a")))
	must(w.Flush())
	must(os.Rename(path, path+".old"))
	must(w.WriteAlerts(alert("b")))
	must(w.Reopen())
	must(w.WriteAlerts(alert("c")))
	must(w.Close(context.Background()))
	ids := func(p string) (out []string) {
		for _, l := range readLines(t, p) {
			var v struct {
				FindingInfo struct{ UID string } `json:"finding_info"`
				ClassUID    int                  `json:"class_uid"`
			}
			must(json.Unmarshal(l, &v))
			if v.ClassUID != OCSFClassDetectionFinding {
				t.Errorf("class_uid %d in an ocsf alert file", v.ClassUID)
			}
			out = append(out, v.FindingInfo.UID)
		}
		return out
	}
	if got := fmt.Sprint(ids(path+".old"), ids(path)); got != "[a b] [c]" {
		t.Errorf("renamed file and new file hold %s, want [a b] [c]", got)
	}
	if w.Written() != 3 {
		t.Errorf("written %d, want 3", w.Written())
	}
	if err := w.WriteAlerts(alert("d")); err == nil || w.Dropped() != 1 {
		t.Errorf("write after Close: err %v, dropped %d; want an error and 1", err, w.Dropped())
	}
	if err := w.Reopen(); err == nil {
		t.Error("Reopen after Close succeeded")
	}
}

// /dev/full takes the open and fails every write with ENOSPC: records
// are dropped and counted, and the writer goes on.
func TestFileWriterWriteErrorCounted(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	w, err := newFileWriter(FileConfig{Path: "/dev/full"}, 0, Dependencies{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFlows(numberedFlows(0, 3)); err != nil {
		t.Fatalf("buffered write failed early: %v", err)
	}
	if err := w.Flush(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Flush: %v, want ENOSPC", err)
	}
	// More than the buffer holds: WriteFlows itself meets the error.
	if err := w.WriteFlows(numberedFlows(0, 400)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("WriteFlows: %v, want ENOSPC", err)
	}
	if err := w.Close(context.Background()); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Close: %v, want ENOSPC", err)
	}
	if w.Written() != 0 || w.Dropped() != 403 {
		t.Errorf("written %d dropped %d, want 0 and 403", w.Written(), w.Dropped())
	}
}

// A rotation that cannot move the file keeps writing in it, and rotates
// again once the obstacle is gone.
func TestFileWriterRotationFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flows.jsonl")
	// path.1 is a non-empty directory: it can be neither removed nor
	// replaced.
	if err := os.MkdirAll(filepath.Join(path+".1", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	lineLen := len(AppendFlowJSON(nil, &numberedFlows(0, 1)[0], nil)) + 1
	w, err := newFileWriter(FileConfig{Path: path, Keep: 1}, int64(3*lineLen), Dependencies{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFlows(numberedFlows(0, 4)); err == nil {
		t.Fatal("rotation into a directory reported no error")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := len(readLines(t, path)); n != 4 || w.Dropped() != 0 {
		t.Fatalf("%d lines in the file, %d dropped; want 4 and 0", n, w.Dropped())
	}
	if err := os.RemoveAll(path + ".1"); err != nil {
		t.Fatal(err)
	}
	// Rotation is tried again after another MaxBytes, counted from the
	// failed rotation: records 4 and 5 still go to the same file.
	if err := w.WriteFlows(numberedFlows(4, 4)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a, b := len(readLines(t, path+".1")), len(readLines(t, path)); a != 6 || b != 2 || w.Written() != 8 {
		t.Errorf("path.1 %d lines, path %d, written %d; want 6, 2, 8", a, b, w.Written())
	}
}

// On a full file system a write stops in the middle of a line: the
// complete lines count as written, the rest as dropped, and the cut line
// is ended so that later lines stay whole.
func TestFileWriterDiskFull(t *testing.T) {
	testutil.RequirePrivileged(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mounting tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 16<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "flows.jsonl")
	w, err := newFileWriter(FileConfig{Path: path}, 0, Dependencies{})
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	for i := 0; i < 200 && w.Dropped() == 0; i++ {
		w.WriteFlows(numberedFlows(sent, 50))
		sent += 50
	}
	w.Flush()
	if w.Dropped() == 0 {
		t.Fatalf("no drop after %d records on a 64 KiB file system", sent)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFlows(numberedFlows(60000, 10)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	sent += 10
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	valid, cut := 0, 0
	for i, l := range lines {
		if json.Valid(l) {
			valid++
		} else if cut++; i >= len(lines)-10 {
			t.Errorf("line %d of %d is cut: %q", i+1, len(lines), l)
		}
	}
	t.Logf("%d lines, %d cut, written %d, dropped %d", len(lines), cut, w.Written(), w.Dropped())
	if cut > 1 {
		t.Errorf("%d cut lines, want at most 1", cut)
	}
	if uint64(valid) != w.Written() || w.Written()+w.Dropped() != uint64(sent) {
		t.Errorf("%d whole lines, written %d, dropped %d, sent %d", valid, w.Written(), w.Dropped(), sent)
	}
	if srcPort(t, lines[len(lines)-1]) != 60009 {
		t.Errorf("last line is not the last record: %s", lines[len(lines)-1])
	}
}

// Standard output is written but never closed: a child process (this
// test binary) writes to its real stdout, the parent reads it.
func TestFileWriterStdout(t *testing.T) {
	if os.Getenv("VIGIL_TEST_STDOUT_CHILD") == "1" {
		w, err := newFileWriter(FileConfig{Path: "-"}, 10, Dependencies{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteFlows(numberedFlows(1, 3)); err != nil {
			t.Fatal(err)
		}
		if err := w.Reopen(); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stdout.WriteString("after\n"); err != nil {
			t.Fatalf("stdout closed by Close: %v", err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFileWriterStdout$", "-test.count=1")
	cmd.Env = append(os.Environ(), "VIGIL_TEST_STDOUT_CHILD=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	lines := bytes.Split(out, []byte("\n"))
	if len(lines) < 4 || srcPort(t, lines[0]) != 1 || srcPort(t, lines[2]) != 3 || string(lines[3]) != "after" {
		t.Errorf("child's stdout:\n%s", out)
	}
}

// Concurrent writers, flushes and reopens never interleave lines.
func TestFileWriterConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mixed.jsonl")
	w, err := newFileWriter(FileConfig{Path: path, Keep: 100}, 64<<10, Dependencies{})
	if err != nil {
		t.Fatal(err)
	}
	const writers, batches, per = 4, 50, 20
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range batches {
				if g == 0 {
					w.WriteAlerts([]flow.Alert{ocsfAlert(flow.AlertUpdate, flow.SeverityLow)})
				}
				w.WriteFlows(numberedFlows(g*batches*per+i*per, per))
				if i%10 == 0 {
					w.Flush()
					w.Reopen()
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(path + "*")
	n := 0
	for _, f := range files {
		n += len(readLines(t, f))
	}
	if want := writers*batches*per + batches; n != want || w.Written() != uint64(want) {
		t.Errorf("%d lines in %d files, written %d; want %d", n, len(files), w.Written(), want)
	}
}

func BenchmarkFileWriter(b *testing.B) {
	for _, format := range []string{FileFormatVigil, FileFormatOCSF} {
		b.Run(format, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "flows.jsonl")
			w, err := newFileWriter(FileConfig{Path: path, Format: format, Keep: 1}, 64<<20,
				Dependencies{IfName: func(uint32) string { return "eth0" }, Version: testProduct.Version, Sensor: testProduct.Sensor})
			if err != nil {
				b.Fatal(err)
			}
			recs := numberedFlows(0, 256)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := w.WriteFlows(recs); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
			n := float64(b.N * len(recs))
			b.ReportMetric(n/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/record")
		})
	}
}
