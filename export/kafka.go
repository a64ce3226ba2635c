package export

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/vigil-sensor/vigil/flow"
)

// KafkaOptions configures the Kafka sink: the encoder (Format, Key,
// Sensor) and the transport (everything else). docs/KAFKA.md describes
// each field; the yaml names are the config keys. Zero fields take the
// defaults of DefaultKafkaOptions.
type KafkaOptions struct {
	// Brokers are the seed brokers, "host:port" (port 9092 if left out).
	// Required.
	Brokers []string `yaml:"brokers"`
	// FlowsTopic receives flow records. Default "vigil-flows".
	FlowsTopic string `yaml:"flows_topic"`
	// AlertsTopic receives alerts. Default "vigil-alerts". It may equal
	// FlowsTopic: the content-type header tells the kinds apart.
	AlertsTopic string `yaml:"alerts_topic"`
	// ClientID is the Kafka client.id, seen in broker logs and quotas.
	// Default "vigil".
	ClientID string `yaml:"client_id"`
	// Format of record values: "json" (docs/FLOWS.md, one object, no
	// newline) or "protobuf" (export/proto/vigil.proto). Default "json".
	Format string `yaml:"format"`
	// Key chooses the Kafka record key of flows, and so their partition:
	// "sensor" (Sensor: all of this sensor's flows in one partition, in
	// order), "src_addr" or "dst_addr" (the address as text: one host's
	// flows in one partition). Default "sensor". Alerts are always keyed
	// by rule and key values, so one alert's start, updates and end stay
	// in order.
	Key string `yaml:"key"`
	// Sensor names this sensor: the "sensor" header of every record, and
	// the key when Key is "sensor". Default: the host name.
	Sensor string `yaml:"sensor"`
	// Compression of record batches: "none", "gzip", "snappy", "lz4" or
	// "zstd". Default "snappy".
	Compression string `yaml:"compression"`
	// RequestTimeout bounds how long a broker may take to answer one
	// produce request (the request's timeout_ms), and dialing a broker.
	// Default 10s.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// SendTimeout bounds one Send: records not acknowledged by then are
	// failed and sent again later (at least once). Default 30s.
	SendTimeout time.Duration `yaml:"send_timeout"`
	// TLS to the brokers.
	TLS KafkaTLS `yaml:"tls"`
	// SASL authentication.
	SASL KafkaSASL `yaml:"sasl"`
}

// KafkaTLS configures TLS to the brokers. Files are read each time the
// transport connects, so renewed certificates are picked up.
type KafkaTLS struct {
	// Enable turns TLS on. The other fields require it.
	Enable bool `yaml:"enabled"`
	// CAFile is a PEM file of CA certificates that sign the brokers'
	// certificates. Empty: the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// brokers that require client certificates (mutual TLS). Both or
	// neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name checked against the brokers' certificates.
	// Empty: the host name of the broker dialed.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any broker certificate. For tests only:
	// it allows a man in the middle.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// KafkaSASL configures SASL authentication.
type KafkaSASL struct {
	// Mechanism is "" (no SASL), "PLAIN", "SCRAM-SHA-256" or
	// "SCRAM-SHA-512". PLAIN sends the password as is: use it with TLS.
	Mechanism string `yaml:"mechanism"`
	// Username to authenticate as. Required with a mechanism.
	Username string `yaml:"username"`
	// Password, or PasswordFile: a file holding it (one trailing newline
	// is ignored), read at each connect. Exactly one with a mechanism.
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// Kafka option values.
const (
	KafkaFormatJSON     = "json"
	KafkaFormatProtobuf = "protobuf"

	KafkaKeySensor  = "sensor"
	KafkaKeySrcAddr = "src_addr"
	KafkaKeyDstAddr = "dst_addr"

	KafkaSASLPlain       = "PLAIN"
	KafkaSASLScramSHA256 = "SCRAM-SHA-256"
	KafkaSASLScramSHA512 = "SCRAM-SHA-512"
)

// DefaultKafkaOptions returns the defaults. Brokers and Sensor are
// empty: Brokers must be given, and Sensor defaults to the host name
// when the encoder is made.
func DefaultKafkaOptions() KafkaOptions {
	return KafkaOptions{
		FlowsTopic:     "vigil-flows",
		AlertsTopic:    "vigil-alerts",
		ClientID:       "vigil",
		Format:         KafkaFormatJSON,
		Key:            KafkaKeySensor,
		Compression:    "snappy",
		RequestTimeout: 10 * time.Second,
		SendTimeout:    30 * time.Second,
	}
}

// withDefaults returns o with its zero fields set to the defaults.
func (o KafkaOptions) withDefaults() KafkaOptions {
	d := DefaultKafkaOptions()
	for _, f := range []struct {
		v   *string
		def string
	}{
		{&o.FlowsTopic, d.FlowsTopic}, {&o.AlertsTopic, d.AlertsTopic}, {&o.ClientID, d.ClientID},
		{&o.Format, d.Format}, {&o.Key, d.Key}, {&o.Compression, d.Compression},
	} {
		if *f.v == "" {
			*f.v = f.def
		}
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = d.RequestTimeout
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = d.SendTimeout
	}
	return o
}

// Validate reports the first problem of o (after defaults), naming the
// field by its yaml key.
func (o KafkaOptions) Validate() error {
	o = o.withDefaults()
	if len(o.Brokers) == 0 {
		return errors.New("brokers: at least one broker is needed")
	}
	for _, b := range o.Brokers {
		if strings.TrimSpace(b) == "" {
			return errors.New("brokers: empty broker address")
		}
	}
	if _, err := kafkaFormat(o.Format); err != nil {
		return err
	}
	if _, err := kafkaKey(o.Key); err != nil {
		return err
	}
	if _, err := kafkaCompression(o.Compression); err != nil {
		return err
	}
	t := o.TLS
	if !t.Enable && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify) {
		return errors.New("tls: settings given but tls.enabled is false")
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return errors.New("tls: cert_file and key_file go together")
	}
	s := o.SASL
	switch s.Mechanism {
	case "":
		if s.Username != "" || s.Password != "" || s.PasswordFile != "" {
			return errors.New("sasl.mechanism: credentials given but no mechanism")
		}
		return nil
	case KafkaSASLPlain, KafkaSASLScramSHA256, KafkaSASLScramSHA512:
	default:
		return fmt.Errorf("sasl.mechanism: %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.Mechanism)
	}
	if s.Username == "" {
		return errors.New("sasl.username: required with a mechanism")
	}
	if (s.Password == "") == (s.PasswordFile == "") {
		return errors.New("sasl: give exactly one of password and password_file")
	}
	return nil
}

func kafkaFormat(s string) (byte, error) {
	switch s {
	case KafkaFormatJSON:
		return kafkaFmtJSON, nil
	case KafkaFormatProtobuf:
		return kafkaFmtProtobuf, nil
	}
	return 0, fmt.Errorf("format: %q is not json or protobuf", s)
}

func kafkaKey(s string) (byte, error) {
	switch s {
	case KafkaKeySensor:
		return kafkaKeySensor, nil
	case KafkaKeySrcAddr:
		return kafkaKeySrc, nil
	case KafkaKeyDstAddr:
		return kafkaKeyDst, nil
	}
	return 0, fmt.Errorf("key: %q is not sensor, src_addr or dst_addr", s)
}

func kafkaCompression(s string) (kgo.CompressionCodec, error) {
	switch s {
	case "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("compression: %q is not none, gzip, snappy, lz4 or zstd", s)
}

// A Kafka spool item is self-contained, so that it can be sent after a
// restart with other options:
//
//	byte 0     item version, 1
//	byte 1     kind: 1 flow, 2 alert (picks the topic)
//	byte 2     format: 1 JSON, 2 protobuf (picks the content-type header)
//	uvarint    length of the sensor name, then the name
//	uvarint    length of the record key, then the key
//	rest       the record value
const (
	kafkaItemV1 = 1

	kafkaKindFlow  = 1
	kafkaKindAlert = 2

	kafkaFmtJSON     = 1
	kafkaFmtProtobuf = 2

	kafkaKeySensor = 1
	kafkaKeySrc    = 2
	kafkaKeyDst    = 3
)

// KafkaEncoder makes Kafka spool items of flows and alerts. It is not
// safe for concurrent use.
type KafkaEncoder struct {
	format byte
	key    byte
	sensor string
	ifname func(uint32) string
}

// NewKafkaEncoder returns an encoder for o.Format, o.Key and o.Sensor
// (the host name when empty). ifname names interfaces by index for the
// "interface" field; it may be nil.
func NewKafkaEncoder(o KafkaOptions, ifname func(uint32) string) (*KafkaEncoder, error) {
	o = o.withDefaults()
	format, err := kafkaFormat(o.Format)
	if err != nil {
		return nil, err
	}
	key, err := kafkaKey(o.Key)
	if err != nil {
		return nil, err
	}
	sensor := o.Sensor
	if sensor == "" {
		if sensor, err = os.Hostname(); err != nil || sensor == "" {
			return nil, fmt.Errorf("sensor: not set and no host name: %v", err)
		}
	}
	return &KafkaEncoder{format: format, key: key, sensor: sensor, ifname: ifname}, nil
}

// Kinds returns flows and alerts.
func (e *KafkaEncoder) Kinds() Kinds { return KindFlows | KindAlerts }

// AppendFlow appends one item for r to dst.
func (e *KafkaEncoder) AppendFlow(dst []byte, r *flow.Record) []byte {
	dst = append(dst, kafkaItemV1, kafkaKindFlow, e.format)
	dst = binary.AppendUvarint(dst, uint64(len(e.sensor)))
	dst = append(dst, e.sensor...)
	switch e.key {
	case kafkaKeySensor:
		dst = binary.AppendUvarint(dst, uint64(len(e.sensor)))
		dst = append(dst, e.sensor...)
	default:
		addr := r.Key.Src()
		if e.key == kafkaKeyDst {
			addr = r.Key.Dst()
		}
		// An address as text is at most 45 bytes: its length is one byte.
		at := len(dst)
		dst = addr.AppendTo(append(dst, 0))
		dst[at] = byte(len(dst) - at - 1)
	}
	if e.format == kafkaFmtProtobuf {
		return AppendFlowProto(dst, r, e.ifname)
	}
	return AppendFlowJSON(dst, r, e.ifname)
}

// AppendAlert appends one item for a to dst. Its key is the rule and the
// alert's key values, "rule/name=value/name=value".
func (e *KafkaEncoder) AppendAlert(dst []byte, a *flow.Alert) []byte {
	dst = append(dst, kafkaItemV1, kafkaKindAlert, e.format)
	dst = binary.AppendUvarint(dst, uint64(len(e.sensor)))
	dst = append(dst, e.sensor...)
	n := len(a.Rule)
	for _, kv := range a.Key {
		n += 2 + len(kv.Name) + len(kv.Value)
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = append(dst, a.Rule...)
	for _, kv := range a.Key {
		dst = append(dst, '/')
		dst = append(dst, kv.Name...)
		dst = append(dst, '=')
		dst = append(dst, kv.Value...)
	}
	if e.format == kafkaFmtProtobuf {
		return AppendAlertProto(dst, a)
	}
	return AppendAlertJSON(dst, a)
}

// kafkaItem is a parsed spool item; its slices point into the item.
type kafkaItem struct {
	kind, format byte
	sensor, key  []byte
	value        []byte
}

func parseKafkaItem(b []byte) (kafkaItem, error) {
	var it kafkaItem
	if len(b) < 3 || b[0] != kafkaItemV1 {
		return it, errors.New("not a version 1 kafka item")
	}
	it.kind, it.format = b[1], b[2]
	if it.kind != kafkaKindFlow && it.kind != kafkaKindAlert {
		return it, fmt.Errorf("unknown kind %d", it.kind)
	}
	if it.format != kafkaFmtJSON && it.format != kafkaFmtProtobuf {
		return it, fmt.Errorf("unknown format %d", it.format)
	}
	rest := b[3:]
	for _, f := range []*[]byte{&it.sensor, &it.key} {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return it, errors.New("truncated kafka item")
		}
		*f, rest = rest[w:w+int(n)], rest[w+int(n):]
	}
	it.value = rest
	return it, nil
}

// content-type header values, by kind and format.
var kafkaContentTypes = [3][3][]byte{
	kafkaKindFlow: {
		kafkaFmtJSON:     []byte("application/json"),
		kafkaFmtProtobuf: []byte("application/x-protobuf; messageType=vigil.v1.Flow"),
	},
	kafkaKindAlert: {
		kafkaFmtJSON:     []byte("application/json"),
		kafkaFmtProtobuf: []byte("application/x-protobuf; messageType=vigil.v1.Alert"),
	},
}

// KafkaTransport produces spool items of a KafkaEncoder to Kafka with
// one franz-go client: idempotent, acks from all in-sync replicas. Send
// is not safe for concurrent use; Close may be called at any time.
type KafkaTransport struct {
	opts  KafkaOptions
	codec kgo.CompressionCodec
	log   *slog.Logger

	mu sync.Mutex
	cl *kgo.Client

	// Reused by each Send.
	recs []kgo.Record
	hdrs []kgo.RecordHeader
	errs []error
}

// kafkaCloseGrace bounds the wait for a closed client to fail the
// records it still holds.
const kafkaCloseGrace = 10 * time.Second

// NewKafkaTransport checks o and returns a transport. It connects at the
// first Send. log may be nil.
func NewKafkaTransport(o KafkaOptions, log *slog.Logger) (*KafkaTransport, error) {
	o = o.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	codec, _ := kafkaCompression(o.Compression)
	if log == nil {
		log = slog.Default()
	}
	t := &KafkaTransport{opts: o, codec: codec, log: log.With("transport", "kafka")}
	if _, err := t.clientOpts(); err != nil { // unreadable files fail now, not at the first Send
		return nil, err
	}
	return t, nil
}

// Send produces items in order and waits for their acknowledgements. It
// returns the number of leading items acknowledged: if item i failed, i,
// even when later items were acknowledged (they are sent again: at least
// once). It returns within SendTimeout or when ctx is done; records still
// in flight then are abandoned by closing the client, and the next Send
// connects again. An item that can never be sent (unreadable, or too
// large for the brokers) ends the send with a *RejectedError: Send
// returns its index, and the caller drops it.
func (t *KafkaTransport) Send(ctx context.Context, items [][]byte) (int, error) {
	if len(items) == 0 {
		return 0, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("kafka send: %w", err)
	}
	cl, err := t.client()
	if err != nil {
		return 0, err
	}
	n := len(items)
	if cap(t.recs) < n {
		t.recs = make([]kgo.Record, n)
		t.hdrs = make([]kgo.RecordHeader, 2*n)
		t.errs = make([]error, n)
	}
	recs, hdrs, errs := t.recs[:n], t.hdrs[:2*n], t.errs[:n]
	clear(errs)
	b := &kafkaBatch{errs: errs, done: make(chan struct{})}
	b.pending.Store(int64(n))

	sendCtx, cancel := context.WithTimeout(ctx, t.opts.SendTimeout)
	defer cancel()
	var rejected error
	for i, item := range items {
		it, err := parseKafkaItem(item)
		if err != nil {
			// Stop here: the items before it go out, the caller
			// drops this one (a damaged spool) and sends the rest.
			rejected = &RejectedError{Err: fmt.Errorf("unreadable kafka spool item %d: %w", i+1, err)}
			for j := i; j < n; j++ {
				b.finish(j, errKafkaNotSent)
			}
			break
		}
		h := hdrs[2*i : 2*i : 2*i+2]
		h = append(h, kgo.RecordHeader{Key: "content-type", Value: kafkaContentTypes[it.kind][it.format]})
		if len(it.sensor) > 0 {
			h = append(h, kgo.RecordHeader{Key: "sensor", Value: it.sensor})
		}
		topic := t.opts.FlowsTopic
		if it.kind == kafkaKindAlert {
			topic = t.opts.AlertsTopic
		}
		recs[i] = kgo.Record{Topic: topic, Key: it.key, Value: it.value, Headers: h}
		cl.Produce(sendCtx, &recs[i], func(_ *kgo.Record, err error) { b.finish(i, err) })
	}

	// Flush skips the linger: the batch is complete.
	if err := cl.Flush(sendCtx); err == nil {
		select {
		case <-b.done:
		case <-sendCtx.Done():
		}
	}
	select {
	case <-b.done:
	default:
		// kgo cannot fail records already sent in a request (the
		// idempotent sequence would break), so stop waiting for them:
		// closing the client fails them all.
		t.drop(cl)
		select {
		case <-b.done:
		case <-time.After(kafkaCloseGrace):
			// Leave the records to the closed client, not to the next Send.
			t.recs, t.hdrs, t.errs = nil, nil, nil
			return 0, fmt.Errorf("kafka send: records not released %v after closing the client: %w", kafkaCloseGrace, context.Cause(sendCtx))
		}
	}
	// Records must not point into items after Send returns.
	clear(recs)
	clear(hdrs)
	return t.result(ctx, sendCtx, cl, errs, rejected)
}

// errKafkaNotSent marks the items after an unreadable one.
var errKafkaNotSent = errors.New("not sent")

// result turns the records' outcomes into Send's results.
func (t *KafkaTransport) result(ctx, sendCtx context.Context, cl *kgo.Client, errs []error, rejected error) (int, error) {
	n := len(errs)
	for i, err := range errs {
		if err == nil {
			continue
		}
		if err == errKafkaNotSent {
			return i, rejected
		}
		failed := 0
		for _, e := range errs[i:] {
			if e != nil && e != errKafkaNotSent {
				failed++
			}
		}
		err = fmt.Errorf("kafka: producing item %d of %d (%d not acknowledged): %w", i+1, n, failed, err)
		if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) || errors.Is(err, kerr.InvalidRecord) {
			return i, &RejectedError{Err: err} // sending it again would fail again
		}
		t.drop(cl) // start afresh at the next Send
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", err, ctx.Err())
		} else if sendCtx.Err() != nil {
			err = fmt.Errorf("%w (send_timeout %v)", err, t.opts.SendTimeout)
		}
		return i, err
	}
	return n, nil
}

type kafkaBatch struct {
	errs    []error
	pending atomic.Int64
	done    chan struct{}
}

func (b *kafkaBatch) finish(i int, err error) {
	b.errs[i] = err
	if b.pending.Add(-1) == 0 {
		close(b.done)
	}
}

// Close closes the client. A later Send connects again.
func (t *KafkaTransport) Close() error {
	t.mu.Lock()
	cl := t.cl
	t.cl = nil
	t.mu.Unlock()
	if cl != nil {
		cl.Close()
	}
	return nil
}

// drop closes cl if it is still the transport's client.
func (t *KafkaTransport) drop(cl *kgo.Client) {
	t.mu.Lock()
	if t.cl == cl {
		t.cl = nil
	}
	t.mu.Unlock()
	cl.Close()
}

func (t *KafkaTransport) client() (*kgo.Client, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cl != nil {
		return t.cl, nil
	}
	opts, err := t.clientOpts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	t.cl = cl
	return cl, nil
}

func (t *KafkaTransport) clientOpts() ([]kgo.Opt, error) {
	o := &t.opts
	opts := []kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.ClientID(o.ClientID),
		kgo.WithLogger(kgoLogger{t.log}),
		kgo.RequiredAcks(kgo.AllISRAcks()),                   // needed by the idempotent producer, which kgo enables by default
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), // murmur2 of the key, as Kafka's Java client
		kgo.ProducerBatchCompression(t.codec),
		kgo.ProduceRequestTimeout(o.RequestTimeout),
		kgo.DialTimeout(o.RequestTimeout),
		kgo.RecordDeliveryTimeout(o.SendTimeout),
	}
	if o.TLS.Enable {
		cfg, err := o.TLS.config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if o.SASL.Mechanism != "" {
		m, err := o.SASL.mechanism()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func (c *KafkaTLS) config() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // an explicit option, documented as for tests
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file: no PEM certificate in %s", c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file, tls.key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (s *KafkaSASL) mechanism() (sasl.Mechanism, error) {
	pass := s.Password
	if s.PasswordFile != "" {
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("sasl.password_file: %w", err)
		}
		pass = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	}
	switch s.Mechanism {
	case KafkaSASLPlain:
		return plain.Auth{User: s.Username, Pass: pass}.AsMechanism(), nil
	case KafkaSASLScramSHA256:
		return scram.Auth{User: s.Username, Pass: pass}.AsSha256Mechanism(), nil
	case KafkaSASLScramSHA512:
		return scram.Auth{User: s.Username, Pass: pass}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("sasl.mechanism: %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.Mechanism)
}

// kgoLogger passes franz-go's logs to slog: its errors, and its info
// and warnings when slog logs debug. Its warnings come with every
// reconnect attempt; the sink logs an outage once.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel {
	if k.l.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelInfo
	}
	return kgo.LogLevelError
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lvl = slog.LevelError
	case kgo.LogLevelWarn:
		lvl = slog.LevelWarn
	}
	k.l.Log(context.Background(), lvl, msg, keyvals...)
}
