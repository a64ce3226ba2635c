package e2e

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

// TestFlowsExactAtRate1 runs vigil on the lab's sensor veth at 1-in-1
// sampling, with a configuration file whose sample_rate (50), listen
// address and flows output the flags partly override, sends known UDP,
// fragmented UDP, ICMP echo, ICMPv6 echo and TCP traffic from the peer,
// stops vigil with SIGTERM and reads the flow records. At N=1 the
// records are exact:
//
//   - every line follows the documented schema (keys, types, values);
//   - UDP and ICMP flows: one record each, end_reason "shutdown",
//     packets and bytes equal to what was sent (frame length, Ethernet
//     header included, computed from the payload sizes), sampled
//     figures equal to the estimates, sampling_rate 1 (the flag, not the
//     file's 50), tcp_flags 0, TTL and TOS as captured; ICMP dst_port is
//     type x 256 + code;
//   - fragmented UDP (v4 and v6): the first fragments in the flow with
//     the ports, the non-first ones in a flow with ports 0, each exact,
//     and vigil_parse_total{outcome="fragment"} = the non-first count;
//   - TCP flows: every record's figures summed per key equal an
//     AF_PACKET capture of the frames the peer's veth sent (packets,
//     bytes, OR of the flags, TTL range, TOS); connections still open
//     at SIGTERM end in one "shutdown" record; connections closed
//     before have a "tcp_end" record carrying FIN or RST, and anything
//     after it (the last ACK) is "shutdown"; an aborted connection is
//     one "tcp_end" record carrying RST;
//   - no record ends for another reason (the idle timeout is 10 min);
//   - start and end lie within the wall-clock time the flow was sent;
//   - the records account for every IP packet vigil_packets_total
//     counted, no sample was dropped, and vigil_flows_expired_total
//     {reason="tcp_end"} equals the tcp_end records;
//   - the config's own flows output got nothing (--flows-out wins).
func TestFlowsExactAtRate1(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := testutil.Vigil(t)
	lab := labUp(t)
	dir := t.TempDir()
	flowsPath := filepath.Join(dir, "flows.jsonl")
	unusedPath := filepath.Join(dir, "config-output.jsonl")
	const metricsAddr = "127.0.0.1:19110"
	cfgPath := filepath.Join(dir, "vigil.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`capture:
  interfaces: [%s]
  attach_mode: auto
  egress: false
  sampling: fixed
  sample_rate: 50
flows:
  idle_timeout: 10m
  active_timeout: 1h
  max_flows: 100000
  output: %q
http:
  listen: %s
log:
  level: info
  format: text
`, netlab.SensorIf, unusedPath, metricsAddr))

	sensorIf, err := lab.Sensor.Interface(netlab.SensorIf)
	if err != nil {
		t.Fatal(err)
	}
	tBegin := time.Now()
	v := startVigil(t, lab, bin, metricsAddr, "--config", cfgPath,
		"--interface", netlab.SensorIf, "--sample-rate", "1", "--flows-out", flowsPath)
	if got := v.metrics().get(t, "vigil_sampling_rate"); got != 1 {
		t.Fatalf("vigil_sampling_rate %v, want 1: --sample-rate 1 must override the file's sample_rate 50", got)
	}
	capt := lab.Peer.StartCapture(t, netlab.PeerIf)
	want := map[flowKey]*truth{}

	// UDP: four flows, two per family, different sizes (a zero-byte
	// payload makes a 42-byte frame: no padding on a veth).
	udp := []struct {
		family  int
		port    uint16
		payload int
		n       int
	}{{4, 7001, 100, 1000}, {4, 7002, 1400, 300}, {6, 7003, 0, 500}, {6, 7004, 777, 700}}
	sinks := map[*netlab.Sink]uint64{}
	for _, f := range udp {
		sinks[lab.NewSink(t, f.family, f.port)] = uint64(f.n)
		s := lab.NewSender(t, f.family, f.port, f.payload)
		w := &truth{first: time.Now()}
		if sent, err := s.Send(f.n); err != nil || sent != f.n {
			t.Fatalf("UDP %s: sent %d of %d: %v", udpKey(s), sent, f.n, err)
		}
		w.last = time.Now()
		w.packets, w.bytes = uint64(f.n), uint64(f.n*s.FrameLen())
		want[udpKey(s)] = w
		t.Logf("UDP %s: %d x %d B (ENOBUFS retries %d)", udpKey(s), f.n, s.FrameLen(), s.NoBufs())
	}
	waitSinks(t, sinks)

	// ICMP and ICMPv6 echo requests of varied sizes: one flow per
	// family (the echo id and sequence are not part of the key).
	for _, family := range []int{4, 6} {
		p := lab.NewPinger(t, family)
		var sizes []int
		for i := range 150 {
			sizes = append(sizes, (i*97)%1401)
		}
		w := &truth{first: time.Now()}
		if sent, err := p.Send(sizes); err != nil || sent != len(sizes) {
			t.Fatalf("ICMP IPv%d: sent %d of %d: %v", family, sent, len(sizes), err)
		}
		w.last = time.Now()
		if !p.WaitReplies(uint64(len(sizes)), arriveTimeout) {
			t.Fatalf("lab: ICMP IPv%d: %d echo replies to %d requests", family, p.Replies(), len(sizes))
		}
		for _, s := range sizes {
			w.packets++
			w.bytes += uint64(p.FrameLen(s))
		}
		proto := uint8(1)
		if family == 6 {
			proto = 58
		}
		k := flowKey{IPVersion: family, Src: p.Src, Dst: p.Dst, Proto: proto, DstPort: uint16(p.Type()) << 8}
		want[k] = w
		t.Logf("ICMP %s: %d requests, %d B", k, w.packets, w.bytes)
	}

	// Fragmented UDP: 3000-byte datagrams leave the peer in three
	// fragments. Only the first carries the ports; the others make a
	// flow of their own with ports 0 (docs/FLOWS.md).
	before := vethDrops(t, lab)
	var nonFirst uint64
	for _, family := range []int{4, 6} {
		const port, n = 7010, 40
		sink := lab.NewSink(t, family, port)
		s := lab.NewFragSender(t, family, port, 3000)
		lens := s.FragmentLens()
		first, rest := &truth{first: time.Now()}, &truth{first: time.Now()}
		if sent, err := s.Send(n); err != nil || sent != n {
			t.Fatalf("fragmented UDP %s: sent %d of %d: %v", udpKey(s.Sender), sent, n, err)
		}
		if s.NoBufs() != 0 {
			t.Fatalf("lab: %d fragmented datagrams refused with ENOBUFS and sent again: some fragments went twice", s.NoBufs())
		}
		first.last, rest.last = time.Now(), time.Now()
		waitSinks(t, map[*netlab.Sink]uint64{sink: n})
		first.packets, first.bytes = n, uint64(n*lens[0])
		for _, l := range lens[1:] {
			rest.packets++
			rest.bytes += uint64(l)
		}
		rest.packets *= n
		rest.bytes *= n
		nonFirst += rest.packets
		k := udpKey(s.Sender)
		want[k] = first
		k.SrcPort, k.DstPort = 0, 0
		want[k] = rest
		t.Logf("fragmented UDP IPv%d: %d datagrams in fragments of %v B", family, n, lens)
	}

	// TCP: per family, two connections closed in order (FIN both ways),
	// one aborted (RST) and one left open through SIGTERM, each with a
	// few request/response exchanges. The truth is the capture of what
	// the peer's veth sent.
	tcpOpen, tcpAborted := map[flowKey]bool{}, map[flowKey]bool{}
	for _, family := range []int{4, 6} {
		srv := lab.NewTCPServer(t, family, 8080)
		for i := range 4 {
			c := lab.DialTCP(t, srv.Addr)
			k := flowKey{IPVersion: family, Src: c.Src.Addr(), Dst: c.Dst.Addr(), Proto: 6, SrcPort: c.Src.Port(), DstPort: c.Dst.Port()}
			want[k] = &truth{first: time.Now()}
			for _, x := range [][2]int{{200, 30_000}, {12_000, 100}, {0, 5}} {
				if err := c.Exchange(x[0], x[1]); err != nil {
					t.Fatal(err)
				}
			}
			switch i {
			case 0, 1:
				if err := c.Shutdown(); err != nil {
					t.Fatal(err)
				}
			case 2:
				if err := c.Abort(); err != nil {
					t.Fatal(err)
				}
				tcpAborted[k] = true
			default:
				tcpOpen[k] = true
			}
			want[k].last = time.Now()
		}
		if err := srv.Err(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(quiet) // delayed ACKs, the reader's 100 ms flush
	frames, err := capt.Stop()
	if err != nil {
		t.Fatalf("lab capture: %v", err)
	}
	if after := vethDrops(t, lab); after != before {
		t.Fatalf("lab: the veth dropped %d frames during the fragment and TCP phase: the capture is not what reached %s", after-before, netlab.SensorIf)
	}
	captured := map[flowKey]*truth{}
	for _, f := range frames {
		if !f.Outgoing {
			continue
		}
		fi, ok := netlab.ParseFrame(f.Head)
		if !ok {
			continue
		}
		k := frameKey(fi)
		if captured[k] == nil {
			captured[k] = &truth{}
		}
		captured[k].addFrame(f.Len, fi)
		if fi.Proto == 6 && f.Len > 14+sensorIf.MTU {
			t.Fatalf("lab: the peer sent a %d-byte TCP frame (GSO): XDP and the capture would count it differently", f.Len)
		}
	}
	for k, w := range want {
		c := captured[k]
		if c == nil {
			t.Fatalf("lab: nothing captured for %s", k)
		}
		switch {
		case k.Proto == 6:
			w.packets, w.bytes = c.packets, c.bytes
		case k.Proto == 17 && (k.SrcPort == 0 || k.DstPort == 7010):
			if c.packets != w.packets || c.bytes != w.bytes {
				t.Fatalf("lab: captured %d fragments (%d B) of %s, expected %d (%d B)", c.packets, c.bytes, k, w.packets, w.bytes)
			}
		case c.packets < w.packets:
			t.Fatalf("lab: captured %d packets of %s, sent %d", c.packets, k, w.packets)
		}
		w.tcpFlags, w.tos, w.ttlMin, w.ttlMax = c.tcpFlags, c.tos, c.ttlMin, c.ttlMax
	}

	// A FIN or RST ends a flow at once, but its record (and the
	// tcp_end count) leaves the table at the next expiry sweep, up to
	// a second later: wait for the sweep rather than racing it.
	finKeys := 0
	for k, c := range captured {
		if k.Proto == 6 && c.tcpFlags&0x05 != 0 {
			finKeys++
		}
	}
	m := v.waitMetric(fmt.Sprintf("%d TCP flows ended by FIN or RST", finKeys), 10*time.Second, func(p promText) bool {
		return p.counter("vigil_flows_expired_total", `reason="tcp_end"`) >= float64(finKeys)
	})
	ipPackets := m.get(t, "vigil_packets_total", `direction="ingress"`, `interface="`+netlab.SensorIf+`"`) -
		m.counter("vigil_parse_total", `outcome="not_ip"`)
	if drops := m.counter("vigil_sample_drops_total"); drops != 0 {
		t.Errorf("vigil_sample_drops_total %v, want 0: at N=1 every sample must reach the flow table", drops)
	}
	if got := m.get(t, "vigil_parse_total", `outcome="fragment"`); got != float64(nonFirst) {
		t.Errorf("vigil_parse_total{outcome=\"fragment\"} %v, the peer sent %d non-first fragments", got, nonFirst)
	}
	activeAtScrape := m.get(t, "vigil_flows_active")
	tcpEndAtScrape := m.get(t, "vigil_flows_expired_total", `reason="tcp_end"`)
	if m.counter("vigil_flows_expired_total", `reason="idle"`) != 0 || m.counter("vigil_flows_expired_total", `reason="active"`) != 0 {
		t.Errorf("flows expired by timeout with idle_timeout 10m and active_timeout 1h:\n%s", grepVigil(string(m)))
	}
	v.stop()
	tEnd := time.Now()
	if !strings.Contains(v.stderr.String(), "detached") {
		t.Errorf("no detach logged on shutdown:\n%s", v.stderr.String())
	}

	recs := readFlowsFile(t, flowsPath)
	if unused := readFlowsFile(t, unusedPath); len(unused) != 0 {
		t.Errorf("%d records went to the config file's flows.output; --flows-out must override it", len(unused))
	}
	var sumPackets float64
	tcpEnd, shutdown := 0, 0
	for _, r := range recs {
		where := fmt.Sprintf("flows.jsonl:%d (%s)", r.Line, r.key())
		sumPackets += float64(r.Packets)
		if r.Interface != netlab.SensorIf || r.Ifindex != sensorIf.Index || r.Direction != "ingress" {
			t.Errorf("%s: seen on %q ifindex %d %s, want %q ifindex %d ingress", where, r.Interface, r.Ifindex, r.Direction, netlab.SensorIf, sensorIf.Index)
		}
		if r.VLAN != 0 || r.InnerVLAN != 0 || r.Tunnel != "" || r.VNI != 0 {
			t.Errorf("%s: vlan %d inner_vlan %d tunnel %q vni %d on untagged, untunneled traffic", where, r.VLAN, r.InnerVLAN, r.Tunnel, r.VNI)
		}
		if r.SamplingRate != 1 || r.Packets != r.SampledPackets || r.Bytes != r.SampledBytes {
			t.Errorf("%s: sampling_rate %d, packets %d/%d sampled, bytes %d/%d sampled: want rate 1 and estimates = samples",
				where, r.SamplingRate, r.Packets, r.SampledPackets, r.Bytes, r.SampledBytes)
		}
		if r.Start.Before(tBegin) || r.End.After(tEnd) {
			t.Errorf("%s: start %s end %s outside the run %s .. %s", where, r.Start, r.End, tBegin, tEnd)
		}
		switch r.EndReason {
		case "shutdown":
			shutdown++
		case "tcp_end":
			tcpEnd++
			if r.Proto != 6 || r.TCPFlags&0x05 == 0 {
				t.Errorf("%s: end_reason tcp_end on proto %d with tcp_flags %#x (no FIN or RST)", where, r.Proto, r.TCPFlags)
			}
		default:
			t.Errorf("%s: end_reason %q: with a 10 min idle timeout every flow ends at shutdown (or tcp_end)", where, r.EndReason)
		}
	}
	if sumPackets < ipPackets {
		t.Errorf("the records hold %v packets, vigil_packets_total counted %v IP packets before SIGTERM: samples were lost", sumPackets, ipPackets)
	}
	if float64(tcpEnd) != tcpEndAtScrape {
		t.Errorf("%d tcp_end records, vigil_flows_expired_total{reason=\"tcp_end\"} %v", tcpEnd, tcpEndAtScrape)
	}
	if float64(shutdown) < activeAtScrape {
		t.Errorf("%d shutdown records, but vigil_flows_active was %v before SIGTERM: active flows not flushed", shutdown, activeAtScrape)
	}

	got := byKey(recs)
	for k, w := range want {
		rs := got[k]
		if len(rs) == 0 {
			t.Errorf("%s: no record; want %d packets", k, w.packets)
			continue
		}
		var sum truth
		sum.ttlMin = 255
		for i, r := range rs {
			sum.packets += r.Packets
			sum.bytes += r.Bytes
			sum.tcpFlags |= r.TCPFlags
			sum.ttlMin, sum.ttlMax = min(sum.ttlMin, r.TTLMin), max(sum.ttlMax, r.TTLMax)
			if i == 0 {
				sum.tos = r.TOS
			}
			if r.Start.Before(w.first.Add(-clockSlack)) || r.End.After(w.last.Add(clockSlack)) {
				t.Errorf("%s: record start %s end %s, but the flow was sent between %s and %s",
					k, r.Start.Format(time.RFC3339Nano), r.End.Format(time.RFC3339Nano),
					w.first.UTC().Format(time.RFC3339Nano), w.last.UTC().Format(time.RFC3339Nano))
			}
		}
		reasons := make([]string, len(rs))
		for i, r := range rs {
			reasons[i] = r.EndReason
		}
		switch {
		case k.Proto != 6 || tcpOpen[k]:
			if len(rs) != 1 || rs[0].EndReason != "shutdown" {
				t.Errorf("%s: %d records ending %v, want one ending shutdown", k, len(rs), reasons)
			}
		case tcpAborted[k]:
			if len(rs) != 1 || rs[0].EndReason != "tcp_end" || rs[0].TCPFlags&0x04 == 0 {
				t.Errorf("%s: aborted with RST, %d records ending %v, want one tcp_end with RST", k, len(rs), reasons)
			}
		default:
			if !slices.Contains(reasons, "tcp_end") {
				t.Errorf("%s: closed with FIN, records end %v, want a tcp_end", k, reasons)
			}
		}
		if sum.packets != w.packets || sum.bytes != w.bytes {
			t.Errorf("%s: %d packets, %d bytes in %d record(s); sent %d packets, %d bytes", k, sum.packets, sum.bytes, len(rs), w.packets, w.bytes)
		}
		if sum.tcpFlags != w.tcpFlags || sum.tos != w.tos || sum.ttlMin != w.ttlMin || sum.ttlMax != w.ttlMax {
			t.Errorf("%s: tcp_flags %#x tos %d ttl %d..%d; captured tcp_flags %#x tos %d ttl %d..%d",
				k, sum.tcpFlags, sum.tos, sum.ttlMin, sum.ttlMax, w.tcpFlags, w.tos, w.ttlMin, w.ttlMax)
		}
	}
	t.Logf("%d records (%d shutdown, %d tcp_end), %d known flows", len(recs), shutdown, tcpEnd, len(want))
}

// vethDrops is the drop counters of both ends of the lab's veth.
func vethDrops(t *testing.T, lab *netlab.Lab) uint64 {
	t.Helper()
	p, err := lab.Peer.Stats(netlab.PeerIf)
	if err != nil {
		t.Fatal(err)
	}
	s, err := lab.Sensor.Stats(netlab.SensorIf)
	if err != nil {
		t.Fatal(err)
	}
	return p.TxDropped + p.RxDropped + s.TxDropped + s.RxDropped
}

// binomialBound is the 5-sigma bound on |estimate - truth| for the
// packet estimate N*S of a flow of p packets sampled 1 in n, where S is
// Binomial(p, 1/n): 5 * n * sqrt(p * (1/n) * (1 - 1/n)). A correct
// sampler exceeds it with probability about 6e-7 per flow.
func binomialBound(p, n int) float64 {
	q := 1 / float64(n)
	return 5 * float64(n) * math.Sqrt(float64(p)*q*(1-q))
}

// TestFlowsEstimatesAtRate10 runs vigil at 1-in-10 sampling with no
// configuration file and the flows on stdout (the default), sends
// 20,000 UDP datagrams in four flows, stops it with SIGINT and checks:
// stdout holds only flow records (schema checked); each flow's record
// has sampling_rate 10, packets = 10 x sampled_packets, bytes = 10 x
// sampled_bytes, sampled_bytes = sampled_packets x the frame length, and
// a packet estimate within the 5-sigma binomial bound of the truth;
// vigil_sampling_rate is 10 and every sample vigil took is in a record;
// with --log-json every line on stderr is a JSON log record.
func TestFlowsEstimatesAtRate10(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := testutil.Vigil(t)
	lab := labUp(t)
	const metricsAddr = "127.0.0.1:19111"
	const rate = 10
	v := startVigil(t, lab, bin, metricsAddr, "--interface", netlab.SensorIf,
		"--sample-rate", strconv.Itoa(rate), "--metrics-addr", metricsAddr, "--log-json")

	flows := []struct {
		family  int
		port    uint16
		payload int
		n       int
	}{{4, 7201, 64, 8000}, {4, 7202, 1000, 4000}, {6, 7203, 200, 5000}, {6, 7204, 1400, 3000}}
	type sent struct {
		n, frameLen int
	}
	want := map[flowKey]sent{}
	sinks := map[*netlab.Sink]uint64{}
	for _, f := range flows {
		sinks[lab.NewSink(t, f.family, f.port)] = uint64(f.n)
		s := lab.NewSender(t, f.family, f.port, f.payload)
		if got, err := s.Send(f.n); err != nil || got != f.n {
			t.Fatalf("UDP %s: sent %d of %d: %v", udpKey(s), got, f.n, err)
		}
		want[udpKey(s)] = sent{f.n, s.FrameLen()}
	}
	waitSinks(t, sinks)
	time.Sleep(quiet)
	m := v.metrics()
	if got := m.get(t, "vigil_sampling_rate"); got != rate {
		t.Errorf("vigil_sampling_rate %v, want %d", got, rate)
	}
	samples := m.get(t, "vigil_samples_total")
	v.stopWith(syscall.SIGINT) // SIGINT ends a run like SIGTERM

	checkJSONLog(t, v.stderr.String())
	recs := parseFlows(t, "stdout", []byte(v.stdout.String()))
	var sampled float64
	for _, r := range recs {
		sampled += float64(r.SampledPackets)
		if r.EndReason != "shutdown" {
			t.Errorf("stdout:%d (%s): end_reason %q, want shutdown", r.Line, r.key(), r.EndReason)
		}
	}
	// Only IP samples make flows; at most not_ip/N of the samples were
	// of other frames (the lab has no ARP: static neighbours).
	if notIP := m.counter("vigil_parse_total", `outcome="not_ip"`); sampled < samples-notIP {
		t.Errorf("records hold %v samples, vigil_samples_total was %v before SIGTERM: samples were lost", sampled, samples)
	}
	got := byKey(recs)
	for k, w := range want {
		rs := got[k]
		if len(rs) != 1 {
			t.Errorf("%s: %d records, want 1", k, len(rs))
			continue
		}
		r := rs[0]
		bound := binomialBound(w.n, rate)
		diff := math.Abs(float64(r.Packets) - float64(w.n))
		t.Logf("%s: sent %d, sampled %d, estimate %d (off by %.0f, bound %.0f)", k, w.n, r.SampledPackets, r.Packets, diff, bound)
		if r.SamplingRate != rate {
			t.Errorf("%s: sampling_rate %d, want %d", k, r.SamplingRate, rate)
		}
		if r.Packets != rate*r.SampledPackets || r.Bytes != rate*r.SampledBytes {
			t.Errorf("%s: packets %d bytes %d from %d samples of %d bytes: want %d x the samples", k, r.Packets, r.Bytes, r.SampledPackets, r.SampledBytes, rate)
		}
		if r.SampledBytes != r.SampledPackets*uint64(w.frameLen) {
			t.Errorf("%s: %d sampled bytes in %d samples of %d-byte frames", k, r.SampledBytes, r.SampledPackets, w.frameLen)
		}
		if diff > bound {
			t.Errorf("%s: estimate %d packets, sent %d: off by %.0f, more than the 5-sigma bound %.0f", k, r.Packets, w.n, diff, bound)
		}
	}
}
