package daemon

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/flow"
)

// flowOutput writes flow records as JSON lines to a file or stdout. The
// file can be reopened (SIGHUP after log rotation). A write error does
// not stop the sensor: the records are counted as dropped.
type flowOutput struct {
	mu      sync.Mutex
	path    string // "-": stdout, "": nowhere
	f       *os.File
	w       *export.JSONLines
	ifname  func(uint32) string
	written atomic.Uint64
	dropped atomic.Uint64
}

func openFlowOutput(path string, ifname func(uint32) string) (*flowOutput, error) {
	o := &flowOutput{path: path, ifname: ifname}
	if err := o.open(); err != nil {
		return nil, err
	}
	return o, nil
}

func (o *flowOutput) open() error {
	var w io.Writer
	switch o.path {
	case "":
		w = io.Discard
	case "-":
		w = os.Stdout
	default:
		f, err := os.OpenFile(o.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("opening flows output: %w", err)
		}
		o.f, w = f, f
	}
	o.w = export.NewJSONLines(w, o.ifname)
	return nil
}

// Write writes records. It returns the first write error since the last
// call, once, for the caller to log; the records are counted either way.
func (o *flowOutput) Write(recs []flow.Record) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.w.WriteFlows(recs); err != nil {
		o.dropped.Add(uint64(len(recs)))
		return err
	}
	o.written.Add(uint64(len(recs)))
	return nil
}

// Flush writes buffered records through.
func (o *flowOutput) Flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.w.Flush()
}

// Reopen flushes and reopens the output file, for log rotation.
func (o *flowOutput) Reopen() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil {
		return nil
	}
	err := o.w.Flush()
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	o.f = nil
	if oerr := o.open(); oerr != nil {
		// Keep writing somewhere rather than nowhere: lines go to the
		// discard writer and are counted as dropped until a reopen works.
		o.w = export.NewJSONLines(failingWriter{oerr}, o.ifname)
		return oerr
	}
	return err
}

// Close flushes and closes the output.
func (o *flowOutput) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	err := o.w.Flush()
	if o.f != nil {
		if cerr := o.f.Close(); err == nil {
			err = cerr
		}
		o.f = nil
	}
	return err
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

// ifNames names interfaces by index for flow records, caching what it
// learns; an index it cannot resolve is written as "if<N>".
type ifNames struct {
	mu    sync.RWMutex
	names map[uint32]string
	fixed string // replay: every record carries this name
}

func (n *ifNames) name(ifindex uint32) string {
	if n.fixed != "" {
		return n.fixed
	}
	n.mu.RLock()
	s, ok := n.names[ifindex]
	n.mu.RUnlock()
	if ok {
		return s
	}
	s = "if" + strconv.FormatUint(uint64(ifindex), 10)
	if ifi, err := net.InterfaceByIndex(int(ifindex)); err == nil {
		s = ifi.Name
	}
	n.set(ifindex, s)
	return s
}

func (n *ifNames) set(ifindex uint32, name string) {
	n.mu.Lock()
	if n.names == nil {
		n.names = map[uint32]string{}
	}
	n.names[ifindex] = name
	n.mu.Unlock()
}
