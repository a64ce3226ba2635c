package e2e

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/test/netlab"
)

// End-to-end fault tests of export: the real vigil binary in a lab's
// sensor namespace exports live flows to receivers that also live in
// that namespace (an in-process Kafka, a real nfcapd), while the test
// takes the receivers down, kills vigil and damages its spool.
//
// This file holds what the tests share. The tests are in
// export_kafka_test.go (a Kafka outage and SIGKILL of vigil),
// export_spool_test.go (a corrupt spool segment) and
// export_ipfix_test.go (IPFIX to a live nfcapd).

// Bounds of the export tests' waits.
const (
	exportTimeout = 90 * time.Second // a sink fails, recovers or drains
	fileTimeout   = 15 * time.Second // expired flows reach flows.output
	consumeWait   = 30 * time.Second // Kafka holds what vigil was acknowledged for
	exportSensor  = "e2e-sensor"     // export.sensor_name: Kafka key and header
	exportTopic   = "vigil-flows"
	exportSink    = `sink="kafka-0"`
	exportDstPort = 7300 // UDP port of every test flow (distinct source ports)
)

// exportConfig is a vigil configuration: the lab's sensor interface at
// 1-in-1 sampling, flows ending 1 s after their last packet, flows.output
// in a file, a spool directory, and the given export sinks.
func exportConfig(t *testing.T, metricsAddr, flowsPath, spoolDir string, maxMiB int, sinks string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vigil.yaml")
	writeFile(t, path, fmt.Sprintf(`capture:
  interfaces: [%s]
  sampling: fixed
  sample_rate: 1
flows:
  idle_timeout: 1s
  active_timeout: 1h
  output: %q
export:
  sensor_name: %s
  spool: {dir: %q, max_mib: %d, fsync: interval}
%s
http:
  listen: %s
log:
  level: info
  format: text
  stats_interval: 0s
`, netlab.SensorIf, flowsPath, exportSensor, spoolDir, maxMiB, sinks, metricsAddr))
	return path
}

// udpFlows sends distinct UDP flows (one socket, so one source port,
// each) from the peer to one port of the sensor and remembers what was
// sent, for the whole test.
type udpFlows struct {
	t     *testing.T
	lab   *netlab.Lab
	sinks map[int]*netlab.Sink // by IP version
	want  map[*netlab.Sink]uint64
	n     int
}

func newUDPFlows(t *testing.T, lab *netlab.Lab) *udpFlows {
	u := &udpFlows{t: t, lab: lab, sinks: map[int]*netlab.Sink{}, want: map[*netlab.Sink]uint64{}}
	for _, family := range []int{4, 6} {
		u.sinks[family] = lab.NewSink(t, family, exportDstPort)
	}
	return u
}

// send sends n more flows, IPv4 and IPv6 in turn, each of 1 to 4
// datagrams of its own size, and waits until the sensor end has read
// them all. It returns the truth of each flow.
func (u *udpFlows) send(n int) map[flowKey]*truth {
	u.t.Helper()
	out := map[flowKey]*truth{}
	for range n {
		i := u.n
		u.n++
		family := 4 + 2*(i%2)
		count := 1 + i%4
		s := u.lab.NewSender(u.t, family, exportDstPort, 20+(i*37)%1000)
		w := &truth{first: time.Now()}
		if sent, err := s.Send(count); err != nil || sent != count {
			u.t.Fatalf("UDP %s: sent %d of %d: %v", udpKey(s), sent, count, err)
		}
		w.last = time.Now()
		w.packets, w.bytes = uint64(count), uint64(count*s.FrameLen())
		out[udpKey(s)] = w
		u.want[u.sinks[family]] += uint64(count)
	}
	waitSinks(u.t, u.want)
	return out
}

// waitFlowsFile waits until flows.output holds a record of every key
// (it is flushed once a second, after the spools got the same records)
// and returns its records by key.
func waitFlowsFile(t *testing.T, path string, keys map[flowKey]*truth) map[flowKey][]flowRecord {
	t.Helper()
	deadline := time.Now().Add(fileTimeout)
	for {
		got := byKey(readFlowsFile(t, path))
		missing := 0
		for k := range keys {
			if len(got[k]) == 0 {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s flows.output still lacks %d of %d flows", fileTimeout, missing, len(keys))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill ends vigil with SIGKILL and waits for it to be gone.
func (v *vigilProc) kill() {
	v.t.Helper()
	v.signal(syscall.SIGKILL)
	select {
	case <-v.exited:
	case <-time.After(exitTimeout):
		v.t.Fatalf("vigil still running %s after SIGKILL", exitTimeout)
	}
	if ws, ok := v.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		v.t.Fatalf("vigil ended with %v, want killed by SIGKILL", v.cmd.ProcessState)
	}
}

// checkExact checks a record of a test flow against what was sent: one
// packet rate, exact packets and bytes, an idle end, and times within
// the sending interval.
func checkExact(t *testing.T, where string, k flowKey, r flowRecord, w *truth) {
	t.Helper()
	if r.Packets != w.packets || r.Bytes != w.bytes || r.SampledPackets != w.packets || r.SamplingRate != 1 || r.EndReason != "idle" {
		t.Errorf("%s: %s: packets %d bytes %d sampled %d rate %d end %q; sent %d packets, %d bytes (rate 1, idle)",
			where, k, r.Packets, r.Bytes, r.SampledPackets, r.SamplingRate, r.EndReason, w.packets, w.bytes)
	}
	if r.Start.Before(w.first.Add(-clockSlack)) || r.End.After(w.last.Add(clockSlack)) {
		t.Errorf("%s: %s: %s..%s outside the sending interval %s..%s", where, k, r.Start, r.End, w.first, w.last)
	}
}
