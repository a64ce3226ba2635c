package tlsclient

import (
	"crypto/tls"
	"slices"
	"testing"
)

// testdata holds a CA and a client certificate it signs, valid for a
// century (openssl, P-256).
const (
	caFile   = "testdata/ca.pem"
	certFile = "testdata/client.pem"
	keyFile  = "testdata/client.key"
)

func TestBuild(t *testing.T) {
	c := Config{Enabled: true, CAFile: caFile, CertFile: certFile, KeyFile: keyFile, ServerName: "kafka.example"}
	if p := c.Validate(); len(p) > 0 {
		t.Fatalf("Validate: %v", p)
	}
	cfg, err := c.Build()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || cfg.ServerName != "kafka.example" || cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.InsecureSkipVerify {
		t.Errorf("config %+v", cfg)
	}
	if cfg, err := (Config{}).Build(); err != nil || cfg.RootCAs != nil || cfg.Certificates != nil {
		t.Errorf("empty block: %+v, %v", cfg, err)
	}
}

// Validate rejects exactly what Build rejects, at the key to fix.
func TestValidateAgreesWithBuild(t *testing.T) {
	for _, tc := range []struct {
		c     Config
		field string
	}{
		{Config{CAFile: "testdata/missing.pem"}, "ca_file"},
		{Config{CAFile: keyFile}, "ca_file"}, // no certificate in it
		{Config{CertFile: certFile}, "key_file"},
		{Config{KeyFile: keyFile}, "cert_file"},
		{Config{CertFile: caFile, KeyFile: keyFile}, "cert_file"}, // not the key's certificate
		{Config{CertFile: certFile, KeyFile: "testdata/missing.key"}, "cert_file"},
	} {
		p := tc.c.Validate()
		if len(p) != 1 || p[0].Field != tc.field {
			t.Errorf("%+v: problems %v, want one at %s", tc.c, p, tc.field)
		}
		if _, err := tc.c.Build(); err == nil {
			t.Errorf("%+v: Build accepted what Validate rejects", tc.c)
		}
	}
}

func TestSet(t *testing.T) {
	if s := (Config{Enabled: true}).Set(); len(s) != 0 {
		t.Errorf("enabled alone: %v", s)
	}
	got := Config{CAFile: "a", ServerName: "b", InsecureSkipVerify: true}.Set()
	if want := []string{"ca_file", "server_name", "insecure_skip_verify"}; !slices.Equal(got, want) {
		t.Errorf("Set() = %v, want %v", got, want)
	}
}
