package ipfix

import (
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/vigil-sensor/vigil/export"
)

// An entry that names only its address gets every other default, and
// the transport follows the keys.
func TestConfigDefaultsAndTransport(t *testing.T) {
	var cs []Config
	if err := yaml.UnmarshalWithOptions([]byte("- {address: \"192.0.2.1:4739\"}\n- {address: \"192.0.2.2:4739\", transport: tcp, mtu: 9000, observation_domain: 3}\n"), &cs, yaml.DisallowUnknownField()); err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Address = "192.0.2.1:4739"
	if cs[0] != want {
		t.Errorf("entry %+v, want %+v", cs[0], want)
	}
	for _, c := range cs {
		if p := c.Validate(); len(p) > 0 {
			t.Errorf("%+v: %v", c, p)
		}
	}
	udp, tcp := NewTransport(cs[0], exportDeps), NewTransport(cs[1], exportDeps)
	if udp.network != "udp" || udp.opt.MaxMessageSize != 1400 || udp.opt.TemplateRefresh != want.TemplateRefresh.D {
		t.Errorf("udp transport %s %+v", udp.network, udp.opt)
	}
	if tcp.network != "tcp" || tcp.opt.MaxMessageSize != 65535 || tcp.opt.ObservationDomainID != 3 {
		t.Errorf("tcp transport %s %+v", tcp.network, tcp.opt)
	}
	for _, bad := range []func(*Config){
		func(c *Config) { c.Address = "192.0.2.1" },
		func(c *Config) { c.Transport = "sctp" },
		func(c *Config) { c.MTU = 511 },
		func(c *Config) { c.MTU = 65508 },
		func(c *Config) { c.TemplateRefresh.D = 0 },
	} {
		c := cs[0]
		bad(&c)
		if p := c.Validate(); len(p) != 1 {
			t.Errorf("%+v: problems %v, want one", c, p)
		}
	}
}

var exportDeps = export.Dependencies{}
