package testutil

import (
	"bufio"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Nfcapd is a real nfdump collector receiving NetFlow and IPFIX on
// 127.0.0.1. It runs with -v -v -v, which prints every record it
// processes, so a test knows when all have arrived before it stops it.
type Nfcapd struct {
	Dir  string // where nfcapd writes its files, for nfdump -R
	Port int

	cmd    *exec.Cmd
	mu     sync.Mutex
	log    strings.Builder // its output, without the records
	flows  int             // records it printed as processed
	exited chan struct{}   // closed when it has exited; err is then set
	err    error
}

// StartNfcapd starts nfcapd on 127.0.0.1:port (0: a free port) and waits
// until it has started. A prefix runs it through another command, such
// as nsenter into a network namespace. The test's cleanup kills it.
func StartNfcapd(tb testing.TB, port int, prefix ...string) *Nfcapd {
	tb.Helper()
	bin := RequireTool(tb, "nfcapd")
	stdbuf := RequireTool(tb, "stdbuf")
	if port == 0 {
		// A free port: bind one, release it, hand it to nfcapd.
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port = pc.LocalAddr().(*net.UDPAddr).Port
		pc.Close()
	}
	n := &Nfcapd{Dir: tb.TempDir(), Port: port, exited: make(chan struct{})}
	// stdbuf: line-buffered, or the records printed last wait in
	// nfcapd's stdio buffer for the next ones.
	args := append(prefix, stdbuf, "-oL", bin, "-v", "-v", "-v", "-w", n.Dir, "-p", strconv.Itoa(port), "-b", "127.0.0.1")
	// No Pdeathsig: it fires when the OS thread that started the
	// process exits, and Go ends threads that a goroutine locked (the
	// namespace helpers do), which killed nfcapd mid-test. The cleanup
	// kills it instead.
	n.cmd = exec.Command(args[0], args[1:]...)
	stdout, err := n.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	n.cmd.Stderr = n.cmd.Stdout
	if err := n.cmd.Start(); err != nil {
		tb.Fatalf("starting nfcapd: %v", err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		started := false
		for sc.Scan() {
			line := sc.Text()
			n.mu.Lock()
			if strings.HasPrefix(line, "Flow Record:") {
				n.flows++
			} else if line != "" && !strings.HasPrefix(line, "  ") {
				n.log.WriteString(line + "\n")
			}
			n.mu.Unlock()
			if !started && strings.Contains(line, "Startup") {
				close(ready)
				started = true
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		n.err = n.cmd.Wait()
		close(n.exited)
	}()
	tb.Cleanup(func() {
		select {
		case <-n.exited:
		default:
			_ = n.cmd.Process.Kill()
			<-n.exited
		}
	})
	select {
	case <-ready:
	case <-n.exited:
		tb.Fatalf("nfcapd exited before starting: %v\n%s", n.err, n.Log())
	case <-time.After(10 * time.Second):
		tb.Fatalf("nfcapd did not start within 10 s:\n%s", n.Log())
	}
	return n
}

// Log is what nfcapd printed, without the records.
func (n *Nfcapd) Log() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.log.String()
}

// Processed is the number of records nfcapd has processed.
func (n *Nfcapd) Processed() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.flows
}

// WaitProcessed waits up to timeout until nfcapd has processed want
// records, and fails the test if it has not.
func (n *Nfcapd) WaitProcessed(tb testing.TB, want int, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for n.Processed() < want && time.Now().Before(deadline) {
		select {
		case <-n.exited:
			tb.Fatalf("nfcapd exited (%v) after processing %d records, want %d:\n%s", n.err, n.Processed(), want, n.Log())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if got := n.Processed(); got < want {
		tb.Fatalf("nfcapd processed %d records within %v, want %d:\n%s", got, timeout, want, n.Log())
	}
}

// Stop sends SIGTERM, which makes nfcapd write and close its file, and
// waits for it to exit.
func (n *Nfcapd) Stop(tb testing.TB) {
	tb.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-n.exited:
		if n.err != nil {
			tb.Fatalf("nfcapd: %v\n%s", n.err, n.Log())
		}
	case <-time.After(10 * time.Second):
		tb.Fatalf("nfcapd did not stop within 10 s:\n%s", n.Log())
	}
}
