// Package e2e runs the built vigil binary against real traffic in a
// network namespace lab.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

// The harness of the end-to-end tests: build vigil, run it in a lab's
// sensor namespace, scrape it, stop it.

// TestMain gives the package's tests one vigil binary, built once
// (testutil.Vigil).
func TestMain(m *testing.M) { testutil.Main(m) }

// Bounds of every wait in the flow and reload tests.
const (
	vigilLifetime = 4 * time.Minute  // a vigil process is killed after this
	readyTimeout  = 20 * time.Second // vigil attached and serving /readyz
	exitTimeout   = 30 * time.Second // vigil exits after SIGTERM
	arriveTimeout = 10 * time.Second // traffic sent has arrived
	quiet         = time.Second      // no lab traffic for this long before we compare
	// clockSlack is how far a record's kernel timestamps may lie outside
	// the wall-clock interval in which the test sent the packets.
	clockSlack = 500 * time.Millisecond
)

// vigilProc is `vigil run` in the sensor namespace of a lab.
type vigilProc struct {
	t      testing.TB
	lab    *netlab.Lab
	addr   string // metrics address inside the sensor namespace
	cmd    *exec.Cmd
	stdout testutil.SyncBuffer
	stderr testutil.SyncBuffer
	exited chan struct{}
	err    error // Wait's result, once exited is closed
}

// startVigil starts `vigil run args...` inside the lab's sensor
// namespace (nsenter execs vigil, so cmd.Process is vigil itself) and
// waits until /readyz answers 200 on addr. It is killed at cleanup if
// still running.
func startVigil(t testing.TB, lab *netlab.Lab, bin, addr string, args ...string) *vigilProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), vigilLifetime)
	v := &vigilProc{t: t, lab: lab, addr: addr, exited: make(chan struct{})}
	v.cmd = exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + lab.Sensor.Name, bin, "run"}, args...)...)
	v.cmd.Stdout = &v.stdout
	v.cmd.Stderr = &v.stderr
	t.Logf("vigil run %s", strings.Join(args, " "))
	if err := v.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		v.err = v.cmd.Wait()
		cancel()
		close(v.exited)
	}()
	t.Cleanup(func() {
		if v.running() {
			v.cmd.Process.Kill()
		}
		<-v.exited
		if t.Failed() {
			t.Logf("vigil stderr:\n%s", v.stderr.String())
		}
	})
	deadline := time.Now().Add(readyTimeout)
	for {
		code, _, err := v.scrape("/readyz")
		if err == nil && code == http.StatusOK {
			return v
		}
		if !v.running() {
			t.Fatalf("vigil exited before ready: %v\n%s", v.err, v.stderr.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("vigil not ready after %s (last: %d %v)\n%s", readyTimeout, code, err, v.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (v *vigilProc) running() bool {
	select {
	case <-v.exited:
		return false
	default:
		return true
	}
}

// scrape GETs path from vigil's HTTP server.
func (v *vigilProc) scrape(path string) (int, string, error) { return v.request("GET", path) }

// request sends a bodiless request to vigil's HTTP server, dialing from
// a thread inside the sensor namespace (its loopback is not the host's),
// and returns the status and body.
func (v *vigilProc) request(method, path string) (int, string, error) {
	return v.requestWith(method, path, nil)
}

// requestWith is request with more headers (Host is the address asked).
func (v *vigilProc) requestWith(method, path string, headers map[string]string) (int, string, error) {
	var conn net.Conn
	if err := v.lab.Sensor.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", v.addr, time.Second)
		return err
	}); err != nil {
		return 0, "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.0\r\nHost: %s\r\nContent-Length: 0\r\n", method, path, v.addr)
	for k, val := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", k, val)
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// metrics scrapes /metrics; it fails the test if vigil does not answer.
func (v *vigilProc) metrics() promText {
	v.t.Helper()
	code, body, err := v.scrape("/metrics")
	if err != nil || code != http.StatusOK {
		v.t.Fatalf("scraping /metrics: %d %v\n%s", code, err, v.stderr.String())
	}
	return promText(body)
}

// waitMetric polls /metrics until cond holds, at most timeout, and
// returns the last scrape. It fails the test (saying what) otherwise.
func (v *vigilProc) waitMetric(what string, timeout time.Duration, cond func(promText) bool) promText {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := v.metrics()
		if cond(m) {
			return m
		}
		if !v.running() {
			v.t.Fatalf("vigil exited (%v) while waiting for %s\n%s", v.err, what, v.stderr.String())
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("after %s: still not %s; metrics:\n%s", timeout, what, grepVigil(string(m)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (v *vigilProc) signal(sig syscall.Signal) {
	v.t.Helper()
	if err := v.cmd.Process.Signal(sig); err != nil {
		v.t.Fatalf("sending %v to vigil: %v", sig, err)
	}
}

// stop sends SIGTERM and requires a clean exit (status 0) in time.
func (v *vigilProc) stop() {
	v.t.Helper()
	v.stopWith(syscall.SIGTERM)
}

// stopWith is stop with another signal (SIGINT).
func (v *vigilProc) stopWith(sig syscall.Signal) {
	v.t.Helper()
	v.signal(sig)
	select {
	case <-v.exited:
	case <-time.After(exitTimeout):
		v.cmd.Process.Kill()
		<-v.exited
		v.t.Fatalf("vigil still running %s after %v\n%s", exitTimeout, sig, v.stderr.String())
	}
	if v.err != nil {
		v.t.Fatalf("vigil exit after %v: %v, want status 0\n%s", sig, v.err, v.stderr.String())
	}
}

// promText is a Prometheus text exposition.
type promText string

// sum adds the values of every series of the metric whose labels
// contain all the given `name="value"` pairs; ok is false if none does.
func (p promText) sum(name string, labels ...string) (total float64, ok bool) {
	for _, line := range strings.Split(string(p), "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		var lbl string
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndex(rest, "}")
			if end < 0 {
				continue
			}
			lbl, rest = rest[1:end], rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // another metric with this prefix
		}
		match := true
		for _, l := range labels {
			if !slices.Contains(strings.Split(lbl, ","), l) {
				match = false
			}
		}
		if !match {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			continue
		}
		total += f
		ok = true
	}
	return total, ok
}

// get is sum that fails the test when no series matches.
func (p promText) get(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	v, ok := p.sum(name, labels...)
	if !ok {
		t.Fatalf("no series %s{%s} in the scrape:\n%s", name, strings.Join(labels, ","), grepVigil(string(p)))
	}
	return v
}

// counter is sum for a counter that may not be exported before it
// first counts: no series reads as 0.
func (p promText) counter(name string, labels ...string) float64 {
	v, _ := p.sum(name, labels...)
	return v
}

// grepVigil keeps the vigil_ lines of a scrape, for failure messages.
func grepVigil(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "vigil_") {
			fmt.Fprintln(&b, l)
		}
	}
	return b.String()
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func labUp(t testing.TB) *netlab.Lab {
	t.Helper()
	lab := netlab.New(t)
	if out, err := exec.Command("ip", "-n", lab.Sensor.Name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v %s", err, out)
	}
	return lab
}

// waitSinks waits until each sink has received its count.
func waitSinks(t *testing.T, sinks map[*netlab.Sink]uint64) {
	t.Helper()
	deadline := time.Now().Add(arriveTimeout)
	for s, n := range sinks {
		for s.Received() < n {
			if time.Now().After(deadline) {
				t.Fatalf("lab: a UDP sink received %d of %d datagrams", s.Received(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if s.Received() != n {
			t.Fatalf("lab: a UDP sink received %d datagrams, %d were sent", s.Received(), n)
		}
	}
}
