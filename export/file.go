package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/config"
)

// File output formats.
const (
	FileFormatVigil = "vigil" // AppendFlowJSON, AppendAlertJSON (docs/FLOWS.md)
	FileFormatOCSF  = "ocsf"  // AppendFlowOCSF, AppendAlertOCSF (docs/OCSF.md)
)

// maxRotateMiB bounds rotate_mib (1 TiB): far from where MiB in bytes
// overflows.
const maxRotateMiB = 1 << 20

// FileConfig is one entry of export.files: a JSON-lines file with
// size-based rotation. flows.output is one too, of every record.
type FileConfig struct {
	// Path is the file written, or "-" for standard output.
	Path string `yaml:"path"`
	// Format is FileFormatVigil or FileFormatOCSF.
	Format string `yaml:"format"`
	// Records is what the file carries: flows, alerts or all.
	Records string `yaml:"records"`
	// RotateMiB rotates the file before a line would take it past this
	// size: a line is never split across files, and a file grows past
	// it only when it holds one line that is larger. 0: no rotation.
	// Ignored for standard output.
	RotateMiB int `yaml:"rotate_mib"`
	// Keep is how many rotated files are kept: path.1 (the newest) to
	// path.Keep. With 0 a full file is deleted when it rotates.
	Keep int `yaml:"keep"`
}

// DefaultFileConfig returns the defaults of an entry: Vigil's JSON, all
// records, no rotation.
func DefaultFileConfig() FileConfig {
	return FileConfig{Format: FileFormatVigil, Records: "all"}
}

// UnmarshalYAML decodes an entry over DefaultFileConfig: YAML gives a
// list element only the keys it names.
func (c *FileConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain FileConfig
	p := plain(DefaultFileConfig())
	if err := unmarshal(&p); err != nil {
		return err
	}
	*c = FileConfig(p)
	return nil
}

// Validate checks the entry, at paths relative to it.
func (c FileConfig) Validate() config.Problems {
	var p config.Problems
	if c.Path == "" {
		p.Add("path", "is required")
	}
	p.OneOf("format", c.Format, FileFormatVigil, FileFormatOCSF)
	p.OneOf("records", c.Records, RecordsValues...)
	if c.RotateMiB < 0 || c.RotateMiB > maxRotateMiB {
		p.Add("rotate_mib", "must be 0 (never) to %d (1 TiB), got %d", maxRotateMiB, c.RotateMiB)
	}
	if c.Keep < 0 {
		p.Add("keep", "must not be negative, got %d", c.Keep)
	}
	return p
}

// fileFlushSize is how much is buffered before it is written through.
const fileFlushSize = 64 << 10

// FileWriter writes flow records and alerts as JSON lines to a file (or
// standard output), rotating it by size. Lines are buffered: Flush writes
// them through. A record that cannot be written is dropped and counted,
// and the error is returned; the writer goes on with the next records.
// It is an Output.
//
// A FileWriter is safe for concurrent use: every method takes one lock,
// so lines of concurrent calls never interleave.
type FileWriter struct {
	mu       sync.Mutex
	cfg      FileConfig
	maxBytes int64 // rotate past this size; 0: never
	kinds    Kinds
	ocsf     bool
	ifname   func(uint32) string
	product  OCSFProduct
	f        *os.File  // the open file; nil for stdout or when closed
	out      io.Writer // f or stdout; nil when not open
	closed   bool
	buf      []byte // lines not yet written through
	lead     int    // bytes at the start of buf that close a cut line
	lines    uint64 // records in buf
	size     int64  // bytes in the file, buf included
	line     []byte

	written atomic.Uint64
	dropped atomic.Uint64
}

// NewFileWriter opens cfg.Path for appending (creating it) and returns a
// writer to it. It takes the interface names and the OCSF product from
// deps.
func NewFileWriter(cfg FileConfig, deps Dependencies) (*FileWriter, error) {
	if err := cfg.Validate().Err(); err != nil {
		return nil, fmt.Errorf("file output %s: %w", cfg.Path, err)
	}
	return newFileWriter(cfg, int64(cfg.RotateMiB)<<20, deps)
}

// newFileWriter is NewFileWriter with rotation at maxBytes, which tests
// set below a MiB.
func newFileWriter(cfg FileConfig, maxBytes int64, deps Dependencies) (*FileWriter, error) {
	w := &FileWriter{
		cfg: cfg, maxBytes: maxBytes, kinds: KindsOf(cfg.Records), ocsf: cfg.Format == FileFormatOCSF,
		ifname: deps.IfName, product: deps.Product(),
		buf: make([]byte, 0, fileFlushSize+4096), line: make([]byte, 0, 1024),
	}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

// Name returns the path.
func (w *FileWriter) Name() string { return w.cfg.Path }

// Run returns nil at once: a file has nothing to send.
func (w *FileWriter) Run(context.Context) error { return nil }

// WriteFlows writes one line per record. It returns the first error;
// records not written are counted as dropped.
func (w *FileWriter) WriteFlows(recs []flow.Record) error {
	if w.kinds&KindFlows == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.ready(); err != nil {
		w.dropped.Add(uint64(len(recs)))
		return err
	}
	var first error
	for i := range recs {
		if w.ocsf {
			w.line = AppendFlowOCSF(w.line[:0], &recs[i], w.ifname, w.product)
		} else {
			w.line = AppendFlowJSON(w.line[:0], &recs[i], w.ifname)
		}
		if err := w.writeLine(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// WriteAlerts writes one line per alert. It returns the first error;
// alerts not written are counted as dropped.
func (w *FileWriter) WriteAlerts(alerts []flow.Alert) error {
	if w.kinds&KindAlerts == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.ready(); err != nil {
		w.dropped.Add(uint64(len(alerts)))
		return err
	}
	var first error
	for i := range alerts {
		if w.ocsf {
			w.line = AppendAlertOCSF(w.line[:0], &alerts[i], w.product)
		} else {
			w.line = AppendAlertJSON(w.line[:0], &alerts[i])
		}
		if err := w.writeLine(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Flush writes buffered lines through to the file.
func (w *FileWriter) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flush()
}

// Reopen flushes, closes and opens the path again: after an external
// log rotation renamed the file (SIGHUP), writing goes on in a new file
// at the path. For standard output it only flushes.
func (w *FileWriter) Reopen() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("reopening %s: writer closed", w.cfg.Path)
	}
	err := w.flush()
	if w.f == nil && w.out != nil {
		return err
	}
	return errors.Join(err, w.closeFile(), w.open())
}

// Close flushes and closes the file (never standard output). Records
// written after Close are dropped.
func (w *FileWriter) Close(context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	err := w.flush()
	w.closed = true
	return errors.Join(err, w.closeFile())
}

// Written returns the number of records whose lines reached the file
// (buffered lines count once flushed).
func (w *FileWriter) Written() uint64 { return w.written.Load() }

// Dropped returns the number of records lost to errors or written after
// Close.
func (w *FileWriter) Dropped() uint64 { return w.dropped.Load() }

// ready makes sure there is a file to write to, opening it again after
// a failed open (at most once per call).
func (w *FileWriter) ready() error {
	if w.closed {
		return fmt.Errorf("writing %s: writer closed", w.cfg.Path)
	}
	if w.out == nil {
		return w.open()
	}
	return nil
}

// writeLine buffers w.line and a newline, rotating first when the line
// would take the file past maxBytes.
func (w *FileWriter) writeLine() error {
	w.line = append(w.line, '\n')
	n := int64(len(w.line))
	var err error
	if w.maxBytes > 0 && w.f != nil && w.size > 0 && w.size+n > w.maxBytes {
		err = w.rotate()
	}
	if w.out == nil {
		w.dropped.Add(1)
		return err
	}
	w.buf = append(w.buf, w.line...)
	w.lines++
	w.size += n
	if len(w.buf) >= fileFlushSize {
		err = errors.Join(err, w.flush())
	}
	return err
}

// flush writes buf through. On an error the lines that were written
// whole count as written and the rest as dropped; a line cut in the
// middle is ended by a newline before the next line, so one bad line
// never glues onto a good one.
func (w *FileWriter) flush() error {
	if len(w.buf) == w.lead {
		return nil
	}
	if w.out == nil {
		w.dropped.Add(w.lines)
		w.buf, w.lead, w.lines = w.buf[:0], 0, 0
		return fmt.Errorf("writing %s: not open", w.cfg.Path)
	}
	n, err := w.out.Write(w.buf)
	if err == nil {
		w.written.Add(w.lines)
		w.buf, w.lead, w.lines = w.buf[:0], 0, 0
		return nil
	}
	whole := uint64(0)
	if n > w.lead {
		whole = uint64(bytes.Count(w.buf[w.lead:n], []byte{'\n'}))
	}
	w.written.Add(whole)
	w.dropped.Add(w.lines - whole)
	w.size -= int64(len(w.buf) - n)
	cut := (n == 0 && w.lead > 0) || (n > 0 && w.buf[n-1] != '\n')
	w.buf, w.lead, w.lines = w.buf[:0], 0, 0
	if cut {
		w.endCutLine()
	}
	return fmt.Errorf("writing %s: %w", w.cfg.Path, err)
}

// endCutLine starts the buffer with a newline that ends the file's last,
// cut, line.
func (w *FileWriter) endCutLine() {
	w.buf, w.lead = append(w.buf[:0], '\n'), 1
	w.size++
}

// rotate moves the full file aside (path -> path.1 -> ... -> path.Keep)
// and starts a new one. When the files cannot be moved, writing goes on
// in the same file and rotation is tried again after another maxBytes.
func (w *FileWriter) rotate() error {
	err := errors.Join(w.flush(), w.closeFile())
	if serr := w.shift(); serr != nil {
		err = errors.Join(err, serr)
		if oerr := w.open(); oerr != nil {
			return errors.Join(err, oerr)
		}
		w.size = 0
		return err
	}
	return errors.Join(err, w.open())
}

func (w *FileWriter) shift() error {
	p := w.cfg.Path
	if w.cfg.Keep == 0 {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rotating %s: %w", p, err)
		}
		return nil
	}
	// Each rename replaces its target: path.Keep, the oldest, goes first.
	for i := w.cfg.Keep - 1; i >= 1; i-- {
		from, to := p+"."+strconv.Itoa(i), p+"."+strconv.Itoa(i+1)
		if err := os.Rename(from, to); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rotating %s: %w", p, err)
		}
	}
	if err := os.Rename(p, p+".1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rotating %s: %w", p, err)
	}
	return nil
}

func (w *FileWriter) open() error {
	if w.cfg.Path == "-" {
		w.out, w.size = os.Stdout, 0
		return nil
	}
	// Read-write, to see whether the file ends in the middle of a line
	// (a crash or a full disk cut it).
	f, err := os.OpenFile(w.cfg.Path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o640)
	if errors.Is(err, fs.ErrPermission) {
		f, err = os.OpenFile(w.cfg.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	}
	if err != nil {
		return fmt.Errorf("opening %s: %w", w.cfg.Path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("opening %s: %w", w.cfg.Path, err)
	}
	w.f, w.out, w.size = f, f, st.Size()
	w.buf, w.lead = w.buf[:0], 0
	if w.size > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], w.size-1); err == nil && last[0] != '\n' {
			w.endCutLine()
		}
	}
	return nil
}

func (w *FileWriter) closeFile() error {
	f := w.f
	w.f, w.out = nil, nil
	if f == nil {
		return nil
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", w.cfg.Path, err)
	}
	return nil
}
