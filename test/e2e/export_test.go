package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

// End-to-end fault tests of export: the real vigil binary in a lab's
// sensor namespace exports live flows to receivers that also live in
// that namespace (an in-process Kafka, a real nfcapd), while the test
// takes the receivers down, kills vigil and damages its spool.

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

// kafkaBroker is an in-process Kafka broker (kfake) whose answers to
// vigil can be withheld: the records vigil produces are stored, but
// vigil never learns it, as when a broker or the network fails between
// the write and the acknowledgement.
type kafkaBroker struct {
	*kfake.Cluster
	mute atomic.Bool // swallow every answer to a client named "vigil"
}

// startKafka starts a broker listening on 127.0.0.1:port inside the
// sensor namespace (the listener is made there and keeps its namespace),
// with the flows topic in 3 partitions. It is closed at cleanup if the
// test did not close it.
func startKafka(t *testing.T, lab *netlab.Lab, port int) *kafkaBroker {
	t.Helper()
	b := &kafkaBroker{}
	listen := func(network, address string) (net.Listener, error) {
		ln, err := net.Listen(network, address)
		return muteListener{ln, b}, err
	}
	err := lab.Sensor.Do(func() (err error) {
		b.Cluster, err = kfake.NewCluster(kfake.Ports(port), kfake.ListenFn(listen),
			kfake.SeedTopics(3, exportTopic), kfake.SeedTopics(1, "vigil-alerts"))
		return err
	})
	if err != nil {
		t.Fatalf("starting kfake in %s: %v", lab.Sensor.Name, err)
	}
	t.Cleanup(b.Close)
	return b
}

type muteListener struct {
	net.Listener
	b *kafkaBroker
}

func (l muteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &muteConn{Conn: c, b: l.b}, nil
}

// muteConn learns the client's name from the first request's header
// (size i32, api key i16, version i16, correlation id i32, client id
// i16-prefixed string) and drops the broker's writes to vigil while the
// broker is muted.
type muteConn struct {
	net.Conn
	b     *kafkaBroker
	head  []byte
	vigil atomic.Bool
}

func (c *muteConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if len(c.head) < 64 {
		c.head = append(c.head, p[:min(n, 64-len(c.head))]...)
		if len(c.head) >= 14 {
			if idLen := int(int16(binary.BigEndian.Uint16(c.head[12:]))); idLen > 0 && len(c.head) >= 14+idLen {
				c.vigil.Store(string(c.head[14:14+idLen]) == "vigil")
			}
		}
	}
	return n, err
}

func (c *muteConn) Write(p []byte) (int, error) {
	if c.vigil.Load() && c.b.mute.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// nsDialer dials from a thread inside the namespace, for a Kafka client
// in the test process.
func nsDialer(ns *netlab.Namespace) kgo.Opt {
	return kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
		var conn net.Conn
		err := ns.Do(func() (err error) {
			var d net.Dialer
			conn, err = d.DialContext(ctx, network, host)
			return err
		})
		return conn, err
	})
}

// kafkaFlow is one record read from the flows topic.
type kafkaFlow struct {
	rec       flowRecord
	value     string
	partition int32
	offset    int64
}

// consumeFlows reads the flows topic from the start until at least want
// records arrived (at most consumeWait), then polls once more so that
// duplicates would show, and checks every record: key and sensor header
// are the sensor name, the value follows the flow schema.
func consumeFlows(t *testing.T, lab *netlab.Lab, broker string, want int) []kafkaFlow {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ClientID("e2e-consumer"), nsDialer(lab.Sensor), kgo.ConsumeTopics(exportTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	poll := func(d time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		fs := cl.PollFetches(ctx)
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("consuming %s/%d: %v", topic, p, err)
			}
		})
		recs = append(recs, fs.Records()...)
	}
	deadline := time.Now().Add(consumeWait)
	for i := 0; i < 10_000 && len(recs) < want && time.Now().Before(deadline); i++ {
		poll(time.Until(deadline))
	}
	poll(500 * time.Millisecond)
	if len(recs) < want {
		t.Fatalf("read %d records from Kafka in %s, vigil was acknowledged for %d", len(recs), consumeWait, want)
	}
	out := make([]kafkaFlow, 0, len(recs))
	for _, r := range recs {
		where := fmt.Sprintf("kafka %s/%d@%d", r.Topic, r.Partition, r.Offset)
		if string(r.Key) != exportSensor || kafkaHeader(r, "sensor") != exportSensor ||
			kafkaHeader(r, "content-type") != "application/json" {
			t.Errorf("%s: key %q, headers %v; want key and sensor %q, application/json", where, r.Key, r.Headers, exportSensor)
		}
		fl := parseFlows(t, where, r.Value)
		if len(fl) != 1 {
			t.Fatalf("%s: %d flow records in one value: %q", where, len(fl), r.Value)
		}
		fl[0].Line = 0
		out = append(out, kafkaFlow{fl[0], string(r.Value), r.Partition, r.Offset})
	}
	return out
}

func kafkaHeader(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
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

var spoolLeftRE = regexp.MustCompile(`msg="records left in the spool from an earlier run will be sent" sink=kafka-0 records=(\d+)`)

// spoolLeft returns the count vigil logged at start for records found
// in kafka-0's spool, or -1 if it logged none.
func spoolLeft(v *vigilProc) int {
	m := spoolLeftRE.FindStringSubmatch(v.stderr.String())
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// checkNoDrops fails if the sink dropped a record for any reason.
func checkNoDrops(t *testing.T, m promText, labels ...string) {
	t.Helper()
	if d := m.counter("vigil_export_records_dropped_total", append([]string{exportSink}, labels...)...); d != 0 {
		t.Errorf("vigil_export_records_dropped_total{%s} = %v, want 0:\n%s", strings.Join(labels, ","), d, grepVigil(string(m)))
	}
}

// TestExportKafkaOutageAndSIGKILL exports live flows to Kafka through a
// broker outage and a SIGKILL of vigil:
//
//   - Kafka up: every flow arrives exactly once, as flows.output has it
//     (and exact at 1-in-1 sampling);
//   - Kafka down: the new flows are spooled, sends fail and are counted,
//     the oldest unsent record ages; then vigil is killed with SIGKILL;
//   - a new broker on the same address and vigil started again on the
//     same spool: vigil logs the records it found, sends them, and every
//     flow of the outage arrives with the same figures as flows.output;
//   - the broker stores what vigil produces but its answers are lost;
//     vigil is killed again and restarted on the same broker: the stored
//     flows arrive twice, and every flow at least once.
//
// Duplicates at the receiver are bounded by what the spool counts as
// redelivered (see the comment at the assertion), and phase D makes
// them happen.
func TestExportKafkaOutageAndSIGKILL(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := buildVigil(t)
	lab := labUp(t)
	dir := t.TempDir()
	flowsPath := filepath.Join(dir, "flows.jsonl")
	spoolDir := filepath.Join(dir, "spool")
	const metricsAddr, kafkaPort = "127.0.0.1:19120", 19092
	broker := fmt.Sprintf("127.0.0.1:%d", kafkaPort)
	cfg := exportConfig(t, metricsAddr, flowsPath, spoolDir, 16,
		fmt.Sprintf("  kafka:\n    - {brokers: [%q], format: json}", broker))
	const n1, n2 = 20, 40
	flows := newUDPFlows(t, lab)

	// Phase A: Kafka up.
	kafka1 := startKafka(t, lab, kafkaPort)
	v := startVigil(t, lab, bin, metricsAddr, "--config", cfg)
	wantA := flows.send(n1)
	fileA := waitFlowsFile(t, flowsPath, wantA)
	// Everything spooled so far (the test's flows and any stray lab
	// traffic, written to the spool before flows.output is flushed) is
	// acknowledged.
	m := v.waitMetric("kafka-0 sent everything spooled", exportTimeout, func(m promText) bool {
		sent := m.counter("vigil_export_records_sent_total", exportSink)
		return sent >= n1 && sent == m.counter("vigil_export_records_spooled_total", exportSink)
	})
	sentA := int(m.get(t, "vigil_export_records_sent_total", exportSink))
	gotA := consumeFlows(t, lab, broker, sentA)
	if len(gotA) != sentA {
		t.Errorf("phase A: Kafka holds %d records, vigil was acknowledged for %d", len(gotA), sentA)
	}
	seen := map[flowKey]int{} // records of each test flow at the receiver, both brokers
	kafkaRec := map[flowKey]flowRecord{}
	for _, f := range gotA {
		k := f.rec.key()
		if wantA[k] == nil {
			continue // stray lab traffic (ICMPv6 MLD reports)
		}
		seen[k]++
		kafkaRec[k] = f.rec
	}
	for k, w := range wantA {
		if seen[k] != 1 {
			t.Errorf("phase A: %s arrived %d times in Kafka, want once", k, seen[k])
			continue
		}
		checkExact(t, "phase A kafka", k, kafkaRec[k], w)
		if fr := fileA[k]; len(fr) != 1 || !sameFlow(fr[0], kafkaRec[k]) {
			t.Errorf("phase A: %s: flows.output has %+v, Kafka %+v", k, fr, kafkaRec[k])
		}
	}
	if m.counter("vigil_export_send_failures_total", exportSink) != 0 {
		t.Errorf("phase A: sends failed with the broker up:\n%s", grepVigil(string(m)))
	}

	// Phase B: Kafka down. The flows are spooled and sends fail (each
	// after the transport's 30 s send timeout at most).
	kafka1.Close()
	spooledA := m.counter("vigil_export_records_spooled_total", exportSink)
	wantB := flows.send(n2)
	fileB := waitFlowsFile(t, flowsPath, wantB)
	m = v.waitMetric("kafka-0 failing with the outage's flows spooled", exportTimeout, func(m promText) bool {
		return m.counter("vigil_export_records_spooled_total", exportSink) >= spooledA+n2 &&
			m.counter("vigil_export_send_failures_total", exportSink) > 0 &&
			m.counter("vigil_export_oldest_unsent_age_seconds", exportSink) > 0 &&
			m.counter("vigil_export_spool_records", exportSink) >= n2
	})
	if up := m.get(t, "vigil_export_up", exportSink); up != 0 {
		t.Errorf("vigil_export_up %v during the outage, want 0", up)
	}
	if sent := int(m.counter("vigil_export_records_sent_total", exportSink)); sent != sentA {
		t.Errorf("vigil_export_records_sent_total went from %d to %d with the broker down", sentA, sent)
	}
	checkNoDrops(t, m)
	pendingAtKill := int(m.get(t, "vigil_export_spool_records", exportSink))
	v.kill()

	// Phase C: a new broker on the same address (empty: the first one's
	// data is gone), vigil again on the same spool.
	kafka2 := startKafka(t, lab, kafkaPort)
	v = startVigil(t, lab, bin, metricsAddr, "--config", cfg)
	left := spoolLeft(v)
	// Stray lab traffic may be spooled between the last scrape and the
	// kill: at least what was pending then is left.
	if left < pendingAtKill {
		t.Errorf("vigil logged %d records left in the spool, %d were pending at the kill:\n%s", left, pendingAtKill, v.stderr.String())
	}
	m = v.waitMetric("kafka-0 drained after the restart", exportTimeout, func(m promText) bool {
		sent := m.counter("vigil_export_records_sent_total", exportSink)
		return sent >= float64(left) && sent == m.counter("vigil_export_records_spooled_total", exportSink)+float64(left)
	})
	sentC := int(m.get(t, "vigil_export_records_sent_total", exportSink))
	redelivered := int(m.get(t, "vigil_export_records_redelivered_total", exportSink))
	failuresC := int(m.get(t, "vigil_export_send_failures_total", exportSink))
	checkNoDrops(t, m)
	gotC := consumeFlows(t, lab, broker, sentC)
	duplicates := 0
	for _, f := range gotC {
		k := f.rec.key()
		if wantA[k] == nil && wantB[k] == nil {
			continue
		}
		seen[k]++
		if seen[k] > 1 {
			duplicates++
		}
		if wantB[k] != nil {
			kafkaRec[k] = f.rec
		}
	}
	for k, w := range wantB {
		if seen[k] == 0 {
			t.Errorf("phase C: %s, spooled during the outage, never arrived", k)
			continue
		}
		checkExact(t, "phase C kafka", k, kafkaRec[k], w)
		if fr := fileB[k]; len(fr) != 1 || !sameFlow(fr[0], kafkaRec[k]) {
			t.Errorf("phase C: %s: flows.output has %+v, Kafka %+v", k, fr, kafkaRec[k])
		}
	}
	t.Logf("restart: %d records left in the spool, %d sent, %d redelivered, %d duplicates of test flows at the receiver, %d failed sends",
		left, sentC, redelivered, duplicates, failuresC)
	// The spool persists the end of each batch before handing it to
	// Kafka; after a restart the records up to that end are sent again
	// and counted as redelivered. They are the only records a killed
	// vigil may have delivered without acknowledging them, so with no
	// failed send after the restart every duplicate at the receiver is
	// one of them. A send that fails while vigil runs may have reached
	// Kafka in part before it is retried by a new producer (whose
	// sequence numbers the broker cannot match with the old one's), so
	// each failure may add up to one batch (at most the records left) of
	// duplicates that are not counted as redelivered.
	//
	// Here the broker was down, so the redelivered records reached no
	// broker before and none is a duplicate; but at least one batch was
	// handed out before the kill (the sends failed), so some are counted.
	if redelivered < 1 || redelivered > left {
		t.Errorf("vigil_export_records_redelivered_total %d, want 1..%d (a batch was in flight at the kill)", redelivered, left)
	}
	if bound := redelivered + failuresC*left; duplicates > bound {
		t.Errorf("%d duplicates of test flows at the receiver, more than %d redelivered + %d failed sends x %d records",
			duplicates, redelivered, failuresC, left)
	}

	// Phase D: the broker stores what vigil produces but its answers to
	// vigil are lost. Once Kafka holds some of the new flows, vigil is
	// killed, the broker answers again and vigil is started once more:
	// it sends the unacknowledged records again, and now there are real
	// duplicates, which the same bound must cover.
	kafka2.mute.Store(true)
	const n3 = 30
	wantD := flows.send(n3)
	waitFlowsFile(t, flowsPath, wantD)
	storedD := 0
	deadline := time.Now().Add(consumeWait)
	for i := 0; storedD == 0 && i < 100; i++ {
		for _, f := range consumeFlows(t, lab, broker, len(gotC)) {
			if wantD[f.rec.key()] != nil {
				storedD++
			}
		}
		if storedD == 0 && time.Now().After(deadline) {
			break
		}
	}
	if storedD == 0 {
		t.Fatalf("phase D: none of the %d new flows reached the muted broker in %s", n3, consumeWait)
	}
	m = v.metrics()
	if sent := int(m.get(t, "vigil_export_records_sent_total", exportSink)); sent != sentC {
		t.Errorf("phase D: vigil_export_records_sent_total went from %d to %d while the broker's answers were lost", sentC, sent)
	}
	v.kill()
	kafka2.mute.Store(false)
	v = startVigil(t, lab, bin, metricsAddr, "--config", cfg)
	leftD := spoolLeft(v)
	if leftD < n3 {
		t.Errorf("vigil logged %d records left in the spool, want at least the %d unacknowledged flows", leftD, n3)
	}
	m = v.waitMetric("kafka-0 drained after the second restart", exportTimeout, func(m promText) bool {
		sent := m.counter("vigil_export_records_sent_total", exportSink)
		return sent >= float64(leftD) && sent == m.counter("vigil_export_records_spooled_total", exportSink)+float64(leftD)
	})
	sentD := int(m.get(t, "vigil_export_records_sent_total", exportSink))
	redeliveredD := int(m.get(t, "vigil_export_records_redelivered_total", exportSink))
	failuresD := int(m.get(t, "vigil_export_send_failures_total", exportSink))
	checkNoDrops(t, m)
	// The topic now holds phase C's records, what the muted broker
	// stored, and what the last run sent.
	gotD := consumeFlows(t, lab, broker, len(gotC)+storedD+sentD)
	before := map[int32]int64{} // last offset of each partition read in phase C
	for _, f := range gotC {
		before[f.partition] = max(before[f.partition], f.offset+1)
	}
	values := map[string]int{}
	duplicatesD, testDuplicatesD := 0, 0
	arrivedD := map[flowKey]int{}
	for _, f := range gotD {
		values[f.value]++
		if f.offset < before[f.partition] {
			continue // read in phase C already
		}
		if values[f.value] > 1 {
			duplicatesD++
		}
		if k := f.rec.key(); wantD[k] != nil {
			arrivedD[k]++
			if arrivedD[k] > 1 {
				testDuplicatesD++
			}
			checkExact(t, "phase D kafka", k, f.rec, wantD[k])
		}
	}
	for k := range wantD {
		if arrivedD[k] == 0 || arrivedD[k] > 2 {
			t.Errorf("phase D: %s arrived %d times, want once, or twice if the muted broker stored it", k, arrivedD[k])
		}
	}
	t.Logf("second restart: %d records left, %d sent, %d redelivered, %d of the test flows were stored by the muted broker, %d duplicates at the receiver (%d of test flows), %d failed sends",
		leftD, sentD, redeliveredD, storedD, duplicatesD, testDuplicatesD, failuresD)
	// Test flows seen stored before the kill must arrive again (more may
	// have been stored between that look and the kill).
	if testDuplicatesD < storedD || duplicatesD < testDuplicatesD {
		t.Errorf("phase D: %d duplicates (%d of test flows) at the receiver; the %d test flows seen at the muted broker must each arrive twice",
			duplicatesD, testDuplicatesD, storedD)
	}
	if bound := redeliveredD + failuresD*leftD; duplicatesD > bound {
		t.Errorf("phase D: %d duplicates at the receiver, more than %d redelivered + %d failed sends x %d records",
			duplicatesD, redeliveredD, failuresD, leftD)
	}
	v.stop()
}

// sameFlow reports whether two records of a flow say the same.
func sameFlow(a, b flowRecord) bool {
	a.Line, b.Line = 0, 0
	return a == b
}

// spoolFrame is one valid frame of a spool segment file.
type spoolFrame struct {
	seg        string // file name
	start, end int64  // byte range in the file, header included
	value      string // the Kafka record value the item carries
}

// readSpool reads the segment files of a sink's spool directory the way
// export/spool lays them out (8-byte magic "VIGILSP1", then frames of
// u32 length, u32 CRC-32C of time and payload, i64 time, payload; all
// little endian), stopping in each file at the first bad frame. Each
// payload is a Kafka spool item (export/kafka.go): version 1, kind,
// format, uvarint-prefixed sensor and key, then the value.
func readSpool(t *testing.T, dir string) (segs []string, frames []spoolFrame) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names) // zero-padded numbers: name order is segment order
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Base(name)
		segs = append(segs, base)
		if !bytes.HasPrefix(data, []byte("VIGILSP1")) {
			t.Fatalf("%s: no segment header", base)
		}
		off := 8
		for off+16 <= len(data) {
			size := int(binary.LittleEndian.Uint32(data[off:]))
			if off+16+size > len(data) || crc32.Checksum(data[off+8:off+16+size], castagnoli) != binary.LittleEndian.Uint32(data[off+4:]) {
				break
			}
			item := data[off+16 : off+16+size]
			value, err := kafkaItemValue(item)
			if err != nil {
				t.Fatalf("%s@%d: %v", base, off, err)
			}
			frames = append(frames, spoolFrame{seg: base, start: int64(off), end: int64(off + 16 + size), value: string(value)})
			off += 16 + size
		}
	}
	return segs, frames
}

func kafkaItemValue(item []byte) ([]byte, error) {
	if len(item) < 3 || item[0] != 1 || item[1] != 1 || item[2] != 1 {
		return nil, fmt.Errorf("not a version 1 JSON flow item: % x", item[:min(len(item), 3)])
	}
	rest := item[3:]
	for range 2 { // sensor, key
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return nil, errors.New("truncated item")
		}
		rest = rest[w+int(n):]
	}
	return rest, nil
}

// TestExportCorruptSpoolSegment spools flows across several segments
// with Kafka down, kills vigil, flips bytes in the middle of the oldest
// segment, then starts Kafka and vigil again: vigil does not stop, counts
// the corrupt segment, and delivers exactly the valid frames: every
// record of the intact segments and of the damaged one before the damage
// arrives, and none of the records after the damage.
func TestExportCorruptSpoolSegment(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := buildVigil(t)
	lab := labUp(t)
	dir := t.TempDir()
	flowsPath := filepath.Join(dir, "flows.jsonl")
	spoolDir := filepath.Join(dir, "spool")
	const metricsAddr, kafkaPort = "127.0.0.1:19121", 19093
	broker := fmt.Sprintf("127.0.0.1:%d", kafkaPort)
	// max_mib 1: 64 KiB segments (a sixteenth of the budget), about 130
	// flow records each.
	cfg := exportConfig(t, metricsAddr, flowsPath, spoolDir, 1,
		fmt.Sprintf("  kafka:\n    - {brokers: [%q], format: json}", broker))
	const n = 320
	flows := newUDPFlows(t, lab)

	// No broker: every record stays in the spool.
	v := startVigil(t, lab, bin, metricsAddr, "--config", cfg)
	want := flows.send(n)
	waitFlowsFile(t, flowsPath, want)
	m := v.waitMetric("all flows spooled", exportTimeout, func(m promText) bool {
		return m.counter("vigil_export_records_spooled_total", exportSink) >= n
	})
	checkNoDrops(t, m)
	if sent := m.counter("vigil_export_records_sent_total", exportSink); sent != 0 {
		t.Fatalf("%v records sent with no broker", sent)
	}
	v.kill()

	sinkDir := filepath.Join(spoolDir, "kafka-0")
	segs, frames := readSpool(t, sinkDir)
	if len(segs) < 2 {
		t.Fatalf("spool has %d segment(s) %v, the test needs at least 2", len(segs), segs)
	}
	spooled := map[flowKey]bool{}
	for _, f := range frames {
		r := parseFlows(t, "spool", []byte(f.value))[0]
		if want[r.key()] != nil {
			spooled[r.key()] = true
		}
	}
	if len(spooled) != len(want) {
		t.Fatalf("the spool holds %d of the %d test flows", len(spooled), len(want))
	}
	// Flip 8 bytes in the middle of the oldest segment: the frame there
	// and every later frame of that segment are lost, the rest is valid.
	oldest := filepath.Join(sinkDir, segs[0])
	data, err := os.ReadFile(oldest)
	if err != nil {
		t.Fatal(err)
	}
	at := int64(len(data) / 2)
	for i := range 8 {
		data[at+int64(i)] ^= 0xff
	}
	if err := os.WriteFile(oldest, data, 0o640); err != nil {
		t.Fatal(err)
	}
	expect, lost := map[string]bool{}, map[string]bool{}
	for _, f := range frames {
		if f.seg == segs[0] && f.end > at {
			lost[f.value] = true
		} else {
			expect[f.value] = true
		}
	}
	t.Logf("%d segments, %d frames; flipped bytes at %d of %s (%d bytes): %d frames expected, %d lost",
		len(segs), len(frames), at, segs[0], len(data), len(expect), len(lost))
	if len(lost) == 0 || len(expect) == 0 {
		t.Fatalf("flip at %d leaves %d frames valid and %d lost", at, len(expect), len(lost))
	}

	startKafka(t, lab, kafkaPort)
	v = startVigil(t, lab, bin, metricsAddr, "--config", cfg)
	// Every valid frame is pending: nothing was acknowledged before.
	if left := spoolLeft(v); left != len(expect) {
		t.Errorf("vigil logged %d records left in the spool, %d frames are valid:\n%s", left, len(expect), v.stderr.String())
	}
	m = v.waitMetric("kafka-0 drained", exportTimeout, func(m promText) bool {
		return m.counter("vigil_export_records_sent_total", exportSink) >= float64(len(expect)) &&
			m.counter("vigil_export_spool_records", exportSink) == 0
	})
	if c := m.get(t, "vigil_export_spool_corrupt_segments_total", exportSink); c != 1 {
		t.Errorf("vigil_export_spool_corrupt_segments_total %v, want 1", c)
	}
	checkNoDrops(t, m, `reason="spool_full"`)
	checkNoDrops(t, m, `reason="oversize"`)
	checkNoDrops(t, m, `reason="rejected"`)
	got := consumeFlows(t, lab, broker, int(m.get(t, "vigil_export_records_sent_total", exportSink)))
	arrived := map[string]int{}
	for _, f := range got {
		arrived[f.value]++
	}
	missing := 0
	for val := range expect {
		if arrived[val] == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("a valid spooled record never arrived: %s", val)
			}
		}
	}
	for val := range lost {
		if arrived[val] != 0 {
			t.Errorf("a record after the damage arrived: %s", val)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d valid spooled records never arrived", missing, len(expect))
	}
	if !v.running() {
		t.Fatalf("vigil exited: %v", v.err)
	}
	v.stop()
}

// nfcapdProc is a real nfcapd in the sensor namespace.
type nfcapdProc struct {
	cmd   *exec.Cmd
	dir   string
	mu    sync.Mutex
	log   strings.Builder
	flows int // records nfcapd printed as processed
	done  chan error
}

func (n *nfcapdProc) output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.log.String()
}

func (n *nfcapdProc) processed() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.flows
}

// startNfcapdIn starts nfcapd on 127.0.0.1:port inside the namespace and
// waits until it has started. With -v -v -v it prints every record it
// processes, so the test knows when all have arrived.
func startNfcapdIn(t *testing.T, ns *netlab.Namespace, port int) *nfcapdProc {
	t.Helper()
	bin := testutil.RequireTool(t, "nfcapd")
	n := &nfcapdProc{dir: t.TempDir(), done: make(chan error, 1)}
	// stdbuf: line-buffered, or the records printed last wait in
	// nfcapd's stdio buffer for the next ones.
	n.cmd = exec.Command("nsenter", "--net=/run/netns/"+ns.Name, "stdbuf", "-oL", bin,
		"-v", "-v", "-v", "-w", n.dir, "-p", strconv.Itoa(port), "-b", "127.0.0.1")
	stdout, err := n.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	n.cmd.Stderr = n.cmd.Stdout
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("starting nfcapd: %v", err)
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
		n.done <- n.cmd.Wait()
	}()
	t.Cleanup(func() {
		if n.cmd.ProcessState == nil {
			n.cmd.Process.Kill()
			<-n.done
		}
	})
	select {
	case <-ready:
	case err := <-n.done:
		n.done <- err
		t.Fatalf("nfcapd exited before starting: %v\n%s", err, n.output())
	case <-time.After(10 * time.Second):
		t.Fatalf("nfcapd did not start within 10 s:\n%s", n.output())
	}
	return n
}

// stop sends SIGTERM, which makes nfcapd write and close its file.
func (n *nfcapdProc) stop(t *testing.T) {
	t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-n.done:
		n.done <- err
		if err != nil {
			t.Fatalf("nfcapd: %v\n%s", err, n.output())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("nfcapd did not stop within 10 s:\n%s", n.output())
	}
}

// nfdumpRecord is a flow as nfdump 1.7.1 prints it with -o json.
type nfdumpRecord struct {
	First   string `json:"first"`
	Last    string `json:"last"`
	Packets uint64 `json:"in_packets"`
	Bytes   uint64 `json:"in_bytes"`
	Proto   uint8  `json:"proto"`
	SrcPort uint16 `json:"src_port"`
	DstPort uint16 `json:"dst_port"`
	Src4    string `json:"src4_addr"`
	Dst4    string `json:"dst4_addr"`
	Src6    string `json:"src6_addr"`
	Dst6    string `json:"dst6_addr"`
}

// TestExportIPFIXToNfcapdLive exports live UDP flows at 1-in-1 sampling
// over IPFIX/UDP to a real nfcapd in the sensor namespace, and reads them
// back with nfdump: every test flow once, with the 5-tuple, packets,
// bytes and first/last times (to the millisecond) of vigil's
// flows.output record, and those exact.
func TestExportIPFIXToNfcapdLive(t *testing.T) {
	testutil.RequirePrivileged(t)
	nfdump := testutil.RequireTool(t, "nfdump")
	bin := buildVigil(t)
	lab := labUp(t)
	dir := t.TempDir()
	flowsPath := filepath.Join(dir, "flows.jsonl")
	const metricsAddr, ipfixPort = "127.0.0.1:19122", 4739
	nf := startNfcapdIn(t, lab.Sensor, ipfixPort)
	cfg := exportConfig(t, metricsAddr, flowsPath, filepath.Join(dir, "spool"), 16,
		fmt.Sprintf("  ipfix:\n    - {address: \"127.0.0.1:%d\", transport: udp, observation_domain: 7}", ipfixPort))
	const ipfixSink = `sink="ipfix-0"`
	v := startVigil(t, lab, bin, metricsAddr, "--config", cfg)
	flows := newUDPFlows(t, lab)
	want := flows.send(60)
	file := waitFlowsFile(t, flowsPath, want)
	m := v.waitMetric("ipfix-0 sent everything spooled", exportTimeout, func(m promText) bool {
		sent := m.counter("vigil_export_records_sent_total", ipfixSink)
		return sent >= float64(len(want)) && sent == m.counter("vigil_export_records_spooled_total", ipfixSink)
	})
	sent := int(m.get(t, "vigil_export_records_sent_total", ipfixSink))
	deadline := time.Now().Add(arriveTimeout)
	for nf.processed() < sent && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := nf.processed(); got < sent {
		t.Fatalf("nfcapd processed %d records, vigil sent %d:\n%s", got, sent, nf.output())
	}
	v.stop()
	nf.stop(t)

	cmd := exec.Command(nfdump, "-R", nf.dir, "-o", "json")
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nfdump: %v\n%s", err, out)
	}
	var recs []nfdumpRecord
	if err := json.Unmarshal(out, &recs); err != nil {
		t.Fatalf("nfdump json: %v\n%s", err, out)
	}
	got := map[flowKey][]nfdumpRecord{}
	for _, r := range recs {
		k := flowKey{IPVersion: 4, Proto: r.Proto, SrcPort: r.SrcPort, DstPort: r.DstPort}
		src, dst := r.Src4, r.Dst4
		if r.Src6 != "" {
			k.IPVersion, src, dst = 6, r.Src6, r.Dst6
		}
		var err1, err2 error
		k.Src, err1 = netip.ParseAddr(src)
		k.Dst, err2 = netip.ParseAddr(dst)
		if err1 != nil || err2 != nil {
			t.Fatalf("nfdump record %+v: %v %v", r, err1, err2)
		}
		got[k] = append(got[k], r)
	}
	ms := func(s string) int64 {
		tm, err := time.Parse("2006-01-02T15:04:05.000", s)
		if err != nil {
			t.Fatalf("nfdump time %q: %v", s, err)
		}
		return tm.UnixMilli()
	}
	for k, w := range want {
		fr := file[k]
		if len(fr) != 1 {
			t.Errorf("%s: %d records in flows.output, want 1", k, len(fr))
			continue
		}
		checkExact(t, "flows.output", k, fr[0], w)
		g := got[k]
		if len(g) != 1 {
			t.Errorf("%s: %d records in nfdump, want 1", k, len(g))
			continue
		}
		if g[0].Packets != fr[0].Packets || g[0].Bytes != fr[0].Bytes ||
			ms(g[0].First) != fr[0].Start.UnixMilli() || ms(g[0].Last) != fr[0].End.UnixMilli() {
			t.Errorf("%s: nfdump %d packets %d bytes %s..%s; flows.output %d packets %d bytes %s..%s",
				k, g[0].Packets, g[0].Bytes, g[0].First, g[0].Last, fr[0].Packets, fr[0].Bytes,
				fr[0].Start.Format(time.RFC3339Nano), fr[0].End.Format(time.RFC3339Nano))
		}
	}
	if p := nf.processed(); len(recs) != p {
		t.Errorf("nfdump read %d records, nfcapd processed %d", len(recs), p)
	}
}
