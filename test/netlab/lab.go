package netlab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Names and addresses of the lab's veth pair. Every lab has its own
// namespaces, so every lab can use the same ones.
const (
	SensorIf = "vsensor" // the end the sensor watches (receives traffic)
	PeerIf   = "vpeer"   // the end traffic comes from
)

var (
	SensorIPv4 = netip.MustParseAddr("10.99.0.1")
	PeerIPv4   = netip.MustParseAddr("10.99.0.2")
	SensorIPv6 = netip.MustParseAddr("fd00:99::1")
	PeerIPv6   = netip.MustParseAddr("fd00:99::2")
	SensorMAC  = net.HardwareAddr{0x02, 0x00, 0x00, 0x99, 0x00, 0x01}
	PeerMAC    = net.HardwareAddr{0x02, 0x00, 0x00, 0x99, 0x00, 0x02}
)

// Lab is two network namespaces joined by a veth pair: SensorIf in
// Sensor, PeerIf in Peer, both up, with IPv4 /24 and IPv6 /64 addresses
// and permanent neighbour entries for each other (no ARP or ND traffic).
// IPv6 DAD and router solicitations are off, so addresses are usable at
// once and the kernel stays mostly quiet; it may still send a few MLD
// reports of its own.
type Lab struct {
	Sensor *Namespace
	Peer   *Namespace
}

// New builds a lab and registers its removal with t.Cleanup. It fails
// the test if any step fails.
func New(t testing.TB) *Lab {
	t.Helper()
	l, err := build(t.Name())
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.close(); err != nil {
			t.Errorf("netlab cleanup: %v", err)
		}
	})
	return l
}

func build(test string) (l *Lab, err error) {
	l = &Lab{}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.close())
		}
	}()
	if l.Sensor, err = newNamespace(uniqueName(test, "s")); err != nil {
		return l, err
	}
	if l.Peer, err = newNamespace(uniqueName(test, "p")); err != nil {
		return l, err
	}
	if err := l.AddVeth(SensorIf, PeerIf, SensorMAC, PeerMAC); err != nil {
		return l, err
	}
	ends := []struct {
		ns       *Namespace
		ifname   string
		v4, v6   netip.Addr
		otherV4  netip.Addr
		otherV6  netip.Addr
		otherMAC net.HardwareAddr
	}{
		{l.Sensor, SensorIf, SensorIPv4, SensorIPv6, PeerIPv4, PeerIPv6, PeerMAC},
		{l.Peer, PeerIf, PeerIPv4, PeerIPv6, SensorIPv4, SensorIPv6, SensorMAC},
	}
	for _, e := range ends {
		link, err := e.ns.Link(e.ifname)
		if err != nil {
			return l, err
		}
		for _, a := range []struct {
			ip   netip.Addr
			bits int
		}{{e.v4, 24}, {e.v6, 64}} {
			addr := &netlink.Addr{
				IPNet: &net.IPNet{IP: a.ip.AsSlice(), Mask: net.CIDRMask(a.bits, a.ip.BitLen())},
				Flags: unix.IFA_F_NODAD,
			}
			if err := e.ns.nl.AddrAdd(link, addr); err != nil {
				return l, fmt.Errorf("adding %s to %s in %s: %w", addr.IPNet, e.ifname, e.ns.Name, err)
			}
		}
		for _, ip := range []netip.Addr{e.otherV4, e.otherV6} {
			fam := netlink.FAMILY_V4
			if ip.Is6() {
				fam = netlink.FAMILY_V6
			}
			n := &netlink.Neigh{
				LinkIndex:    link.Attrs().Index,
				Family:       fam,
				State:        netlink.NUD_PERMANENT,
				IP:           ip.AsSlice(),
				HardwareAddr: e.otherMAC,
			}
			if err := e.ns.nl.NeighAdd(n); err != nil {
				return l, fmt.Errorf("neighbour %s on %s in %s: %w", ip, e.ifname, e.ns.Name, err)
			}
		}
	}
	if err := l.up(SensorIf, PeerIf); err != nil {
		return l, err
	}
	return l, nil
}

// AddVeth creates a veth pair with sensorName in Sensor and peerName in
// Peer (MACs may be nil for random ones), turns IPv6 DAD and router
// solicitations off on both ends, and leaves them down. Tests use it to
// make interfaces appear under a given name; Up brings them up.
func (l *Lab) AddVeth(sensorName, peerName string, sensorMAC, peerMAC net.HardwareAddr) error {
	v := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: sensorName, HardwareAddr: sensorMAC},
		PeerName:         peerName,
		PeerHardwareAddr: peerMAC,
		PeerNamespace:    netlink.NsFd(l.Peer.h),
	}
	if err := l.Sensor.nl.LinkAdd(v); err != nil {
		return fmt.Errorf("creating veth %s/%s: %w", sensorName, peerName, err)
	}
	for _, e := range []struct {
		ns   *Namespace
		name string
	}{{l.Sensor, sensorName}, {l.Peer, peerName}} {
		for _, kv := range [][2]string{{"accept_dad", "0"}, {"router_solicitations", "0"}} {
			if err := e.ns.Sysctl("net/ipv6/conf/"+e.name+"/"+kv[0], kv[1]); err != nil {
				return err
			}
		}
	}
	return nil
}

// Up brings up a veth pair created by AddVeth and waits until both ends
// are operationally up (before that the kernel drops what is sent).
func (l *Lab) Up(sensorName, peerName string) error {
	return l.up(sensorName, peerName)
}

func (l *Lab) up(sensorName, peerName string) error {
	ends := []struct {
		ns   *Namespace
		name string
	}{{l.Sensor, sensorName}, {l.Peer, peerName}}
	for _, e := range ends {
		link, err := e.ns.Link(e.name)
		if err != nil {
			return err
		}
		if err := e.ns.nl.LinkSetUp(link); err != nil {
			return fmt.Errorf("setting %s up in %s: %w", e.name, e.ns.Name, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, e := range ends {
		for {
			link, err := e.ns.Link(e.name)
			if err != nil {
				return err
			}
			if link.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s in %s not up after 5s (state %s)", e.name, e.ns.Name, link.Attrs().OperState)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

func (l *Lab) close() error {
	var errs []error
	if l.Sensor != nil {
		// Deleting one end removes the pair; a missing link is fine.
		if _, err := l.Sensor.Link(SensorIf); err == nil {
			if err := l.Sensor.DeleteLink(SensorIf); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, l.Sensor.close())
	}
	if l.Peer != nil {
		errs = append(errs, l.Peer.close())
	}
	return errors.Join(errs...)
}
