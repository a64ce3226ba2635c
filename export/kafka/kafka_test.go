package export

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

const (
	kafkaTestFlowsTopic  = "vigil-flows"
	kafkaTestAlertsTopic = "vigil-alerts"
)

// newKafka starts an in-process cluster speaking the Kafka protocol on
// loopback, with 6 flow partitions and 3 alert partitions.
func newKafkaCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	opts = append([]kfake.Opt{kfake.NumBrokers(3), kfake.SeedTopics(6, kafkaTestFlowsTopic), kfake.SeedTopics(3, kafkaTestAlertsTopic)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func kafkaTestOptions(brokers []string) KafkaOptions {
	o := DefaultKafkaOptions()
	o.Brokers = brokers
	o.Sensor = "sensor-1"
	o.RequestTimeout = 2 * time.Second
	o.SendTimeout = 10 * time.Second
	return o
}

func newTestKafkaTransport(t testing.TB, o KafkaOptions) *KafkaTransport {
	t.Helper()
	tr, err := NewKafkaTransport(o, nil)
	if err != nil {
		t.Fatalf("NewKafkaTransport: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func newTestKafkaEncoder(t testing.TB, o KafkaOptions) *KafkaEncoder {
	t.Helper()
	e, err := NewKafkaEncoder(o, func(i uint32) string { return "eth" + strconv.Itoa(int(i)) })
	if err != nil {
		t.Fatalf("NewKafkaEncoder: %v", err)
	}
	return e
}

// kafkaConsume reads topics from the start until want records arrived
// (or 30 s passed), then polls once more so that duplicates would show.
func kafkaConsume(t *testing.T, brokers []string, want int, topics []string, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	return testutil.ConsumeKafka(t, want, 30*time.Second, append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...)}, opts...)...)
}

func kafkaTestFlow(host, seq int) flow.Record {
	src := netip.AddrFrom4([4]byte{10, 0, byte(host), byte(seq % 7)})
	return flow.Record{
		Key: flow.Key{
			SrcAddr: src.As16(), DstAddr: netip.MustParseAddr("192.0.2.1").As16(), Ifindex: uint32(host),
			SrcPort: uint16(1024 + seq), DstPort: 443, Proto: 6, IPVersion: 4,
		},
		Start: 1_795_000_000_000_000_000 + int64(seq)*1_000_000_000, End: 1_795_000_000_500_000_000 + int64(seq)*1_000_000_000,
		SampledPackets: uint64(seq + 1), SampledBytes: 100, Packets: uint64(host)<<32 | uint64(seq), Bytes: 10000,
		Samples: 1, RateSum: 100, EndReason: flow.EndIdle,
	}
}

func kafkaTestAlert(key, seq int) flow.Alert {
	state := flow.AlertUpdate
	switch seq {
	case 0:
		state = flow.AlertStart
	case 9:
		state = flow.AlertEnd
	}
	return flow.Alert{
		ID: fmt.Sprintf("alert-%d", key), Rule: "syn_flood", State: state, Severity: flow.SeverityHigh,
		Key:  []flow.KeyValue{{Name: "dst_addr", Value: fmt.Sprintf("198.51.100.%d", key)}},
		Time: 1_795_000_000_000_000_000 + int64(seq), Packets: uint64(seq), SamplingRate: 100,
		Summary: "flood",
	}
}

// sent is what the test expects to read back for one item.
type kafkaSent struct {
	topic, key, sensor, contentType string
	seq                             int
}

type kafkaExpect struct {
	byValue map[string]kafkaSent
	items   [][]byte
}

func (x *kafkaExpect) add(t *testing.T, item []byte, topic string, seq int) {
	t.Helper()
	it, err := parseKafkaItem(item)
	if err != nil {
		t.Fatalf("encoder made an unreadable item: %v", err)
	}
	if _, dup := x.byValue[string(it.value)]; dup {
		t.Fatalf("test values are not unique: %s", it.value)
	}
	x.byValue[string(it.value)] = kafkaSent{topic, string(it.key), string(it.sensor), string(kafkaContentTypes[it.kind][it.format]), seq}
	x.items = append(x.items, item)
}

// check asserts that got holds every expected record exactly once, on
// its topic with its key and headers, each key on one partition and in
// the order sent.
func (x *kafkaExpect) check(t *testing.T, got []*kgo.Record) {
	t.Helper()
	seen := make(map[string]bool)
	next := make(map[string]int)    // topic/key -> next seq
	part := make(map[string]int32)  // topic/key -> partition
	partKeys := make(map[int32]int) // flow partitions used
	for _, r := range got {
		w, ok := x.byValue[string(r.Value)]
		if !ok {
			t.Errorf("unexpected record on %s/%d: %q", r.Topic, r.Partition, r.Value)
			continue
		}
		if seen[string(r.Value)] {
			t.Errorf("record delivered twice: %s key %s seq %d", r.Topic, r.Key, w.seq)
			continue
		}
		seen[string(r.Value)] = true
		if r.Topic != w.topic || string(r.Key) != w.key {
			t.Errorf("record seq %d on %s key %q, want %s key %q", w.seq, r.Topic, r.Key, w.topic, w.key)
		}
		if h := testutil.KafkaHeader(r, "sensor"); h != w.sensor {
			t.Errorf("sensor header %q, want %q", h, w.sensor)
		}
		if h := testutil.KafkaHeader(r, "content-type"); h != w.contentType {
			t.Errorf("content-type header %q, want %q", h, w.contentType)
		}
		tk := r.Topic + "/" + string(r.Key)
		if p, ok := part[tk]; ok && p != r.Partition {
			t.Errorf("key %s on partitions %d and %d", tk, p, r.Partition)
		} else if !ok {
			part[tk] = r.Partition
			if r.Topic == kafkaTestFlowsTopic {
				partKeys[r.Partition]++
			}
		}
		if w.seq != next[tk] {
			t.Errorf("key %s: seq %d arrived when %d was next", tk, w.seq, next[tk])
		}
		next[tk] = w.seq + 1
	}
	if len(seen) != len(x.byValue) {
		t.Errorf("%d of %d records arrived", len(seen), len(x.byValue))
	}
}

func kafkaSendAll(t *testing.T, tr *KafkaTransport, items [][]byte, batch int) {
	t.Helper()
	for len(items) > 0 {
		b := items[:min(batch, len(items))]
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		n, err := tr.Send(ctx, b)
		cancel()
		if err != nil || n != len(b) {
			t.Fatalf("Send(%d items) = %d, %v", len(b), n, err)
		}
		items = items[len(b):]
	}
}

func TestKafkaDeliveryOrderAndKeys(t *testing.T) {
	for _, format := range []string{KafkaFormatJSON, KafkaFormatProtobuf} {
		t.Run(format, func(t *testing.T) {
			c := newKafkaCluster(t)
			o := kafkaTestOptions(c.ListenAddrs())
			o.Format = format
			tr := newTestKafkaTransport(t, o)

			// Four sensors, keyed by sensor, and their alerts, interleaved.
			const hosts, perHost, alertKeys = 4, 400, 5
			var encs []*KafkaEncoder
			for h := range hosts {
				oh := o
				oh.Sensor = fmt.Sprintf("host-%d", h)
				encs = append(encs, newTestKafkaEncoder(t, oh))
			}
			x := &kafkaExpect{byValue: make(map[string]kafkaSent)}
			alertSeq := make([]int, alertKeys)
			for seq := range perHost {
				for h, e := range encs {
					r := kafkaTestFlow(h, seq)
					x.add(t, e.AppendFlow(nil, &r), kafkaTestFlowsTopic, seq)
				}
				if seq%8 == 0 {
					k := (seq / 8) % alertKeys
					if alertSeq[k] < 10 {
						a := kafkaTestAlert(k, alertSeq[k])
						x.add(t, encs[0].AppendAlert(nil, &a), kafkaTestAlertsTopic, alertSeq[k])
						alertSeq[k]++
					}
				}
			}
			half := len(x.items) / 2
			kafkaSendAll(t, tr, x.items[:half], 300)
			// Close, then Send again: the transport reconnects.
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			kafkaSendAll(t, tr, x.items[half:], 300)

			got := kafkaConsume(t, c.ListenAddrs(), len(x.byValue), []string{kafkaTestFlowsTopic, kafkaTestAlertsTopic})
			x.check(t, got)

			// Values decode as what was sent, by topic.
			for _, r := range got[:min(len(got), 50)] {
				if format == KafkaFormatJSON {
					var v struct{ Kind string }
					if err := json.Unmarshal(r.Value, &v); err != nil {
						t.Fatalf("JSON value: %v", err)
					}
					if want := map[string]string{kafkaTestFlowsTopic: "flow", kafkaTestAlertsTopic: "alert"}[r.Topic]; v.Kind != want {
						t.Errorf("%s carries kind %q", r.Topic, v.Kind)
					}
				}
			}
		})
	}
}

func TestKafkaKeyByAddress(t *testing.T) {
	for _, key := range []string{KafkaKeySrcAddr, KafkaKeyDstAddr} {
		t.Run(key, func(t *testing.T) {
			o := kafkaTestOptions(newKafkaCluster(t).ListenAddrs())
			o.Key = key
			e := newTestKafkaEncoder(t, o)
			x := &kafkaExpect{byValue: make(map[string]kafkaSent)}
			seqs := make(map[string]int)
			for seq := range 700 {
				r := kafkaTestFlow(seq%3, seq)
				if key == KafkaKeyDstAddr {
					r.Key.SrcAddr, r.Key.DstAddr = r.Key.DstAddr, r.Key.SrcAddr
				}
				item := e.AppendFlow(nil, &r)
				it, _ := parseKafkaItem(item)
				want := r.Key.Src().String()
				if key == KafkaKeyDstAddr {
					want = r.Key.Dst().String()
				}
				if string(it.key) != want {
					t.Fatalf("key %q, want %q", it.key, want)
				}
				x.add(t, item, kafkaTestFlowsTopic, seqs[want])
				seqs[want]++
			}
			if len(seqs) != 21 {
				t.Fatalf("%d distinct addresses, want 21", len(seqs))
			}
			kafkaSendAll(t, newTestKafkaTransport(t, o), x.items, 250)
			x.check(t, kafkaConsume(t, o.Brokers, len(x.byValue), []string{kafkaTestFlowsTopic}))
		})
	}
}

func TestKafkaEncoderItems(t *testing.T) {
	o := DefaultKafkaOptions()
	o.Sensor = "edge-7"
	rec := pbTestFlows()[1] // IPv6
	alert := pbTestAlerts()[0]
	ifname := func(uint32) string { return "ens5" }
	for _, format := range []string{KafkaFormatJSON, KafkaFormatProtobuf} {
		for _, key := range []string{KafkaKeySensor, KafkaKeySrcAddr, KafkaKeyDstAddr} {
			o.Format, o.Key = format, key
			e, err := NewKafkaEncoder(o, ifname)
			if err != nil {
				t.Fatal(err)
			}
			if e.Kinds() != KindFlows|KindAlerts {
				t.Errorf("Kinds() = %v", e.Kinds())
			}
			it, err := parseKafkaItem(e.AppendFlow([]byte("x"), &rec)[1:])
			if err != nil {
				t.Fatal(err)
			}
			wantKey := map[string]string{KafkaKeySensor: "edge-7", KafkaKeySrcAddr: "2001:db8::1", KafkaKeyDstAddr: "2001:db8:ffff::abcd"}[key]
			wantValue := AppendFlowJSON(nil, &rec, ifname)
			if format == KafkaFormatProtobuf {
				wantValue = AppendFlowProto(nil, &rec, ifname)
			}
			if it.kind != kafkaKindFlow || string(it.sensor) != "edge-7" || string(it.key) != wantKey || string(it.value) != string(wantValue) {
				t.Errorf("%s/%s flow item: kind %d sensor %q key %q value %q", format, key, it.kind, it.sensor, it.key, it.value)
			}
			it, err = parseKafkaItem(e.AppendAlert(nil, &alert))
			if err != nil {
				t.Fatal(err)
			}
			wantValue = AppendAlertJSON(nil, &alert)
			if format == KafkaFormatProtobuf {
				wantValue = AppendAlertProto(nil, &alert)
			}
			if it.kind != kafkaKindAlert || string(it.key) != "syn_flood/dst_addr=198.51.100.7/dst_port=443" || string(it.value) != string(wantValue) {
				t.Errorf("%s/%s alert item: kind %d key %q value %q", format, key, it.kind, it.key, it.value)
			}
			buf := make([]byte, 0, 4096)
			if allocs := testing.AllocsPerRun(50, func() {
				buf = e.AppendFlow(buf[:0], &rec)
				buf = e.AppendAlert(buf[:0], &alert)
			}); allocs != 0 {
				t.Errorf("%s/%s: %v allocations per flow and alert", format, key, allocs)
			}
		}
	}
	// Every truncation of an item is rejected, never misread.
	o.Format, o.Key = KafkaFormatJSON, KafkaKeySensor
	e, _ := NewKafkaEncoder(o, nil)
	item := e.AppendFlow(nil, &rec)
	for i := range 3 + 1 + len("edge-7") + 1 + len("edge-7") {
		if _, err := parseKafkaItem(item[:i]); err == nil {
			t.Errorf("item cut at %d bytes parsed", i)
		}
	}
}

func TestKafkaOptionsValidate(t *testing.T) {
	ok := DefaultKafkaOptions()
	ok.Brokers = []string{"127.0.0.1:9092"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults with a broker: %v", err)
	}
	if err := (KafkaOptions{Brokers: []string{"k:9092"}}).Validate(); err != nil {
		t.Errorf("zero options with a broker: %v", err)
	}
	for want, change := range map[string]func(*KafkaOptions){
		"brokers:":                 func(o *KafkaOptions) { o.Brokers = nil },
		"brokers: empty":           func(o *KafkaOptions) { o.Brokers = []string{" "} },
		"format:":                  func(o *KafkaOptions) { o.Format = "avro" },
		"key:":                     func(o *KafkaOptions) { o.Key = "proto" },
		"compression:":             func(o *KafkaOptions) { o.Compression = "brotli" },
		"tls: settings":            func(o *KafkaOptions) { o.TLS.CAFile = "/ca.pem" },
		"tls: cert_file":           func(o *KafkaOptions) { o.TLS = KafkaTLS{Enable: true, CertFile: "c.pem"} },
		"sasl.mechanism: \"GSSAPI": func(o *KafkaOptions) { o.SASL = KafkaSASL{Mechanism: "GSSAPI", Username: "u", Password: "p"} },
		"sasl.mechanism: cred":     func(o *KafkaOptions) { o.SASL = KafkaSASL{Username: "u"} },
		"sasl.username:":           func(o *KafkaOptions) { o.SASL = KafkaSASL{Mechanism: "PLAIN", Password: "p"} },
		"sasl: give exactly":       func(o *KafkaOptions) { o.SASL = KafkaSASL{Mechanism: "PLAIN", Username: "u"} },
	} {
		o := ok
		change(&o)
		err := o.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("want an error starting %q, got %v", want, err)
		}
		if _, err := NewKafkaTransport(o, nil); err == nil {
			t.Errorf("NewKafkaTransport accepted options failing with %q", want)
		}
	}
	o := ok
	o.TLS = KafkaTLS{Enable: true, CAFile: filepath.Join(t.TempDir(), "missing.pem")}
	if _, err := NewKafkaTransport(o, nil); err == nil || !strings.Contains(err.Error(), "tls.ca_file") {
		t.Errorf("missing CA file: %v", err)
	}
}
