// Package e2e runs the built vigil binary against real traffic in a
// network namespace lab.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

// buildVigil builds cmd/vigil into a temporary directory.
func buildVigil(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vigil")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/vigil-sensor/vigil/cmd/vigil")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building vigil: %v\n%s", err, out)
	}
	return bin
}

type sampleLine struct {
	Kind    string `json:"kind"`
	Src     string `json:"src_addr"`
	Dst     string `json:"dst_addr"`
	DstPort uint16 `json:"dst_port"`
	Proto   uint8  `json:"proto"`
	Rate    uint32 `json:"sampling_rate"`
	Outcome string `json:"outcome"`
}

// TestRunCapturesLabTraffic runs `vigil run` inside the sensor namespace
// of a lab, sends known UDP traffic from the peer, scrapes the metrics,
// then stops it with SIGTERM: it must detach and exit 0, and the samples
// and counters must account for every packet.
func TestRunCapturesLabTraffic(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := buildVigil(t)
	lab := netlab.New(t)
	if out, err := exec.Command("ip", "-n", lab.Sensor.Name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v %s", err, out)
	}
	const port, n = 7000, 3000
	lab.NewSink(t, 4, port)
	samples := filepath.Join(t.TempDir(), "samples.jsonl")
	const metricsAddr = "127.0.0.1:19099"

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+lab.Sensor.Name, bin, "run",
		"--interface", netlab.SensorIf, "--sample-rate", "1", "--samples-out", samples,
		"--metrics-addr", metricsAddr, "--stats-every", "0")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The HTTP API listens on the sensor namespace's loopback: dial it
	// from a thread inside that namespace (http.Client would dial from
	// another goroutine, in the host namespace).
	scrape := func(path string) (int, string, error) {
		var conn net.Conn
		if err := lab.Sensor.Do(func() (err error) {
			conn, err = net.DialTimeout("tcp", metricsAddr, time.Second)
			return err
		}); err != nil {
			return 0, "", err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: vigil\r\n\r\n", path)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _, err := scrape("/readyz")
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vigil never became ready (last: %d %v)\n%s", code, err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	s := lab.NewSender(t, 4, port, 100)
	if sent, err := s.Send(n); err != nil || sent != n {
		t.Fatalf("sent %d of %d: %v", sent, n, err)
	}
	time.Sleep(300 * time.Millisecond) // the reader's flush interval is 100 ms
	_, metrics, err := scrape("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	pkts := metricValue(t, metrics, `vigil_packets_total{direction="ingress",interface="vsensor"}`)
	if pkts < n {
		t.Errorf("vigil_packets_total %v, want at least the %d packets sent", pkts, n)
	}
	if mode := metricValue(t, metrics, `vigil_attach_mode{interface="vsensor",mode="xdp-native"}`); mode != 1 {
		t.Errorf("attach mode metric %v, want native XDP on a veth", mode)
	}
	samplesTotal := metricValue(t, metrics, "vigil_samples_total")
	if samplesTotal != pkts {
		t.Errorf("at N=1 samples %v != packets %v", samplesTotal, pkts)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("vigil did not exit cleanly on SIGTERM: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "detached") {
		t.Errorf("no detach logged on shutdown:\n%s", stderr.String())
	}

	f, err := os.Open(samples)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	matched, lines := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines++
		var l sampleLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", lines, err, sc.Text())
		}
		if l.Kind == "sample" && l.Src == netlab.PeerIPv4.String() && l.Dst == netlab.SensorIPv4.String() &&
			l.DstPort == port && l.Proto == 17 && l.Rate == 1 && l.Outcome == "ok" {
			matched++
		}
	}
	if matched != n {
		t.Errorf("%d samples of the lab's flow in %d lines, want %d (one per packet at N=1)", matched, lines, n)
	}
	if float64(lines) != samplesTotal {
		t.Errorf("%d sample lines written, %v samples counted: some were lost", lines, samplesTotal)
	}
}

// metricValue finds one sample line of a Prometheus text exposition.
func metricValue(t *testing.T, exposition, series string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(exposition)
	if m == nil {
		t.Fatalf("series %s not in the scrape:\n%s", series, grepVigil(exposition))
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func grepVigil(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "vigil_") {
			fmt.Fprintln(&b, l)
		}
	}
	return b.String()
}

// syncBuffer is a bytes.Buffer safe to read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
