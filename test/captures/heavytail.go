package captures

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// HeavyTailedConfig shapes a capture for testing estimates: many small
// flows, a few huge ones, and destinations of skewed popularity.
type HeavyTailedConfig struct {
	Seed  int64 // same seed, same bytes
	Flows int   // unidirectional flows, each its own key (default 4000)
	// Destinations is the pool of destination addresses (default 1000);
	// the flows pick them with Zipf-like popularity (rank r ∝ 1/r).
	Destinations int
	// Duration bounds the capture time: every packet falls within
	// Duration of the capture's start, HeavyTailedStats.Start (default 60 s).
	Duration time.Duration
	// Alpha is the Pareto shape of flow sizes in packets (default 0.8),
	// MaxFlowPackets their cap (default 100,000).
	Alpha          float64
	MaxFlowPackets int
	// IPv6 is the share of destinations that are IPv6 (default 0.15),
	// UDP the share of flows that are UDP (default 0.3).
	IPv6, UDP float64
	// SnapLen is how many bytes of each frame the file keeps (default 96,
	// the headers); the wire length is always the frame's full length.
	// Short frames keep files of MTU-sized traffic small.
	SnapLen int
}

// HeavyTailedStats is what HeavyTailed wrote: the exact truth.
type HeavyTailedStats struct {
	Packets, Bytes uint64 // wire lengths
	Flows          int    // keys with at least one packet (all of them)
	IPv6, UDP      int    // flows that are IPv6, UDP
	MaxFlowPackets int
	// Start is when the capture's time begins: every packet falls in
	// [Start, Start+Duration).
	Start    time.Time
	Duration time.Duration
	Keys     map[Key]Counts        `json:"-"` // per unidirectional flow key
	Dsts     map[netip.Addr]Counts `json:"-"` // per destination address
}

// HeavyTailed writes a pcap (Ethernet, microsecond timestamps) of
// cfg.Flows unidirectional TCP and UDP flows, IPv4 and IPv6, overlapping
// over cfg.Duration, and returns per key and per destination totals.
//
// Flow sizes in packets are Pareto (shape Alpha, at least 1, capped),
// drawn by stratified quantiles so that every seed has its share of the
// tail: with the defaults about 85% of flows have at most 10 packets and
// a few have 10^4 or more. Frames of small flows are small (60 to 330
// bytes on the wire); flows of more than 10 packets are bulk: mostly
// MTU frames (55% of frames at 11 packets rising to 85% at 10^5), bare
// ACK-sized frames and some in between. A flow lasts its size times a
// mean gap drawn log-uniformly between 0.1 ms and 1 s (at most the
// capture), with exponential gaps. TCP flows of 3 packets or more open
// with SYN and close with FIN. Every flow has its own source address and
// port, so flows and keys are the same thing.
func HeavyTailed(w io.Writer, cfg HeavyTailedConfig) (*HeavyTailedStats, error) {
	cfg.Flows = cmp.Or(cfg.Flows, 4000)
	cfg.Destinations = cmp.Or(cfg.Destinations, 1000)
	cfg.Duration = cmp.Or(cfg.Duration, 60*time.Second)
	cfg.Alpha = cmp.Or(cfg.Alpha, 0.8)
	cfg.MaxFlowPackets = cmp.Or(cfg.MaxFlowPackets, 100_000)
	cfg.IPv6 = cmp.Or(cfg.IPv6, 0.15)
	cfg.UDP = cmp.Or(cfg.UDP, 0.3)
	cfg.SnapLen = cmp.Or(cfg.SnapLen, 96)
	switch {
	case cfg.Flows < 0 || cfg.Flows > 4096*55000:
		return nil, fmt.Errorf("flows %d out of range 1..%d", cfg.Flows, 4096*55000)
	case cfg.Destinations < 0 || cfg.Destinations > 1<<20:
		return nil, fmt.Errorf("destinations %d out of range 1..%d", cfg.Destinations, 1<<20)
	case cfg.Duration < time.Millisecond:
		return nil, fmt.Errorf("duration %s: want at least 1ms", cfg.Duration)
	case cfg.Alpha < 0 || cfg.MaxFlowPackets < 0 || int64(cfg.MaxFlowPackets) > cfg.Duration.Microseconds():
		return nil, fmt.Errorf("want a positive alpha, and at most one packet of a flow per microsecond of the duration")
	case cfg.SnapLen < 74:
		return nil, fmt.Errorf("snap length %d: want at least 74 (the headers)", cfg.SnapLen)
	}
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6865617679))

	// Destinations: a fixed family each; flows pick them by Zipf rank.
	dsts := make([]netip.Addr, cfg.Destinations)
	cum := make([]float64, cfg.Destinations)
	var total float64
	for i := range dsts {
		if rng.Float64() < cfg.IPv6 {
			dsts[i] = addr6(0x20010db8_00e50000, uint32(i))
		} else {
			dsts[i] = addr4(203<<24, uint32(i))
		}
		total += 1 / float64(i+1)
		cum[i] = total
	}

	// Flow sizes: the quantiles (k+V)/Flows of the Pareto, k a random
	// permutation, so the tail is there whatever the seed.
	strata := rng.Perm(cfg.Flows)
	type flowSpec struct {
		src, dst netip.Addr
		ips      [2][]byte // src and dst as the layers want them
		sport    uint16
		dport    uint16
		udp      bool
		n        int
		bulk     float64 // share of MTU frames
		seq      uint32
		written  Counts
	}
	flows := make([]flowSpec, cfg.Flows)
	type entry struct {
		t     int64 // microseconds from the start
		flow  int32
		size  uint16 // payload
		flags uint8  // TCP flags
	}
	durUS := cfg.Duration.Microseconds()
	stats := &HeavyTailedStats{
		Start:    time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC),
		Duration: cfg.Duration,
		Keys:     make(map[Key]Counts, cfg.Flows),
		Dsts:     make(map[netip.Addr]Counts),
	}
	tcpPorts := []uint16{443, 443, 443, 80, 80, 22, 8080, 993, 5432, 3306}
	udpPorts := []uint16{53, 53, 443, 443, 123, 514, 5060, 1194, 4500, 161}
	var entries []entry
	var times []float64
	for f := range flows {
		fs := &flows[f]
		u := (float64(strata[f]) + 1 - rng.Float64()) / float64(cfg.Flows) // (0, 1]
		fs.n = int(min(math.Pow(u, -1/cfg.Alpha), float64(cfg.MaxFlowPackets)))
		r := sort.SearchFloat64s(cum, rng.Float64()*total)
		fs.dst = dsts[min(r, len(dsts)-1)]
		host, port := uint32(f%4096), uint16(10000+f/4096)
		if fs.dst.Is4() {
			fs.src = addr4(198<<24|51<<16, host)
		} else {
			fs.src = addr6(0x20010db8_00c50000, host)
			stats.IPv6++
		}
		fs.sport = port
		fs.ips = [2][]byte{fs.src.AsSlice(), fs.dst.AsSlice()}
		fs.udp = rng.Float64() < cfg.UDP
		if fs.udp {
			fs.dport = udpPorts[rng.IntN(len(udpPorts))]
			stats.UDP++
		} else {
			fs.dport = tcpPorts[rng.IntN(len(tcpPorts))]
			fs.seq = rng.Uint32()
		}
		if fs.n > 10 {
			fs.bulk = 0.55 + 0.3*min(1, (math.Log10(float64(fs.n))-1)/4)
		}
		stats.MaxFlowPackets = max(stats.MaxFlowPackets, fs.n)

		gap := math.Exp(math.Log(100) + rng.Float64()*math.Log(1e6/100)) // 0.1 ms .. 1 s in µs
		d := min(float64(fs.n)*gap, float64(durUS-1))
		start := rng.Float64() * (float64(durUS-1) - d)
		// Exponential gaps, scaled so that the flow lasts d.
		times = times[:0]
		t := 0.0
		for i := range fs.n {
			if i > 0 {
				t += rng.ExpFloat64()
			}
			times = append(times, t)
		}
		scale := 0.0
		if t > 0 {
			scale = d / t
		}
		hdr := headerLen(fs.dst.Is4(), fs.udp)
		first, last := len(entries), int64(-1)
		for k, at := range times {
			// Strictly increasing within a flow, so that SYN comes
			// first and FIN last in the file too.
			last = max(int64(start+at*scale), last+1)
			entries = append(entries, entry{t: last, flow: int32(f)})
			e := &entries[len(entries)-1]
			e.size = uint16(payloadSize(rng, hdr, fs.bulk))
			if fs.udp {
				continue
			}
			switch {
			case fs.n >= 3 && k == 0:
				e.flags, e.size = SYN, 0
			case fs.n >= 3 && k == fs.n-1:
				e.flags, e.size = FIN|ACK, 0
			case e.size > 0:
				e.flags = PSH | ACK
			default:
				e.flags = ACK
			}
		}
		if over := last - (durUS - 1); over > 0 { // pushed past the end by a µs a packet
			for i := range entries[first:] {
				entries[first+i].t -= over
			}
		}
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if a.t != b.t {
			return int(a.t - b.t)
		}
		return int(a.flow - b.flow)
	})

	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(uint32(cfg.SnapLen), layers.LinkTypeEthernet); err != nil {
		return nil, err
	}
	zeros := make([]byte, 1500)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB}
	ip4 := &layers.IPv4{Version: 4, IHL: 5, Flags: layers.IPv4DontFragment, TTL: 64}
	ip6 := &layers.IPv6{Version: 6, HopLimit: 64}
	tcp := &layers.TCP{}
	udp := &layers.UDP{}
	for _, e := range entries {
		fs := &flows[e.flow]
		proto := layers.IPProtocolTCP
		if fs.udp {
			proto = layers.IPProtocolUDP
		}
		var netl gopacket.SerializableLayer
		var nl gopacket.NetworkLayer
		if fs.dst.Is4() {
			eth.EthernetType = layers.EthernetTypeIPv4
			ip4.SrcIP, ip4.DstIP, ip4.Protocol = fs.ips[0], fs.ips[1], proto
			netl, nl = ip4, ip4
		} else {
			eth.EthernetType = layers.EthernetTypeIPv6
			ip6.SrcIP, ip6.DstIP, ip6.NextHeader = fs.ips[0], fs.ips[1], proto
			netl, nl = ip6, ip6
		}
		size, wire := int(e.size), wireLen(headerLen(fs.dst.Is4(), fs.udp), int(e.size))
		var l4 gopacket.SerializableLayer
		if fs.udp {
			udp.SrcPort, udp.DstPort = layers.UDPPort(fs.sport), layers.UDPPort(fs.dport)
			_ = udp.SetNetworkLayerForChecksum(nl)
			l4 = udp
		} else {
			*tcp = layers.TCP{
				SrcPort: layers.TCPPort(fs.sport), DstPort: layers.TCPPort(fs.dport), Window: 64240, Seq: fs.seq, Ack: 1,
				FIN: e.flags&FIN != 0, SYN: e.flags&SYN != 0, PSH: e.flags&PSH != 0, ACK: e.flags&ACK != 0,
			}
			fs.seq += uint32(size)
			if tcp.SYN || tcp.FIN {
				fs.seq++
			}
			_ = tcp.SetNetworkLayerForChecksum(nl)
			l4 = tcp
		}
		if err := gopacket.SerializeLayers(buf, opts, eth, netl, l4, gopacket.Payload(zeros[:size])); err != nil {
			return nil, err
		}
		data := buf.Bytes()
		if len(data) != wire {
			return nil, fmt.Errorf("frame of %d bytes, want %d", len(data), wire)
		}
		ts := stats.Start.Add(time.Duration(e.t) * time.Microsecond)
		ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: min(len(data), cfg.SnapLen), Length: len(data)}
		if err := pw.WritePacket(ci, data[:ci.CaptureLength]); err != nil {
			return nil, err
		}
		fs.written.Packets++
		fs.written.Bytes += uint64(wire)
	}
	for _, fs := range flows {
		proto := uint8(layers.IPProtocolTCP)
		if fs.udp {
			proto = uint8(layers.IPProtocolUDP)
		}
		stats.Keys[Key{Src: fs.src, Dst: fs.dst, SrcPort: fs.sport, DstPort: fs.dport, Proto: proto}] = fs.written
		dc := stats.Dsts[fs.dst]
		dc.Packets += fs.written.Packets
		dc.Bytes += fs.written.Bytes
		stats.Dsts[fs.dst] = dc
		stats.Packets += fs.written.Packets
		stats.Bytes += fs.written.Bytes
	}
	stats.Flows = len(stats.Keys)
	return stats, nil
}

// headerLen is the wire length of a frame with no payload.
func headerLen(v4, udp bool) int {
	n := 14 + 40 + 20 // Ethernet, IPv6, TCP
	if v4 {
		n -= 20
	}
	if udp {
		n -= 12
	}
	return n
}

// payloadSize draws the payload of one frame of a flow whose share of
// MTU frames is bulk: small flows (bulk 0) send small frames (up to 330
// bytes on the wire); bulk flows MTU frames, bare ACK-sized ones (10%)
// and some in between.
func payloadSize(rng *rand.Rand, hdr int, bulk float64) int {
	if bulk == 0 {
		return rng.IntN(331 - hdr)
	}
	switch u := rng.Float64(); {
	case u < bulk:
		return 1514 - hdr
	case u < bulk+0.1:
		return 0
	default:
		return 40 + rng.IntN(1300)
	}
}

// wireLen is the length of a frame: Ethernet pads frames to 60 bytes
// (without the FCS, which captures do not keep).
func wireLen(hdr, payload int) int { return max(hdr+payload, 60) }
