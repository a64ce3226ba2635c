package sampler

import (
	"net"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

// The default interfaces are those carrying a default route, IPv4 or
// IPv6; an interface with only connected routes is not one of them.
func TestPrivDefaultRouteInterfaces(t *testing.T) {
	testutil.RequirePrivileged(t)
	lab := netlab.New(t)
	if err := lab.AddVeth("vside", "vsidepeer", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := lab.Up("vside", "vsidepeer"); err != nil {
		t.Fatal(err)
	}
	var before, after []string
	err := lab.Sensor.Do(func() error {
		var err error
		if before, err = DefaultRouteInterfaces(); err != nil {
			return err
		}
		l, err := netlink.LinkByName(netlab.SensorIf)
		if err != nil {
			return err
		}
		gw := net.IP(netlab.PeerIPv4.AsSlice())
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw}); err != nil {
			return err
		}
		after, err = DefaultRouteInterfaces()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 0 {
		t.Errorf("before any default route: %v, want none", before)
	}
	if !slices.Equal(after, []string{netlab.SensorIf}) {
		t.Errorf("with a default route via %s: %v, want [%s]", netlab.SensorIf, after, netlab.SensorIf)
	}
}
