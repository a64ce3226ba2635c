package kafka

import (
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/internal/config"
	"github.com/vigil-sensor/vigil/internal/secret"
	"github.com/vigil-sensor/vigil/internal/tlsclient"
)

// Config is one entry of export.kafka: the encoder (Records, Format,
// Key) and the transport (everything else). docs/KAFKA.md describes
// each key.
type Config struct {
	// Name is the sink's name; default kafka-N.
	Name string `yaml:"name"`
	// Brokers are the seed brokers, HOST:PORT. At least one.
	Brokers []string `yaml:"brokers"`
	// Records is what the sink carries: flows, alerts or all.
	Records string `yaml:"records"`
	// FlowsTopic receives flow records.
	FlowsTopic string `yaml:"flows_topic"`
	// AlertsTopic receives alerts. It may equal FlowsTopic: the
	// content-type header tells the kinds apart.
	AlertsTopic string `yaml:"alerts_topic"`
	// Format of record values: "json" (docs/FLOWS.md, one object, no
	// newline) or "protobuf" (export/proto/vigil.proto).
	Format string `yaml:"format"`
	// Key chooses the Kafka record key of flows, and so their partition:
	// "sensor" (the sensor's name: all of its flows in one partition, in
	// order), "src_addr" or "dst_addr" (the address as text: one host's
	// flows in one partition). Alerts are always keyed by rule and key
	// values, so one alert's start, updates and end stay in order.
	Key string `yaml:"key"`
	// ClientID is the Kafka client.id, seen in broker logs and quotas.
	ClientID string `yaml:"client_id"`
	// Compression of record batches: none, gzip, snappy, lz4 or zstd.
	Compression string `yaml:"compression"`
	// SendTimeout bounds one Send: records not acknowledged by then are
	// failed and sent again later (at least once).
	SendTimeout config.Duration `yaml:"send_timeout"`
	// RequestTimeout bounds how long a broker may take to answer one
	// produce request (the request's timeout_ms), and dialing a broker.
	RequestTimeout config.Duration `yaml:"request_timeout"`
	// TLS to the brokers, when TLS.Enabled. Its files are read at each
	// connect, so renewed certificates are picked up.
	TLS tlsclient.Config `yaml:"tls"`
	// SASL authentication.
	SASL SASLConfig `yaml:"sasl"`
}

// SASLConfig is the sasl block.
type SASLConfig struct {
	// Mechanism is "" (no SASL), plain, scram-sha-256 or scram-sha-512.
	// plain sends the password as is: use it with TLS.
	Mechanism string `yaml:"mechanism"`
	// Username to authenticate as. Required with a mechanism.
	Username string `yaml:"username"`
	// PasswordFile holds the password (read with secret.Read at each
	// connect). Required with a mechanism.
	PasswordFile string `yaml:"password_file"`
}

// Values of Config's keys.
const (
	FormatJSON     = "json"
	FormatProtobuf = "protobuf"

	KeySensor  = "sensor"
	KeySrcAddr = "src_addr"
	KeyDstAddr = "dst_addr"

	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

// DefaultConfig returns the defaults of an entry. Brokers are empty:
// they must be given.
func DefaultConfig() Config {
	return Config{
		Records:        "all",
		FlowsTopic:     "vigil-flows",
		AlertsTopic:    "vigil-alerts",
		Format:         FormatJSON,
		Key:            KeySensor,
		ClientID:       "vigil",
		Compression:    "snappy",
		SendTimeout:    config.Duration{D: 30 * time.Second},
		RequestTimeout: config.Duration{D: 10 * time.Second},
	}
}

// UnmarshalYAML decodes an entry over DefaultConfig: YAML gives a list
// element only the keys it names.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	type plain Config
	p := plain(DefaultConfig())
	if err := unmarshal(&p); err != nil {
		return err
	}
	*c = Config(p)
	return nil
}

// Validate checks the entry as the encoder and transport will use it,
// files included, at paths relative to the entry (tls.ca_file).
func (c Config) Validate() config.Problems {
	var p config.Problems
	if len(c.Brokers) == 0 {
		p.Add("brokers", "at least one broker is required")
	}
	for i, b := range c.Brokers {
		p.HostPort(fmt.Sprintf("brokers[%d]", i), b)
	}
	p.OneOf("records", c.Records, export.RecordsValues...)
	for _, k := range []struct{ key, v string }{{"flows_topic", c.FlowsTopic}, {"alerts_topic", c.AlertsTopic}, {"client_id", c.ClientID}} {
		if k.v == "" {
			p.Add(k.key, "must not be empty")
		}
	}
	if _, err := kafkaFormat(c.Format); err != nil {
		p.OneOf("format", c.Format, FormatJSON, FormatProtobuf)
	}
	if _, err := kafkaKey(c.Key); err != nil {
		p.OneOf("key", c.Key, KeySensor, KeySrcAddr, KeyDstAddr)
	}
	if _, err := kafkaCompression(c.Compression); err != nil {
		p.OneOf("compression", c.Compression, "none", "gzip", "snappy", "lz4", "zstd")
	}
	p.Duration("send_timeout", c.SendTimeout, false)
	p.Duration("request_timeout", c.RequestTimeout, false)
	p.In("tls", c.TLS.Validate())
	if set := c.TLS.Set(); !c.TLS.Enabled && len(set) > 0 {
		// TLS stays off unless asked for: a CA file alone must not
		// leave the user believing the brokers are reached over TLS.
		p.Add("tls."+set[0], "set, but tls.enabled is not true: add `enabled: true` to use TLS (without it the brokers are reached in plain text and %s ignored)", strings.Join(set, ", "))
	}
	p.In("sasl", c.SASL.validate())
	return p
}

func (s SASLConfig) validate() config.Problems {
	var p config.Problems
	if s.Mechanism == "" {
		if s.Username != "" || s.PasswordFile != "" {
			p.Add("mechanism", "is required with a username or password_file (%s, %s or %s)", SASLPlain, SASLScramSHA256, SASLScramSHA512)
		}
		return p
	}
	p.OneOf("mechanism", s.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
	if s.Username == "" {
		p.Add("username", "is required with a SASL mechanism")
	}
	if s.PasswordFile == "" {
		p.Add("password_file", "is required with a SASL mechanism: a file holding the password")
	} else if _, err := secret.Read(s.PasswordFile); err != nil {
		p.Add("password_file", "%v", err)
	}
	return p
}

func kafkaFormat(s string) (byte, error) {
	switch s {
	case FormatJSON:
		return kafkaFmtJSON, nil
	case FormatProtobuf:
		return kafkaFmtProtobuf, nil
	}
	return 0, fmt.Errorf("format: %q is not json or protobuf", s)
}

func kafkaKey(s string) (byte, error) {
	switch s {
	case KeySensor:
		return kafkaKeySensor, nil
	case KeySrcAddr:
		return kafkaKeySrc, nil
	case KeyDstAddr:
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
