package kafka

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

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/internal/tlsclient"
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

func kafkaTestOptions(brokers []string) Config {
	o := DefaultConfig()
	o.Brokers = brokers
	o.RequestTimeout.D = 2 * time.Second
	o.SendTimeout.D = 10 * time.Second
	return o
}

func newTestKafkaTransport(t testing.TB, o Config) *Transport {
	t.Helper()
	tr, err := NewTransport(o, nil)
	if err != nil {
		t.Fatalf("NewTransport: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// newTestKafkaEncoder makes items of o from sensor-1.
func newTestKafkaEncoder(t testing.TB, o Config) *Encoder {
	t.Helper()
	return newTestKafkaEncoderFor(t, o, "sensor-1")
}

func newTestKafkaEncoderFor(t testing.TB, o Config, sensor string) *Encoder {
	t.Helper()
	e, err := NewEncoder(o, sensor, func(i uint32) string { return "eth" + strconv.Itoa(int(i)) })
	if err != nil {
		t.Fatalf("NewEncoder: %v", err)
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

func kafkaSendAll(t *testing.T, tr *Transport, items [][]byte, batch int) {
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
	for _, format := range []string{FormatJSON, FormatProtobuf} {
		t.Run(format, func(t *testing.T) {
			c := newKafkaCluster(t)
			o := kafkaTestOptions(c.ListenAddrs())
			o.Format = format
			tr := newTestKafkaTransport(t, o)

			// Four sensors, keyed by sensor, and their alerts, interleaved.
			const hosts, perHost, alertKeys = 4, 400, 5
			var encs []*Encoder
			for h := range hosts {
				encs = append(encs, newTestKafkaEncoderFor(t, o, fmt.Sprintf("host-%d", h)))
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
				if format == FormatJSON {
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
	for _, key := range []string{KeySrcAddr, KeyDstAddr} {
		t.Run(key, func(t *testing.T) {
			o := kafkaTestOptions(newKafkaCluster(t).ListenAddrs())
			o.Key = key
			e := newTestKafkaEncoder(t, o)
			x := &kafkaExpect{byValue: make(map[string]kafkaSent)}
			seqs := make(map[string]int)
			for seq := range 700 {
				r := kafkaTestFlow(seq%3, seq)
				if key == KeyDstAddr {
					r.Key.SrcAddr, r.Key.DstAddr = r.Key.DstAddr, r.Key.SrcAddr
				}
				item := e.AppendFlow(nil, &r)
				it, _ := parseKafkaItem(item)
				want := r.Key.Src().String()
				if key == KeyDstAddr {
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
	o := DefaultConfig()
	rec := testFlowV6
	alert := testAlert
	ifname := func(uint32) string { return "ens5" }
	for _, format := range []string{FormatJSON, FormatProtobuf} {
		for _, key := range []string{KeySensor, KeySrcAddr, KeyDstAddr} {
			o.Format, o.Key = format, key
			e, err := NewEncoder(o, "edge-7", ifname)
			if err != nil {
				t.Fatal(err)
			}
			if e.Kinds() != export.KindFlows|export.KindAlerts {
				t.Errorf("export.Kinds() = %v", e.Kinds())
			}
			it, err := parseKafkaItem(e.AppendFlow([]byte("x"), &rec)[1:])
			if err != nil {
				t.Fatal(err)
			}
			wantKey := map[string]string{KeySensor: "edge-7", KeySrcAddr: "2001:db8::1", KeyDstAddr: "2001:db8:ffff::abcd"}[key]
			wantValue := export.AppendFlowJSON(nil, &rec, ifname)
			if format == FormatProtobuf {
				wantValue = export.AppendFlowProto(nil, &rec, ifname)
			}
			if it.kind != kafkaKindFlow || string(it.sensor) != "edge-7" || string(it.key) != wantKey || string(it.value) != string(wantValue) {
				t.Errorf("%s/%s flow item: kind %d sensor %q key %q value %q", format, key, it.kind, it.sensor, it.key, it.value)
			}
			it, err = parseKafkaItem(e.AppendAlert(nil, &alert))
			if err != nil {
				t.Fatal(err)
			}
			wantValue = export.AppendAlertJSON(nil, &alert)
			if format == FormatProtobuf {
				wantValue = export.AppendAlertProto(nil, &alert)
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
	o.Format, o.Key = FormatJSON, KeySensor
	e, _ := NewEncoder(o, "edge-7", nil)
	item := e.AppendFlow(nil, &rec)
	for i := range 3 + 1 + len("edge-7") + 1 + len("edge-7") {
		if _, err := parseKafkaItem(item[:i]); err == nil {
			t.Errorf("item cut at %d bytes parsed", i)
		}
	}
}

// Validate names the key to fix, relative to the entry, and the
// transport refuses whatever Validate refuses.
func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Brokers = []string{"127.0.0.1:9092"}
	if p := ok.Validate(); len(p) > 0 {
		t.Fatalf("defaults with a broker: %v", p)
	}
	pass := passwordFile(t, "p\n")
	empty := passwordFile(t, "\n")
	for field, change := range map[string]func(*Config){
		"brokers":            func(o *Config) { o.Brokers = nil },
		"brokers[0]":         func(o *Config) { o.Brokers = []string{" "} },
		"records":            func(o *Config) { o.Records = "packets" },
		"flows_topic":        func(o *Config) { o.FlowsTopic = "" },
		"format":             func(o *Config) { o.Format = "avro" },
		"key":                func(o *Config) { o.Key = "proto" },
		"compression":        func(o *Config) { o.Compression = "brotli" },
		"send_timeout":       func(o *Config) { o.SendTimeout.D = 0 },
		"tls.ca_file":        func(o *Config) { o.TLS.CAFile = "../../internal/tlsclient/testdata/ca.pem" },
		"tls.server_name":    func(o *Config) { o.TLS.ServerName = "kafka.example" },
		"tls.key_file":       func(o *Config) { o.TLS = tlsclient.Config{Enabled: true, CertFile: "c.pem"} },
		"sasl.mechanism":     func(o *Config) { o.SASL = SASLConfig{Mechanism: "GSSAPI", Username: "u", PasswordFile: pass} },
		"sasl.username":      func(o *Config) { o.SASL = SASLConfig{Mechanism: SASLPlain, PasswordFile: pass} },
		"sasl.password_file": func(o *Config) { o.SASL = SASLConfig{Mechanism: SASLPlain, Username: "u"} },
	} {
		o := ok
		change(&o)
		p := o.Validate()
		if len(p) != 1 || p[0].Field != field {
			t.Errorf("want one problem at %s, got %v", field, p)
		}
		if _, err := NewTransport(o, nil); err == nil {
			t.Errorf("NewTransport accepted a config with a problem at %s", field)
		}
	}
	for _, change := range []func(*Config){
		func(o *Config) { o.SASL = SASLConfig{Username: "u"} },
		func(o *Config) { o.SASL = SASLConfig{Mechanism: SASLScramSHA512, Username: "u", PasswordFile: empty} },
		func(o *Config) {
			o.SASL = SASLConfig{Mechanism: SASLScramSHA512, Username: "u", PasswordFile: pass + ".missing"}
		},
	} {
		o := ok
		change(&o)
		if p := o.Validate(); len(p) != 1 || !strings.HasPrefix(p[0].Field, "sasl.") {
			t.Errorf("%+v: want one sasl problem, got %v", o.SASL, p)
		}
	}
	o := ok
	o.TLS = tlsclient.Config{Enabled: true, CAFile: filepath.Join(t.TempDir(), "missing.pem")}
	if _, err := NewTransport(o, nil); err == nil || !strings.Contains(err.Error(), "tls.ca_file") {
		t.Errorf("missing CA file: %v", err)
	}
}

// testFlowV4, testFlowV6 and testAlert are records of every field.
var (
	testFlowV4 = flow.Record{
		Key: flow.Key{
			SrcAddr: netip.MustParseAddr("192.0.2.10").As16(), DstAddr: netip.MustParseAddr("198.51.100.7").As16(),
			Ifindex: 2, SrcPort: 51514, DstPort: 443, Proto: 6, Direction: flow.Ingress, IPVersion: 4, VLAN: 100,
		},
		Start: 1_795_000_000_123_456_789, End: 1_795_000_004_250_000_000,
		SampledPackets: 12, SampledBytes: 14560, Packets: 1200, Bytes: 1456000, Samples: 12, RateSum: 1200,
		PacketsVar: 12 * 100 * 99, BytesVar: 12 * 100 * 99 * 1213 * 1213, MaxPacketsW: 99, MaxBytesW: 99 * 1213,
		TCPFlags: flow.TCPSyn | flow.TCPAck | flow.TCPFin | flow.TCPPsh, TOS: 0x10, MinTTL: 57, MaxTTL: 64, EndReason: flow.EndTCP,
	}
	testFlowV6 = flow.Record{
		Key: flow.Key{
			SrcAddr: netip.MustParseAddr("2001:db8::1").As16(), DstAddr: netip.MustParseAddr("2001:db8:ffff::abcd").As16(),
			Ifindex: 70000, VNI: 0xabcdef, SrcPort: 53, DstPort: 40000, Proto: 17, Direction: flow.Egress, IPVersion: 6,
			VLAN: 4094, InnerVLAN: 7, Tunnel: flow.TunnelGENEVE,
		},
		Start: 1_795_000_000_000_000_000, End: 1_795_000_060_000_000_001,
		SampledPackets: 3, SampledBytes: 300, Packets: 3 << 40, Bytes: 1 << 62, Samples: 3, RateSum: 3001,
		PacketsVar: 1e25, BytesVar: 1e37, MaxPacketsW: 1 << 40, MaxBytesW: 1 << 61,
		TOS: 0xb8, MinTTL: 1, MaxTTL: 255, EndReason: flow.EndActive,
	}
	testAlert = flow.Alert{
		ID: "a-0001", Rule: "syn_flood", State: flow.AlertStart, Severity: flow.SeverityHigh,
		Key:  []flow.KeyValue{{Name: "dst_addr", Value: "198.51.100.7"}, {Name: "dst_port", Value: "443"}},
		Time: 1_795_000_010_000_000_000, Start: 1_795_000_000_000_000_001, End: 1_795_000_009_999_999_999,
		Packets: 1_000_000, Bytes: 64_000_000, PacketsCI: flow.Interval{Lo: 994_000, Hi: 1_006_100}, BytesCI: flow.Interval{Lo: 63_500_000, Hi: 64_600_000},
		PeakPPS: 123456.789, PeakBPS: 9.87654321e9, CurrentPPS: 100000.5, CurrentBPS: 1e-3,
		CurrentPPSCI: flow.RateInterval{Lo: 99000.25, Hi: 101000.75}, CurrentBPSCI: flow.RateInterval{Lo: 0, Hi: 8e-3},
		TopSources:      []flow.Top{{Value: "192.0.2.1", Packets: 500000}, {Value: "2001:db8::7", Packets: 1}, {Value: "", Packets: 0}},
		TopDestinations: []flow.Top{{Value: "198.51.100.7", Packets: 1_000_000}},
		TopPorts:        []flow.Top{{Value: "443", Packets: 999_000}, {Value: "80", Packets: 1000}},
		SamplingRate:    100,
		Techniques:      []string{"T1498.001", "", "T1499"},
		Summary:         "SYN flood against 198.51.100.7:443 — 100k pps",
		Service:         "https",
	}
)
