package export

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/vigil-sensor/vigil/flow"
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

// consume reads topics from the start until want records arrived (or 30
// s passed), then polls once more so that duplicates would show.
func kafkaConsume(t *testing.T, brokers []string, want int, topics []string, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	opts = append([]kgo.Opt{
		kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200 * time.Millisecond),
	}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	poll := func(d time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		fs := cl.PollFetches(ctx)
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("consuming %s/%d: %v", topic, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < 10000 && len(out) < want && time.Now().Before(deadline); i++ {
		poll(time.Until(deadline))
	}
	poll(500 * time.Millisecond)
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
		if h := kafkaHeader(r, "sensor"); h != w.sensor {
			t.Errorf("sensor header %q, want %q", h, w.sensor)
		}
		if h := kafkaHeader(r, "content-type"); h != w.contentType {
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

func TestKafkaSASL(t *testing.T) {
	for _, mech := range []string{KafkaSASLPlain, KafkaSASLScramSHA256, KafkaSASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			c := newKafkaCluster(t, kfake.EnableSASL(), kfake.Superuser(mech, "vigil", "s3cret"))
			o := kafkaTestOptions(c.ListenAddrs())
			o.SASL = KafkaSASL{Mechanism: mech, Username: "vigil", Password: "s3cret"}
			if mech == KafkaSASLScramSHA512 {
				pf := filepath.Join(t.TempDir(), "password")
				if err := os.WriteFile(pf, []byte("s3cret\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				o.SASL.Password, o.SASL.PasswordFile = "", pf
			}
			x := &kafkaExpect{byValue: make(map[string]kafkaSent)}
			e := newTestKafkaEncoder(t, o)
			for seq := range 50 {
				r := kafkaTestFlow(1, seq)
				x.add(t, e.AppendFlow(nil, &r), kafkaTestFlowsTopic, seq)
			}
			kafkaSendAll(t, newTestKafkaTransport(t, o), x.items, 50)

			var m kgo.Opt
			switch mech {
			case KafkaSASLPlain:
				m = kgo.SASL(plain.Auth{User: "vigil", Pass: "s3cret"}.AsMechanism())
			case KafkaSASLScramSHA256:
				m = kgo.SASL(scram.Auth{User: "vigil", Pass: "s3cret"}.AsSha256Mechanism())
			default:
				m = kgo.SASL(scram.Auth{User: "vigil", Pass: "s3cret"}.AsSha512Mechanism())
			}
			x.check(t, kafkaConsume(t, o.Brokers, len(x.byValue), []string{kafkaTestFlowsTopic}, m))

			// A wrong password fails within the send timeout, nothing acknowledged.
			bad := o
			bad.SASL = KafkaSASL{Mechanism: mech, Username: "vigil", Password: "wrong"}
			bad.SendTimeout = 2 * time.Second
			start := time.Now()
			n, err := newTestKafkaTransport(t, bad).Send(context.Background(), x.items[:5])
			if err == nil || n != 0 {
				t.Fatalf("Send with a wrong password = %d, %v; want 0 and an error", n, err)
			}
			if d := time.Since(start); d > bad.SendTimeout+kafkaCloseGrace {
				t.Errorf("Send with a wrong password took %v", d)
			}
			t.Logf("wrong password: %v", err)
		})
	}
}

// kafkaTestPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all PEM, into dir.
type kafkaTestPKI struct {
	caFile, certFile, keyFile string
	server                    tls.Certificate
	pool                      *x509.CertPool
}

func newKafkaTestPKI(t *testing.T) kafkaTestPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vigil test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	p := kafkaTestPKI{caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "client.pem"), keyFile: filepath.Join(dir, "client.key")}
	write := func(path string, b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	cert, key := issue(2, "vigil client", x509.ExtKeyUsageClientAuth)
	write(p.certFile, cert)
	write(p.keyFile, key)
	scert, skey := issue(3, "kfake", x509.ExtKeyUsageServerAuth)
	if p.server, err = tls.X509KeyPair(scert, skey); err != nil {
		t.Fatal(err)
	}
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca)
	return p
}

func TestKafkaTLS(t *testing.T) {
	pki := newKafkaTestPKI(t)
	// Mutual TLS and SCRAM together: the broker wants a client
	// certificate signed by the CA, then a password.
	c := newKafkaCluster(t,
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pki.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.pool, MinVersion: tls.VersionTLS12}),
		kfake.EnableSASL(), kfake.Superuser(KafkaSASLScramSHA256, "vigil", "s3cret"))
	o := kafkaTestOptions(c.ListenAddrs())
	o.TLS = KafkaTLS{Enable: true, CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}
	o.SASL = KafkaSASL{Mechanism: KafkaSASLScramSHA256, Username: "vigil", Password: "s3cret"}

	x := &kafkaExpect{byValue: make(map[string]kafkaSent)}
	e := newTestKafkaEncoder(t, o)
	for seq := range 40 {
		a := kafkaTestAlert(seq%4, seq/4)
		x.add(t, e.AppendAlert(nil, &a), kafkaTestAlertsTopic, seq/4)
	}
	kafkaSendAll(t, newTestKafkaTransport(t, o), x.items, 40)
	clientCert, err := tls.LoadX509KeyPair(pki.certFile, pki.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	x.check(t, kafkaConsume(t, o.Brokers, len(x.byValue), []string{kafkaTestAlertsTopic},
		kgo.DialTLSConfig(&tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12}),
		kgo.SASL(scram.Auth{User: "vigil", Pass: "s3cret"}.AsSha256Mechanism())))

	// Each missing piece fails the send, with nothing acknowledged.
	for name, change := range map[string]func(*KafkaOptions){
		"no client certificate": func(o *KafkaOptions) { o.TLS.CertFile, o.TLS.KeyFile = "", "" },
		"system roots":          func(o *KafkaOptions) { o.TLS.CAFile = "" },
		"wrong server name":     func(o *KafkaOptions) { o.TLS.ServerName = "kafka.example" },
	} {
		bad := o
		change(&bad)
		bad.SendTimeout = 2 * time.Second
		n, err := newTestKafkaTransport(t, bad).Send(context.Background(), x.items[:3])
		if err == nil || n != 0 {
			t.Errorf("%s: Send = %d, %v; want 0 and an error", name, n, err)
		}
	}
}

func TestKafkaBrokerDownAndBack(t *testing.T) {
	c := newKafkaCluster(t)
	addrs := c.ListenAddrs()
	var ports []int
	for _, a := range addrs {
		_, p, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(p)
		ports = append(ports, n)
	}
	o := kafkaTestOptions(addrs)
	o.SendTimeout = 3 * time.Second
	o.RequestTimeout = time.Second
	tr := newTestKafkaTransport(t, o)
	e := newTestKafkaEncoder(t, o)
	var before, after [][]byte
	for seq := range 200 {
		r := kafkaTestFlow(2, seq)
		if seq < 100 {
			before = append(before, e.AppendFlow(nil, &r))
		} else {
			after = append(after, e.AppendFlow(nil, &r))
		}
	}
	kafkaSendAll(t, tr, before, 100)
	c.Close()

	// The send timeout bounds a Send to a cluster that is gone.
	start := time.Now()
	n, err := tr.Send(context.Background(), after)
	if err == nil || n != 0 {
		t.Fatalf("Send to a closed cluster = %d, %v; want 0 and an error", n, err)
	}
	if d := time.Since(start); d > o.SendTimeout+kafkaCloseGrace {
		t.Errorf("Send to a closed cluster took %v, send_timeout is %v", d, o.SendTimeout)
	}
	t.Logf("cluster down after %v: %v", time.Since(start), err)

	// So does the caller's context, when it ends first.
	long := o
	long.SendTimeout = time.Minute
	tr2 := newTestKafkaTransport(t, long)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	start = time.Now()
	n, err = tr2.Send(ctx, after)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || n != 0 {
		t.Fatalf("Send with an expiring context = %d, %v; want 0 and context.DeadlineExceeded", n, err)
	}
	if d := time.Since(start); d > 500*time.Millisecond+kafkaCloseGrace {
		t.Errorf("Send with a 500ms context took %v", d)
	}

	// A new cluster on the same ports: the same transport delivers the
	// items again (at least once).
	c2 := newKafkaCluster(t, kfake.Ports(ports...))
	var sentOK bool
	for try := 0; try < 3 && !sentOK; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		n, err = tr.Send(ctx, after)
		cancel()
		sentOK = err == nil && n == len(after)
		if !sentOK {
			t.Logf("send %d after restart: %d, %v", try, n, err)
		}
	}
	if !sentOK {
		t.Fatalf("Send after the cluster came back = %d, %v", n, err)
	}
	x := &kafkaExpect{byValue: make(map[string]kafkaSent)}
	for i, item := range after {
		x.add(t, item, kafkaTestFlowsTopic, i)
	}
	x.check(t, kafkaConsume(t, c2.ListenAddrs(), len(after), []string{kafkaTestFlowsTopic}))
}

// A broker that accepts connections and never answers must not hang Send.
func TestKafkaSilentBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // read and discard until the client gives up
				defer conn.Close()
				buf := make([]byte, 4096)
				_ = conn.SetDeadline(time.Now().Add(time.Minute))
				for {
					if _, err := conn.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	o := kafkaTestOptions([]string{ln.Addr().String()})
	o.SendTimeout = 2 * time.Second
	o.RequestTimeout = time.Second
	e := newTestKafkaEncoder(t, o)
	r := kafkaTestFlow(1, 1)
	start := time.Now()
	n, err := newTestKafkaTransport(t, o).Send(context.Background(), [][]byte{e.AppendFlow(nil, &r)})
	if err == nil || n != 0 {
		t.Fatalf("Send to a silent broker = %d, %v", n, err)
	}
	if d := time.Since(start); d > o.SendTimeout+kafkaCloseGrace {
		t.Errorf("Send to a silent broker took %v", d)
	}
}

// When item i fails, Send returns i even though later items were
// acknowledged: they will be sent again.
func TestKafkaLeadingPrefix(t *testing.T) {
	c := newKafkaCluster(t)
	o := kafkaTestOptions(c.ListenAddrs())
	o.AlertsTopic = "no-such-topic" // kfake does not create topics here
	o.SendTimeout = 3 * time.Second
	e := newTestKafkaEncoder(t, o)
	x := &kafkaExpect{byValue: make(map[string]kafkaSent)}
	var items [][]byte
	for seq := range 20 {
		if seq == 10 {
			a := kafkaTestAlert(1, 0)
			items = append(items, e.AppendAlert(nil, &a))
			continue
		}
		r := kafkaTestFlow(1, seq)
		item := e.AppendFlow(nil, &r)
		x.add(t, item, kafkaTestFlowsTopic, len(x.items))
		items = append(items, item)
	}
	n, err := newTestKafkaTransport(t, o).Send(context.Background(), items)
	if n != 10 || err == nil {
		t.Fatalf("Send = %d, %v; want 10 and an error", n, err)
	}
	t.Logf("item 11 failed: %v", err)
	x.check(t, kafkaConsume(t, o.Brokers, len(x.byValue), []string{kafkaTestFlowsTopic}))
}

// An item that can never be sent ends the send with a *RejectedError at
// its index, after the items before it were acknowledged.
func TestKafkaRejectedItems(t *testing.T) {
	c := newKafkaCluster(t)
	o := kafkaTestOptions(c.ListenAddrs())
	tr := newTestKafkaTransport(t, o)
	e := newTestKafkaEncoder(t, o)
	x := &kafkaExpect{byValue: make(map[string]kafkaSent)}
	var good [][]byte
	for seq := range 6 {
		r := kafkaTestFlow(1, seq)
		item := e.AppendFlow(nil, &r)
		x.add(t, item, kafkaTestFlowsTopic, seq)
		good = append(good, item)
	}
	huge := e.AppendFlow(nil, &flow.Record{})
	huge = append(huge, make([]byte, 2<<20)...) // over the 1 MB batch limit
	for _, tc := range []struct {
		name  string
		items [][]byte
		want  int
	}{
		{"truncated", [][]byte{good[0], {kafkaItemV1, kafkaKindFlow, kafkaFmtJSON, 200}, good[5]}, 1},
		{"empty", [][]byte{{}, good[5]}, 0},
		{"unknown kind", [][]byte{good[1], {kafkaItemV1, 9, kafkaFmtJSON, 0, 0}}, 1},
		{"too large", [][]byte{good[2], good[3], huge, good[5]}, 2},
	} {
		n, err := tr.Send(context.Background(), tc.items)
		var rej *RejectedError
		if n != tc.want || !errors.As(err, &rej) {
			t.Errorf("%s: Send = %d, %v; want %d and a *RejectedError", tc.name, n, err, tc.want)
		}
		t.Logf("%s: %v", tc.name, err)
	}
	// The caller drops the rejected item and sends the rest.
	kafkaSendAll(t, tr, good[4:], 10)
	got := kafkaConsume(t, o.Brokers, len(good), []string{kafkaTestFlowsTopic})
	// good[5] followed the huge item in the same Send and was produced:
	// it arrives twice, as at-least-once allows. The resent copy is the
	// one in order.
	var dedup []*kgo.Record
	var fives int
	for _, r := range got {
		if _, v, _ := kafkaItemParts(good[5]); string(r.Value) == v {
			if fives++; fives == 1 {
				continue
			}
		}
		dedup = append(dedup, r)
	}
	if fives != 2 {
		t.Errorf("the item after the too large one arrived %d times, want 2", fives)
	}
	x.check(t, dedup)
}

func kafkaItemParts(item []byte) (string, string, error) {
	it, err := parseKafkaItem(item)
	return string(it.key), string(it.value), err
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
