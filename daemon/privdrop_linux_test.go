package daemon

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
)

// The bits of CAP_NET_ADMIN (12), CAP_PERFMON (38) and CAP_BPF (39).
const runtimeCapMask = 1<<12 | 1<<38 | 1<<39

const dropHelperEnv = "VIGIL_TEST_DROP_CAPS_HELPER"

// TestDropCapabilities runs dropCapabilities in a child process started
// as root with every capability, on many OS threads, and reads every
// thread's /proc/PID/task/TID/status: effective, permitted and bounding
// must be exactly CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, inheritable
// and ambient empty. A second drop must change nothing and succeed.
func TestDropCapabilities(t *testing.T) {
	testutil.RequirePrivileged(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestDropCapabilitiesHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), dropHelperEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr testutil.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	before := testutil.ProcCaps(t, fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if before["CapEff"] == runtimeCapMask {
		t.Fatalf("the child started with only the three capabilities: the test proves nothing")
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}

	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			if strings.HasPrefix(s.Text(), "dropped") {
				line <- s.Text()
				break
			}
		}
		close(line)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case l, ok := <-line:
		if !ok {
			t.Fatalf("helper exited without dropping: %s", stderr.String())
		}
		if l != "dropped ok" {
			t.Fatalf("helper: %s\n%s", l, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("helper did not drop within 30s:\n%s", stderr.String())
	}

	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", cmd.Process.Pid))
	if err != nil || len(tasks) < 4 {
		t.Fatalf("%d threads (%v): the helper should run on several", len(tasks), err)
	}
	for _, status := range tasks {
		caps := testutil.ProcCaps(t, status)
		for field, want := range map[string]uint64{
			"CapEff": runtimeCapMask, "CapPrm": runtimeCapMask, "CapBnd": runtimeCapMask,
			"CapInh": 0, "CapAmb": 0,
		} {
			if got := caps[field]; got != want {
				t.Errorf("%s: %s %016x, want %016x", status, field, got, want)
			}
		}
	}
	if t.Failed() {
		t.Logf("helper stderr:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "dropped capabilities") {
		t.Errorf("the drop was not logged:\n%s", stderr.String())
	}
}

// TestDropCapabilitiesHelper is the child of TestDropCapabilities.
func TestDropCapabilitiesHelper(t *testing.T) {
	if os.Getenv(dropHelperEnv) != "1" {
		t.Skip("runs as the child of TestDropCapabilities")
	}
	// Threads that exist before the drop: each must lose its
	// capabilities too, not only the one that calls capset.
	hold := make(chan struct{})
	ready := make(chan struct{})
	for range 8 {
		go func() {
			runtime.LockOSThread()
			ready <- struct{}{}
			<-hold
		}()
	}
	for range 8 {
		<-ready
	}
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil { // the parent has read the capabilities before
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	result := "ok"
	if err := dropCapabilities(log); err != nil {
		result = err.Error()
	} else if err := dropCapabilities(log); err != nil {
		result = "second drop: " + err.Error()
	}
	fmt.Println("dropped", result)
	io.Copy(io.Discard, in) // until the parent has read /proc
	close(hold)
}
