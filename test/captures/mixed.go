package captures

import (
	"net/netip"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// Vigil's default expiry timeouts (docs/FLOWS.md), which the hand-made
// captures are built around.
const (
	IdleTimeout   = 15 * time.Second
	ActiveTimeout = 60 * time.Second
	// Margin is how far every packet of the hand-made captures stays from
	// an expiry boundary of ExpectedSlices' model.
	Margin = 2 * time.Second
)

const ms = time.Millisecond

// Mixed returns the small hand-made captures that test/replay compares
// against tshark: TCP with handshake, data both ways and FIN (IPv4 and
// IPv6), a refused connection (RST), DNS-like UDP, ICMP and ICMPv6 echo,
// 802.1Q-tagged flows, IPv4 and IPv6 fragments, a flow longer than the
// active timeout and one with a gap longer than the idle timeout, in pcap
// and pcapng, on Ethernet, raw IP and Linux cooked links.
func Mixed() ([]*Capture, error) {
	makers := []func() (*Capture, error){mixedV4, mixedV6, timeouts, rawIP, sll}
	var out []*Capture
	for _, m := range makers {
		c, err := m()
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// mixedV4 is IPv4 on Ethernet in a pcap file, about 7 seconds long.
func mixedV4() (*Capture, error) {
	b := newBuilder("mixed-v4.pcap", PCAP, layers.LinkTypeEthernet, time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	cli, web := ep("192.0.2.10", 51514), ep("198.51.100.7", 80)

	b.tcp(cli, web, 0).exchange(100*ms, 7*ms, 320, 4000)

	// A refused connection: SYN, then RST from the server.
	refused := b.tcp(ep("192.0.2.10", 51600), ep("198.51.100.7", 81), 0)
	refused.send(500*ms, true, SYN, 0)
	refused.send(500*ms+400*time.Microsecond, false, RST|ACK, 0)

	// DNS: two queries from one port (a retry), one from another.
	dns := ep("198.51.100.53", 53)
	b.udp(1000*ms, ep("192.0.2.10", 53001), dns, 0, 33)
	b.udp(1400*ms, ep("192.0.2.10", 53001), dns, 0, 33)
	b.udp(1412*ms, dns, ep("192.0.2.10", 53001), 0, 120)
	b.udp(1500*ms, ep("192.0.2.10", 53002), dns, 0, 41)
	b.udp(1530*ms, dns, ep("192.0.2.10", 53002), 0, 233)

	// Ping: three echo requests, two replies.
	for i := range 3 {
		b.echo(2*time.Second+time.Duration(i)*time.Second, cli.addr, web.addr, 0x4242, uint16(i+1), 56, i != 1)
	}

	// VLAN 100: UDP both ways; VLAN 200: a TCP connection.
	v1, v2 := ep("203.0.113.5", 40000), ep("203.0.113.9", 5000)
	for i := range 5 {
		at := 5*time.Second + time.Duration(i)*100*ms
		b.udp(at, v1, v2, 100, 172)
		b.udp(at+20*ms, v2, v1, 100, 64+i)
	}
	b.tcp(ep("203.0.113.20", 45000), ep("203.0.113.21", 22), 200).exchange(5500*ms, 3*ms, 40, 1600)

	// A UDP datagram of 3000 bytes in three IPv4 fragments.
	b.udpFragmented(6*time.Second, ms, ep("192.0.2.40", 9000), ep("198.51.100.40", 9001), 3000, 1480, 0x1234)
	return b.done()
}

// mixedV6 is IPv6 on Ethernet in a pcapng file, about 5 seconds long.
func mixedV6() (*Capture, error) {
	b := newBuilder("mixed-v6.pcapng", PCAPNG, layers.LinkTypeEthernet, time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC))
	cli, web := ep("2001:db8::10", 51514), ep("2001:db8:1::7", 443)
	b.tcp(cli, web, 0).exchange(100*ms+123, 9*ms, 517, 6000)

	dns := ep("2001:db8:1::53", 53)
	b.udp(1000*ms+7, ep("2001:db8::10", 53001), dns, 0, 38)
	b.udp(1021*ms+9, dns, ep("2001:db8::10", 53001), 0, 150)
	b.udp(1100*ms, ep("2001:db8::10", 53002), dns, 0, 38)
	b.udp(1117*ms, dns, ep("2001:db8::10", 53002), 0, 96)

	for i := range 3 {
		b.echo(2*time.Second+time.Duration(i)*500*ms, cli.addr, web.addr, 0x77, uint16(i), 56, true)
	}

	// A UDP datagram of 3000 bytes in three IPv6 fragments.
	b.udpFragmented(4*time.Second, ms, ep("2001:db8::40", 9000), ep("2001:db8:1::40", 9001), 3000, 1448, 0xabcdef)

	// A VLAN-tagged IPv6 flow.
	for i := range 3 {
		b.udp(4500*ms+time.Duration(i)*10*ms, ep("2001:db8:5::1", 34000), ep("2001:db8:5::2", 4000), 300, 90)
	}
	return b.done()
}

// timeouts is a pcapng file of 200 seconds: a UDP flow both ways and an
// IPv6 TCP connection longer than the active timeout, a UDP flow with a
// gap longer than the idle timeout, and short flows that end idle while
// the capture goes on.
func timeouts() (*Capture, error) {
	b := newBuilder("timeouts.pcapng", PCAPNG, layers.LinkTypeEthernet, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))

	// Every 7 s for 196 s: slices of 9 packets at 0..56, 63..119, 126..182,
	// then 189 and 196 until the end.
	a, z := ep("192.0.2.20", 6000), ep("198.51.100.20", 6001)
	for i := range 29 {
		at := time.Duration(i) * 7 * time.Second
		b.udp(at, a, z, 0, 200)
		b.udp(at+500*ms, z, a, 0, 180)
	}

	// A TCP connection with a segment every 11 s for 176 s, then FIN.
	t := b.tcp(ep("2001:db8::20", 50000), ep("2001:db8:1::20", 8443), 0)
	t.send(1*time.Second, true, SYN, 0)
	t.send(1*time.Second+30*ms, false, SYN|ACK, 0)
	t.send(1*time.Second+60*ms, true, ACK, 0)
	for i := 1; i <= 16; i++ {
		at := time.Second + time.Duration(i)*11*time.Second
		t.send(at, true, PSH|ACK, 100+i)
		t.send(at+200*ms, false, PSH|ACK, 300+i)
	}
	t.send(178*time.Second, true, FIN|ACK, 0)
	t.send(178*time.Second+30*ms, false, FIN|ACK, 0)
	t.send(178*time.Second+60*ms, true, ACK, 0)

	// Five packets, a gap of 25.6 s, five more.
	g1, g2 := ep("192.0.2.30", 7000), ep("198.51.100.30", 7001)
	for i := range 5 {
		b.udp(10*time.Second+time.Duration(i)*100*ms, g1, g2, 0, 300)
		b.udp(36*time.Second+time.Duration(i)*100*ms, g1, g2, 0, 300)
	}

	b.tcp(ep("192.0.2.10", 40404), ep("198.51.100.7", 80), 0).exchange(2*time.Second, 5*ms, 200, 2000)
	b.echo(3*time.Second, addr("192.0.2.10"), addr("198.51.100.7"), 9, 1, 32, true)
	return b.done()
}

// rawIP is raw IPv4 and IPv6 packets (no link header) in a pcap file.
func rawIP() (*Capture, error) {
	b := newBuilder("raw-ip.pcap", PCAP, layers.LinkTypeRaw, time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC))
	b.tcp(ep("192.0.2.50", 33000), ep("198.51.100.50", 25), 0).exchange(0, 4*ms, 900, 3100)
	b.udp(1*time.Second, ep("2001:db8::50", 123), ep("2001:db8:1::50", 123), 0, 48)
	b.udp(1*time.Second+15*ms, ep("2001:db8:1::50", 123), ep("2001:db8::50", 123), 0, 48)
	b.echo(2*time.Second, addr("192.0.2.50"), addr("198.51.100.50"), 1, 1, 100, true)
	return b.done()
}

// sll is a Linux cooked capture (what `tcpdump -i any` writes).
func sll() (*Capture, error) {
	b := newBuilder("sll.pcap", PCAP, layers.LinkTypeLinuxSLL, time.Date(2026, 3, 1, 14, 0, 0, 0, time.UTC))
	b.udp(0, ep("192.0.2.60", 41000), ep("198.51.100.53", 53), 0, 29)
	b.udp(9*ms, ep("198.51.100.53", 53), ep("192.0.2.60", 41000), 0, 61)
	b.tcp(ep("2001:db8::60", 52000), ep("2001:db8:1::60", 80), 0).exchange(100*ms, 2*ms, 77, 1500)
	b.echo(1*time.Second, addr("2001:db8::60"), addr("2001:db8:1::60"), 3, 7, 16, true)
	return b.done()
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }
