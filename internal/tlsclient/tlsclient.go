// Package tlsclient is the client side of TLS to an upstream (Kafka
// brokers, webhook receivers): one configuration block, checked and
// built the same way for every component that has a `tls` key.
package tlsclient

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/vigil-sensor/vigil/internal/config"
)

// Config is a `tls` block. Files are read by Build, each time it is
// called, so a component that builds at each connect picks up renewed
// certificates. Relative paths are relative to the working directory.
type Config struct {
	// Enabled turns TLS on where the component does not decide it
	// otherwise (a webhook's https:// URL does).
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM file of the CAs that sign the server's
	// certificate. Empty: the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key,
	// for mutual TLS. Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name checked against the server's certificate
	// and sent as SNI. Empty: the host dialed.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any server certificate. For tests and
	// labs only: it allows a man in the middle.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Set returns the keys given besides enabled, in the block's order: the
// settings that mean nothing while TLS is off.
func (c Config) Set() []string {
	var keys []string
	for _, k := range []struct {
		key string
		set bool
	}{
		{"ca_file", c.CAFile != ""}, {"cert_file", c.CertFile != ""}, {"key_file", c.KeyFile != ""},
		{"server_name", c.ServerName != ""}, {"insecure_skip_verify", c.InsecureSkipVerify},
	} {
		if k.set {
			keys = append(keys, k.key)
		}
	}
	return keys
}

// Validate checks the block as Build would use it, files included (they
// must exist, be readable and hold what they should), at paths relative
// to the block (ca_file).
func (c Config) Validate() config.Problems {
	var p config.Problems
	switch {
	case c.CertFile != "" && c.KeyFile == "":
		p.Add("key_file", "is required with cert_file")
	case c.CertFile == "" && c.KeyFile != "":
		p.Add("cert_file", "is required with key_file")
	case c.CertFile != "":
		if _, err := c.certificate(); err != nil {
			p.Add("cert_file", "%v", err)
		}
	}
	if c.CAFile != "" {
		if _, err := c.roots(); err != nil {
			p.Add("ca_file", "%v", err)
		}
	}
	return p
}

// Build returns the client configuration: TLS 1.2 or later, the roots
// and client certificate read from their files now.
func (c Config) Build() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // an explicit option, documented as for tests
	}
	if c.CAFile != "" {
		pool, err := c.roots()
		if err != nil {
			return nil, fmt.Errorf("tls ca_file: %w", err)
		}
		cfg.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, fmt.Errorf("tls cert_file and key_file: give both or neither")
	}
	if c.CertFile != "" {
		cert, err := c.certificate()
		if err != nil {
			return nil, fmt.Errorf("tls cert_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (c Config) roots() (*x509.CertPool, error) {
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %s", c.CAFile)
	}
	return pool, nil
}

func (c Config) certificate() (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("loading %s and %s: %w", c.CertFile, c.KeyFile, err)
	}
	return cert, nil
}
