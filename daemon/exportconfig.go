package daemon

import (
	"cmp"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ExportConfig is where flows and alerts go besides flows.output: extra
// JSON-lines files and the network sinks, each behind its own spool.
// Several sinks of each type can run at once.
type ExportConfig struct {
	SensorName string        `yaml:"sensor_name"` // this sensor in exports (Kafka key and header, OCSF reporter and observation point); default: the host name
	Spool      SpoolConfig   `yaml:"spool"`
	Files      []FileSink    `yaml:"files"`
	IPFIX      []IPFIXSink   `yaml:"ipfix"`
	Kafka      []KafkaSink   `yaml:"kafka"`
	Webhooks   []WebhookSink `yaml:"webhooks"`
}

// SpoolConfig is the on-disk queue every network sink sends from.
type SpoolConfig struct {
	Dir    string `yaml:"dir"`     // each sink spools in DIR/<sink name>
	MaxMiB int    `yaml:"max_mib"` // budget per sink; past it the oldest records are dropped and counted
	Fsync  string `yaml:"fsync"`   // interval (every second), always, never
}

// FileSink writes JSON lines to a file with size-based rotation.
type FileSink struct {
	Path      string `yaml:"path"`       // a file, or "-" for stdout
	Format    string `yaml:"format"`     // vigil or ocsf
	Records   string `yaml:"records"`    // flows, alerts or all
	RotateMiB int    `yaml:"rotate_mib"` // rotate past this size; 0: never
	Keep      int    `yaml:"keep"`       // rotated files kept (path.1 ... path.N)
}

// IPFIXSink exports flows as IPFIX (RFC 7011).
type IPFIXSink struct {
	Name              string   `yaml:"name"`
	Address           string   `yaml:"address"`            // collector HOST:PORT
	Transport         string   `yaml:"transport"`          // udp or tcp
	ObservationDomain uint32   `yaml:"observation_domain"` // observation domain ID
	TemplateRefresh   Duration `yaml:"template_refresh"`   // UDP: resend templates this often
	MTU               int      `yaml:"mtu"`                // UDP: largest IPFIX message, bytes
}

// KafkaSink produces flows and alerts to Kafka.
type KafkaSink struct {
	Name        string    `yaml:"name"`
	Brokers     []string  `yaml:"brokers"`
	Records     string    `yaml:"records"` // flows, alerts or all
	FlowsTopic  string    `yaml:"flows_topic"`
	AlertsTopic string    `yaml:"alerts_topic"`
	Format      string    `yaml:"format"` // json or protobuf (export/proto/vigil.proto)
	Key         string    `yaml:"key"`    // partition key of flows: sensor, src_addr or dst_addr
	ClientID    string    `yaml:"client_id"`
	Compression string    `yaml:"compression"`     // none, gzip, snappy, lz4, zstd
	SendTimeout Duration  `yaml:"send_timeout"`    // a batch not acknowledged by then is retried
	ReqTimeout  Duration  `yaml:"request_timeout"` // one produce request or dial
	TLS         TLSConfig `yaml:"tls"`
	SASL        struct {
		Mechanism    string `yaml:"mechanism"` // "", plain, scram-sha-256, scram-sha-512
		Username     string `yaml:"username"`
		PasswordFile string `yaml:"password_file"`
	} `yaml:"sasl"`
}

// TLSConfig is the client side of TLS to an upstream.
type TLSConfig struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// WebhookSink posts alerts as JSON.
type WebhookSink struct {
	Name       string            `yaml:"name"`
	URL        string            `yaml:"url"`
	Format     string            `yaml:"format"`      // vigil or ocsf
	SecretFile string            `yaml:"secret_file"` // HMAC-SHA256 key (X-Vigil-Signature); "" to not sign
	Timeout    Duration          `yaml:"timeout"`     // per request
	Headers    map[string]string `yaml:"headers"`
	TLS        TLSConfig         `yaml:"tls"`
}

// fillDefaults sets what list entries leave out: YAML gives a list
// element only the keys it names.
func (c *ExportConfig) fillDefaults() {
	for i := range c.Files {
		f := &c.Files[i]
		f.Format = cmp.Or(f.Format, "vigil")
		f.Records = cmp.Or(f.Records, "all")
	}
	for i := range c.IPFIX {
		s := &c.IPFIX[i]
		s.Transport = cmp.Or(s.Transport, "udp")
		if s.TemplateRefresh == (Duration{}) {
			s.TemplateRefresh = Duration{D: time.Minute}
		}
		s.MTU = cmp.Or(s.MTU, 1400)
	}
	for i := range c.Kafka {
		s := &c.Kafka[i]
		s.Records = cmp.Or(s.Records, "all")
		s.FlowsTopic = cmp.Or(s.FlowsTopic, "vigil-flows")
		s.AlertsTopic = cmp.Or(s.AlertsTopic, "vigil-alerts")
		s.Format = cmp.Or(s.Format, "json")
		s.Key = cmp.Or(s.Key, "sensor")
		s.ClientID = cmp.Or(s.ClientID, "vigil")
		s.Compression = cmp.Or(s.Compression, "snappy")
		if s.SendTimeout == (Duration{}) {
			s.SendTimeout = Duration{D: 30 * time.Second}
		}
		if s.ReqTimeout == (Duration{}) {
			s.ReqTimeout = Duration{D: 10 * time.Second}
		}
	}
	for i := range c.Webhooks {
		s := &c.Webhooks[i]
		s.Format = cmp.Or(s.Format, "vigil")
		if s.Timeout == (Duration{}) {
			s.Timeout = Duration{D: 5 * time.Second}
		}
	}
}

var sinkName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// sinkNames gives every network sink a name (its own, or TYPE-INDEX)
// and returns them in config order with their YAML paths.
func (c *ExportConfig) sinkNames() (names, paths []string) {
	add := func(kind string, i int, name string) {
		if name == "" {
			name = fmt.Sprintf("%s-%d", kind, i)
		}
		names = append(names, name)
		paths = append(paths, fmt.Sprintf("export.%s[%d]", kind, i))
	}
	for i, s := range c.IPFIX {
		add("ipfix", i, s.Name)
	}
	for i, s := range c.Kafka {
		add("kafka", i, s.Name)
	}
	for i, s := range c.Webhooks {
		add("webhooks", i, s.Name)
	}
	return names, paths
}

func (c *ExportConfig) validate(bad func(field, format string, args ...any)) {
	if c.Spool.MaxMiB < 1 {
		bad("export.spool.max_mib", "must be at least 1, got %d", c.Spool.MaxMiB)
	}
	if !slices.Contains([]string{"interval", "always", "never"}, c.Spool.Fsync) {
		bad("export.spool.fsync", "%q is not interval, always or never", c.Spool.Fsync)
	}
	names, paths := c.sinkNames()
	if len(names) > 0 && c.Spool.Dir == "" {
		bad("export.spool.dir", "network sinks need a spool directory")
	}
	for i, n := range names {
		if !sinkName.MatchString(n) {
			bad(paths[i]+".name", "%q is not a sink name (lower case letters, digits, _ . -)", n)
		}
		if j := slices.Index(names, n); j < i {
			bad(paths[i]+".name", "%q is also the name of %s", n, paths[j])
		}
	}
	for i, f := range c.Files {
		p := fmt.Sprintf("export.files[%d]", i)
		if f.Path == "" {
			bad(p+".path", "is required")
		}
		checkOneOf(bad, p+".format", f.Format, "vigil", "ocsf")
		checkOneOf(bad, p+".records", f.Records, "flows", "alerts", "all")
		if f.RotateMiB < 0 || f.Keep < 0 {
			bad(p, "rotate_mib and keep must not be negative")
		}
	}
	for i, s := range c.IPFIX {
		p := fmt.Sprintf("export.ipfix[%d]", i)
		checkHostPort(bad, p+".address", s.Address)
		checkOneOf(bad, p+".transport", s.Transport, "udp", "tcp")
		checkDuration(bad, p+".template_refresh", s.TemplateRefresh)
		if s.MTU < 256 || s.MTU > 65507 {
			bad(p+".mtu", "%d out of range 256..65507", s.MTU)
		}
	}
	for i, s := range c.Kafka {
		p := fmt.Sprintf("export.kafka[%d]", i)
		if len(s.Brokers) == 0 {
			bad(p+".brokers", "at least one broker is required")
		}
		for j, b := range s.Brokers {
			checkHostPort(bad, fmt.Sprintf("%s.brokers[%d]", p, j), b)
		}
		checkOneOf(bad, p+".records", s.Records, "flows", "alerts", "all")
		checkOneOf(bad, p+".format", s.Format, "json", "protobuf")
		checkOneOf(bad, p+".key", s.Key, "sensor", "src_addr", "dst_addr")
		checkOneOf(bad, p+".compression", s.Compression, "none", "gzip", "snappy", "lz4", "zstd")
		checkDuration(bad, p+".send_timeout", s.SendTimeout)
		checkDuration(bad, p+".request_timeout", s.ReqTimeout)
		if s.SASL.Mechanism != "" {
			checkOneOf(bad, p+".sasl.mechanism", s.SASL.Mechanism, "plain", "scram-sha-256", "scram-sha-512")
			if s.SASL.Username == "" {
				bad(p+".sasl.username", "is required with a SASL mechanism")
			}
		}
	}
	for i, s := range c.Webhooks {
		p := fmt.Sprintf("export.webhooks[%d]", i)
		if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(p+".url", "%q is not an http:// or https:// URL", s.URL)
		}
		checkOneOf(bad, p+".format", s.Format, "vigil", "ocsf")
		checkDuration(bad, p+".timeout", s.Timeout)
	}
}

func checkOneOf(bad func(field, format string, args ...any), field, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		bad(field, "%q is not %s", v, strings.Join(allowed, ", "))
	}
}

func checkHostPort(bad func(field, format string, args ...any), field, v string) {
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		bad(field, "%q is not HOST:PORT", v)
	}
}

func checkDuration(bad func(field, format string, args ...any), field string, d Duration) {
	switch {
	case d.Invalid() != "":
		bad(field, "%q is not a duration (examples: 15s, 1m30s, 500ms)", d.Invalid())
	case d.D <= 0:
		bad(field, "must be positive, got %s", d.D)
	}
}
