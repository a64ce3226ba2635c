package export

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
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
