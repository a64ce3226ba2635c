package ipfix

import (
	"time"

	"github.com/vigil-sensor/vigil/internal/config"
)

// Config is one entry of export.ipfix: a collector and how to send to
// it (docs/IPFIX.md).
type Config struct {
	Name              string          `yaml:"name"`               // the sink's name; default ipfix-N
	Address           string          `yaml:"address"`            // collector HOST:PORT
	Transport         string          `yaml:"transport"`          // udp or tcp
	ObservationDomain uint32          `yaml:"observation_domain"` // observation domain ID
	TemplateRefresh   config.Duration `yaml:"template_refresh"`   // UDP: resend templates this often
	MTU               int             `yaml:"mtu"`                // UDP: largest IPFIX message, bytes
}

// DefaultConfig returns the defaults of an entry.
func DefaultConfig() Config {
	return Config{Transport: "udp", TemplateRefresh: config.Duration{D: time.Minute}, MTU: 1400}
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

// Validate checks the entry, at paths relative to it.
func (c Config) Validate() config.Problems {
	var p config.Problems
	p.HostPort("address", c.Address)
	p.OneOf("transport", c.Transport, "udp", "tcp")
	p.Duration("template_refresh", c.TemplateRefresh, false)
	// The templates and a record fit in 512 bytes; 65507 is the largest
	// UDP payload over IPv4.
	if c.MTU < ipfixMinMessage || c.MTU > 65507 {
		p.Add("mtu", "%d out of range %d..65507", c.MTU, ipfixMinMessage)
	}
	return p
}
