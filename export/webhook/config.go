package webhook

import (
	"slices"
	"time"

	"github.com/vigil-sensor/vigil/internal/config"
	"github.com/vigil-sensor/vigil/internal/secret"
	"github.com/vigil-sensor/vigil/internal/tlsclient"
)

// Config is one entry of export.webhooks: where alerts are posted and
// how (docs/WEBHOOK.md).
type Config struct {
	Name       string            `yaml:"name"`        // the sink's name; default webhooks-N
	URL        string            `yaml:"url"`         // http:// or https:// endpoint
	Format     string            `yaml:"format"`      // vigil or ocsf
	SecretFile string            `yaml:"secret_file"` // HMAC-SHA256 key (X-Vigil-Signature); "" to not sign
	Timeout    config.Duration   `yaml:"timeout"`     // per request, response body included
	Headers    map[string]string `yaml:"headers"`     // static extra headers, e.g. Authorization
	// TLS, for an https:// URL (which always uses TLS: enabled may be
	// left out). Keys given for an http:// URL are an error.
	TLS tlsclient.Config `yaml:"tls"`
}

// DefaultConfig returns the defaults of an entry.
func DefaultConfig() Config {
	return Config{Format: FormatVigil, Timeout: config.Duration{D: 5 * time.Second}}
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

// Validate checks the entry as NewTransport will use it, files included
// (secret_file, tls), at paths relative to the entry.
func (c Config) Validate() config.Problems {
	var p config.Problems
	u, err := checkURL(c.URL)
	if err != nil {
		p.Add("url", "%q is not an http:// or https:// URL", c.URL)
	}
	p.OneOf("format", c.Format, FormatVigil, FormatOCSF)
	p.Duration("timeout", c.Timeout, false)
	names := make([]string, 0, len(c.Headers))
	for name := range c.Headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := checkHeader(name, c.Headers[name]); err != nil {
			p.Add("headers."+name, "%v", err)
		}
	}
	if c.SecretFile != "" {
		if _, err := secret.Read(c.SecretFile); err != nil {
			p.Add("secret_file", "%v", err)
		}
	}
	p.In("tls", c.TLS.Validate())
	if u != nil && u.Scheme == "http" && (c.TLS.Enabled || len(c.TLS.Set()) > 0) {
		p.Add("tls", "set for an http:// URL, which does not use TLS: use https://")
	}
	return p
}
