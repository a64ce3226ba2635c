package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

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
	recs := testutil.ConsumeKafka(t, want, consumeWait,
		kgo.SeedBrokers(broker), kgo.ClientID("e2e-consumer"), nsDialer(lab.Sensor), kgo.ConsumeTopics(exportTopic))
	if len(recs) < want {
		t.Fatalf("read %d records from Kafka in %s, vigil was acknowledged for %d", len(recs), consumeWait, want)
	}
	out := make([]kafkaFlow, 0, len(recs))
	for _, r := range recs {
		where := fmt.Sprintf("kafka %s/%d@%d", r.Topic, r.Partition, r.Offset)
		if string(r.Key) != exportSensor || testutil.KafkaHeader(r, "sensor") != exportSensor ||
			testutil.KafkaHeader(r, "content-type") != "application/json" {
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
	bin := testutil.Vigil(t)
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
