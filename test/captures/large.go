package captures

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// LargeConfig shapes a synthetic capture for benchmarks.
type LargeConfig struct {
	Packets int   // exact number of packets
	Flows   int   // exact number of conversations (distinct 5-tuples, both ways)
	Seed    int64 // same seed, same bytes
	// Duration bounds the capture time: every packet falls within
	// Duration of the first (default 300 s).
	Duration time.Duration
	// IPv6 and UDP are the shares of conversations that are IPv6 and UDP
	// (defaults 0.1 and 0.3); the rest is IPv4 and TCP.
	IPv6, UDP float64
	// Keys, when set, makes Large return per-key totals (costs memory).
	Keys bool
}

// KeyStats are one unidirectional key's totals in a large capture.
type KeyStats struct {
	Packets, Bytes uint64
	BytesSquared   uint64 // sum of squared frame lengths, for variances
}

// LargeStats is what Large wrote.
type LargeStats struct {
	Packets, Bytes uint64
	BytesSquared   uint64
	Conversations  int // 5-tuples, both directions together
	Unidirectional int // unidirectional keys with at least one packet
	IPv6, UDP      int // conversations that are IPv6, UDP
	MaxFlowPackets int // packets in the largest conversation
	Start, End     time.Time
	Keys           map[Key]KeyStats `json:"-"` // only with LargeConfig.Keys
}

// Large writes a pcap (Ethernet, microsecond timestamps) of
// cfg.Packets packets in cfg.Flows conversations. Conversation sizes are
// heavy-tailed (Pareto, shape 1.1, at least one packet each), starts are
// uniform over the duration, packet gaps within a conversation are
// exponential around a per-conversation mean drawn log-uniformly between
// 1 ms and 5 s, squeezed so that the conversation ends by the end of the
// capture (a conversation squeezed into the last microseconds may spill
// over by a microsecond a packet). TCP conversations open with a handshake, carry data mostly
// from the server, and close with FIN from both sides (some with a RST);
// UDP ones are request/response or one-way. Every conversation has its
// own client address and port, so conversations and 5-tuples are the
// same thing, and some last longer than Vigil's active timeout or pause
// longer than its idle timeout.
func Large(w io.Writer, cfg LargeConfig) (*LargeStats, error) {
	if cfg.Flows <= 0 || cfg.Packets < cfg.Flows {
		return nil, fmt.Errorf("want 0 < flows (%d) <= packets (%d)", cfg.Flows, cfg.Packets)
	}
	if cfg.Flows > 4096*55000 {
		return nil, fmt.Errorf("at most %d flows", 4096*55000)
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 300 * time.Second
	}
	if cfg.IPv6 == 0 {
		cfg.IPv6 = 0.1
	}
	if cfg.UDP == 0 {
		cfg.UDP = 0.3
	}
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6c61726765))

	// Conversation sizes: Pareto weights scaled to the packet budget.
	sizes := make([]int, cfg.Flows)
	weights := make([]float64, cfg.Flows)
	var sum float64
	for i := range weights {
		u := 1 - rng.Float64() // (0, 1]
		weights[i] = min(math.Pow(u, -1/1.1), 1e6)
		sum += weights[i]
	}
	extra := cfg.Packets - cfg.Flows
	left := extra
	for i, wt := range weights {
		n := int(wt / sum * float64(extra))
		sizes[i] = 1 + n
		left -= n
	}
	for i := 0; left > 0; i = (i + 1) % cfg.Flows {
		sizes[i]++
		left--
	}

	type conv struct {
		cli, srv   netip.Addr
		cport      uint16
		sport      uint16
		udp        bool
		oneWay     bool
		rst        bool
		cseq, sseq uint32
	}
	convs := make([]conv, cfg.Flows)
	// One entry per packet: when, which conversation, its direction,
	// flags and payload size, sorted by time before writing.
	type entry struct {
		t     int64 // microseconds from the start
		conv  int32
		size  uint16
		flags uint8
		toSrv bool
	}
	entries := make([]entry, 0, cfg.Packets)
	durUS := cfg.Duration.Microseconds()
	stats := &LargeStats{Conversations: cfg.Flows}
	tcpPorts := []uint16{443, 443, 443, 80, 80, 22, 8080, 993, 5432, 3306}
	udpPorts := []uint16{53, 53, 53, 123, 443, 514, 5060, 1194, 4500, 161}
	var times []float64
	for f := range convs {
		c := &convs[f]
		c.udp = rng.Float64() < cfg.UDP
		v6 := rng.Float64() < cfg.IPv6
		host := uint32(f % 4096)
		c.cport = uint16(10000 + f/4096)
		srv := uint32(math.Min(math.Pow(1-rng.Float64(), -1.5), 2000)) // a few servers get most conversations
		if v6 {
			stats.IPv6++
			c.cli = addr6(0x20010db8_000c0000, host)
			c.srv = addr6(0x20010db8_00050000, srv)
		} else {
			c.cli = addr4(198<<24|18<<16, host)
			c.srv = addr4(198<<24|19<<16, srv)
		}
		if c.udp {
			stats.UDP++
			c.sport = udpPorts[rng.IntN(len(udpPorts))]
			c.oneWay = rng.Float64() < 0.3
		} else {
			c.sport = tcpPorts[rng.IntN(len(tcpPorts))]
			c.rst = rng.Float64() < 0.05
			c.cseq, c.sseq = rng.Uint32(), rng.Uint32()
		}

		n := sizes[f]
		stats.MaxFlowPackets = max(stats.MaxFlowPackets, n)
		start := rng.Int64N(durUS)
		meanGap := math.Exp(math.Log(1e3) + rng.Float64()*math.Log(5e6/1e3)) // 1 ms .. 5 s in µs
		if n > 1 {
			meanGap = min(meanGap, float64(durUS-start)/float64(n))
		}
		times = times[:0]
		t := float64(start)
		for i := range n {
			if i > 0 {
				t += rng.ExpFloat64() * meanGap
			}
			times = append(times, t)
		}
		if end := float64(durUS - 1); t > end {
			scale := (end - float64(start)) / (t - float64(start))
			for i := range times {
				times[i] = float64(start) + (times[i]-float64(start))*scale
			}
		}
		last := int64(-1)
		for i := range n {
			at := max(int64(times[i]), last+1) // strictly increasing within a conversation
			last = at
			e := entry{t: at, conv: int32(f)}
			if c.udp {
				e.toSrv = c.oneWay || i%2 == 0
				e.size = uint16(20 + rng.IntN(200))
				if !e.toSrv {
					e.size = uint16(40 + rng.IntN(900))
				}
			} else {
				switch {
				case i == 0:
					e.flags, e.toSrv = SYN, true
				case i == 1:
					e.flags = SYN | ACK
				case i == 2:
					e.flags, e.toSrv = ACK, true
				case n >= 6 && i == n-2 && c.rst:
					e.flags = RST | ACK
				case n >= 6 && i == n-2:
					e.flags, e.toSrv = FIN|ACK, true
				case n >= 6 && i == n-1:
					e.flags = FIN | ACK
				case i == 3:
					e.flags, e.toSrv, e.size = PSH|ACK, true, uint16(50+rng.IntN(500))
				default:
					e.toSrv = rng.Float64() < 0.4
					e.flags = ACK
					if !e.toSrv || rng.Float64() < 0.2 {
						e.flags |= PSH
						e.size = uint16(rng.IntN(1449))
						if rng.Float64() < 0.5 {
							e.size = 1448
						}
					}
				}
			}
			entries = append(entries, e)
		}
	}
	weights, sizes = nil, nil
	slices.SortFunc(entries, func(a, b entry) int {
		if a.t != b.t {
			return int(a.t - b.t)
		}
		return int(a.conv - b.conv)
	})

	base := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return nil, err
	}
	if cfg.Keys {
		stats.Keys = make(map[Key]KeyStats, 2*cfg.Flows)
	}
	seen := make([]uint8, cfg.Flows) // bit 0: client to server seen, bit 1: server to client
	zeros := make([]byte, 1500)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	eth := &layers.Ethernet{}
	ip4 := &layers.IPv4{Version: 4, IHL: 5, Flags: layers.IPv4DontFragment}
	ip6 := &layers.IPv6{Version: 6}
	tcp := &layers.TCP{Window: 64240}
	udp := &layers.UDP{}
	for _, e := range entries {
		c := &convs[e.conv]
		src, dst, sport, dport := c.cli, c.srv, c.cport, c.sport
		eth.SrcMAC, eth.DstMAC = macA, macB
		ttl := uint8(64)
		if !e.toSrv {
			src, dst, sport, dport = dst, src, dport, sport
			eth.SrcMAC, eth.DstMAC = macB, macA
			ttl = 52
		}
		var netl gopacket.SerializableLayer
		var nl gopacket.NetworkLayer
		proto := layers.IPProtocolTCP
		if c.udp {
			proto = layers.IPProtocolUDP
		}
		if src.Is4() {
			eth.EthernetType = layers.EthernetTypeIPv4
			ip4.SrcIP, ip4.DstIP, ip4.TTL, ip4.Protocol = src.AsSlice(), dst.AsSlice(), ttl, proto
			netl, nl = ip4, ip4
		} else {
			eth.EthernetType = layers.EthernetTypeIPv6
			ip6.SrcIP, ip6.DstIP, ip6.HopLimit, ip6.NextHeader = src.AsSlice(), dst.AsSlice(), ttl, proto
			netl, nl = ip6, ip6
		}
		var l4 gopacket.SerializableLayer
		if c.udp {
			udp.SrcPort, udp.DstPort = layers.UDPPort(sport), layers.UDPPort(dport)
			_ = udp.SetNetworkLayerForChecksum(nl)
			l4 = udp
		} else {
			*tcp = layers.TCP{
				SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Window: 64240,
				FIN: e.flags&FIN != 0, SYN: e.flags&SYN != 0, RST: e.flags&RST != 0, PSH: e.flags&PSH != 0, ACK: e.flags&ACK != 0,
			}
			seq, ack := &c.sseq, c.cseq
			if e.toSrv {
				seq, ack = &c.cseq, c.sseq
			}
			tcp.Seq = *seq
			if tcp.ACK {
				tcp.Ack = ack
			}
			*seq += uint32(e.size)
			if tcp.SYN || tcp.FIN {
				*seq++
			}
			_ = tcp.SetNetworkLayerForChecksum(nl)
			l4 = tcp
		}
		if err := gopacket.SerializeLayers(buf, opts, eth, netl, l4, gopacket.Payload(zeros[:e.size])); err != nil {
			return nil, err
		}
		data := buf.Bytes()
		ts := base.Add(time.Duration(e.t) * time.Microsecond)
		if err := pw.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: len(data)}, data); err != nil {
			return nil, err
		}
		if stats.Packets == 0 {
			stats.Start = ts
		}
		stats.End = ts
		l := uint64(len(data))
		stats.Packets++
		stats.Bytes += l
		stats.BytesSquared += l * l
		bit := uint8(2)
		if e.toSrv {
			bit = 1
		}
		if seen[e.conv]&bit == 0 {
			seen[e.conv] |= bit
			stats.Unidirectional++
		}
		if stats.Keys != nil {
			k := Key{Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Proto: uint8(proto)}
			ks := stats.Keys[k]
			ks.Packets++
			ks.Bytes += l
			ks.BytesSquared += l * l
			stats.Keys[k] = ks
		}
	}
	return stats, nil
}

func addr4(prefix, host uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], prefix|(host+1))
	return netip.AddrFrom4(b)
}

func addr6(prefix uint64, host uint32) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], prefix)
	binary.BigEndian.PutUint32(b[12:], host+1)
	return netip.AddrFrom16(b)
}
