package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
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

// Bounds of every wait in the flow and reload tests.
const (
	vigilLifetime = 4 * time.Minute  // a vigil process is killed after this
	readyTimeout  = 20 * time.Second // vigil attached and serving /readyz
	exitTimeout   = 30 * time.Second // vigil exits after SIGTERM
	arriveTimeout = 10 * time.Second // traffic sent has arrived
	quiet         = time.Second      // no lab traffic for this long before we compare
	// clockSlack is how far a record's kernel timestamps may lie outside
	// the wall-clock interval in which the test sent the packets.
	clockSlack = 500 * time.Millisecond
)

// vigilProc is `vigil run` in the sensor namespace of a lab.
type vigilProc struct {
	t      *testing.T
	lab    *netlab.Lab
	addr   string // metrics address inside the sensor namespace
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
	exited chan struct{}
	err    error // Wait's result, once exited is closed
}

// startVigil starts `vigil run args...` inside the lab's sensor
// namespace (nsenter execs vigil, so cmd.Process is vigil itself) and
// waits until /readyz answers 200 on addr. It is killed at cleanup if
// still running.
func startVigil(t *testing.T, lab *netlab.Lab, bin, addr string, args ...string) *vigilProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), vigilLifetime)
	v := &vigilProc{t: t, lab: lab, addr: addr, exited: make(chan struct{})}
	v.cmd = exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + lab.Sensor.Name, bin, "run"}, args...)...)
	v.cmd.Stdout = &v.stdout
	v.cmd.Stderr = &v.stderr
	t.Logf("vigil run %s", strings.Join(args, " "))
	if err := v.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		v.err = v.cmd.Wait()
		cancel()
		close(v.exited)
	}()
	t.Cleanup(func() {
		if v.running() {
			v.cmd.Process.Kill()
		}
		<-v.exited
		if t.Failed() {
			t.Logf("vigil stderr:\n%s", v.stderr.String())
		}
	})
	deadline := time.Now().Add(readyTimeout)
	for {
		code, _, err := v.scrape("/readyz")
		if err == nil && code == http.StatusOK {
			return v
		}
		if !v.running() {
			t.Fatalf("vigil exited before ready: %v\n%s", v.err, v.stderr.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("vigil not ready after %s (last: %d %v)\n%s", readyTimeout, code, err, v.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (v *vigilProc) running() bool {
	select {
	case <-v.exited:
		return false
	default:
		return true
	}
}

// scrape GETs path from vigil's HTTP server, dialing from a thread
// inside the sensor namespace (its loopback is not the host's).
func (v *vigilProc) scrape(path string) (int, string, error) {
	var conn net.Conn
	if err := v.lab.Sensor.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", v.addr, time.Second)
		return err
	}); err != nil {
		return 0, "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: vigil\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metrics scrapes /metrics; it fails the test if vigil does not answer.
func (v *vigilProc) metrics() promText {
	v.t.Helper()
	code, body, err := v.scrape("/metrics")
	if err != nil || code != http.StatusOK {
		v.t.Fatalf("scraping /metrics: %d %v\n%s", code, err, v.stderr.String())
	}
	return promText(body)
}

// waitMetric polls /metrics until cond holds, at most timeout, and
// returns the last scrape. It fails the test (saying what) otherwise.
func (v *vigilProc) waitMetric(what string, timeout time.Duration, cond func(promText) bool) promText {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := v.metrics()
		if cond(m) {
			return m
		}
		if !v.running() {
			v.t.Fatalf("vigil exited (%v) while waiting for %s\n%s", v.err, what, v.stderr.String())
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("after %s: still not %s; metrics:\n%s", timeout, what, grepVigil(string(m)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (v *vigilProc) signal(sig syscall.Signal) {
	v.t.Helper()
	if err := v.cmd.Process.Signal(sig); err != nil {
		v.t.Fatalf("sending %v to vigil: %v", sig, err)
	}
}

// stop sends SIGTERM and requires a clean exit (status 0) in time.
func (v *vigilProc) stop() {
	v.t.Helper()
	v.stopWith(syscall.SIGTERM)
}

// stopWith is stop with another signal (SIGINT).
func (v *vigilProc) stopWith(sig syscall.Signal) {
	v.t.Helper()
	v.signal(sig)
	select {
	case <-v.exited:
	case <-time.After(exitTimeout):
		v.cmd.Process.Kill()
		<-v.exited
		v.t.Fatalf("vigil still running %s after %v\n%s", exitTimeout, sig, v.stderr.String())
	}
	if v.err != nil {
		v.t.Fatalf("vigil exit after %v: %v, want status 0\n%s", sig, v.err, v.stderr.String())
	}
}

// promText is a Prometheus text exposition.
type promText string

// sum adds the values of every series of the metric whose labels
// contain all the given `name="value"` pairs; ok is false if none does.
func (p promText) sum(name string, labels ...string) (total float64, ok bool) {
	for _, line := range strings.Split(string(p), "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		var lbl string
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndex(rest, "}")
			if end < 0 {
				continue
			}
			lbl, rest = rest[1:end], rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // another metric with this prefix
		}
		match := true
		for _, l := range labels {
			if !slices.Contains(strings.Split(lbl, ","), l) {
				match = false
			}
		}
		if !match {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			continue
		}
		total += f
		ok = true
	}
	return total, ok
}

// get is sum that fails the test when no series matches.
func (p promText) get(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, ok := p.sum(name, labels...)
	if !ok {
		t.Fatalf("no series %s{%s} in the scrape:\n%s", name, strings.Join(labels, ","), grepVigil(string(p)))
	}
	return v
}

// counter is sum for a counter that may not be exported before it
// first counts: no series reads as 0.
func (p promText) counter(name string, labels ...string) float64 {
	v, _ := p.sum(name, labels...)
	return v
}

// flowRecord is one line of --flows-out, as docs/FLOWS.md defines it.
type flowRecord struct {
	Kind           string    `json:"kind"`
	Start          time.Time `json:"start"`
	End            time.Time `json:"end"`
	Interface      string    `json:"interface"`
	Ifindex        int       `json:"ifindex"`
	Direction      string    `json:"direction"`
	IPVersion      int       `json:"ip_version"`
	SrcAddr        string    `json:"src_addr"`
	DstAddr        string    `json:"dst_addr"`
	SrcPort        uint16    `json:"src_port"`
	DstPort        uint16    `json:"dst_port"`
	Proto          uint8     `json:"proto"`
	Packets        uint64    `json:"packets"`
	Bytes          uint64    `json:"bytes"`
	SampledPackets uint64    `json:"sampled_packets"`
	SampledBytes   uint64    `json:"sampled_bytes"`
	SamplingRate   uint32    `json:"sampling_rate"`
	TCPFlags       uint8     `json:"tcp_flags"`
	TOS            uint8     `json:"tos"`
	TTLMin         uint8     `json:"ttl_min"`
	TTLMax         uint8     `json:"ttl_max"`
	VLAN           uint16    `json:"vlan"`
	InnerVLAN      uint16    `json:"inner_vlan"`
	Tunnel         string    `json:"tunnel"`
	VNI            uint32    `json:"vni"`
	EndReason      string    `json:"end_reason"`
	Line           int       `json:"-"`
}

// flowKey is what identifies a flow in these tests (one interface, one
// direction, no VLAN or tunnel).
type flowKey struct {
	IPVersion        int
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
}

func (k flowKey) String() string {
	return fmt.Sprintf("proto %d %s:%d -> %s:%d", k.Proto, k.Src, k.SrcPort, k.Dst, k.DstPort)
}

func (r *flowRecord) key() flowKey {
	return flowKey{
		IPVersion: r.IPVersion,
		Src:       netip.MustParseAddr(r.SrcAddr),
		Dst:       netip.MustParseAddr(r.DstAddr),
		Proto:     r.Proto,
		SrcPort:   r.SrcPort,
		DstPort:   r.DstPort,
	}
}

var endReasons = []string{"idle", "active", "tcp_end", "shutdown", "evicted"}

// parseFlows reads JSON lines of flow records and checks every line
// against the documented schema: every key present with its JSON type
// and a valid value. Lines of kind "alert" are skipped.
func parseFlows(t *testing.T, name string, data []byte) []flowRecord {
	t.Helper()
	var recs []flowRecord
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		where := fmt.Sprintf("%s:%d", name, line)
		var raw map[string]any
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("%s: not a JSON object: %v: %s", where, err, sc.Text())
		}
		if raw["kind"] == "alert" {
			continue
		}
		checkFlowSchema(t, where, raw)
		var r flowRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v: %s", where, err, sc.Text())
		}
		r.Line = line
		checkFlowValues(t, where, &r)
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return recs
}

func checkFlowSchema(t *testing.T, where string, raw map[string]any) {
	t.Helper()
	for _, k := range []string{"kind", "start", "end", "interface", "direction", "src_addr", "dst_addr", "end_reason"} {
		if _, ok := raw[k].(string); !ok {
			t.Errorf("%s: %q is %T (%v), want a string", where, k, raw[k], raw[k])
		}
	}
	for _, k := range []string{"start", "end"} {
		s, _ := raw[k].(string)
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil || !strings.HasSuffix(s, "Z") {
			t.Errorf("%s: %q = %q, want an RFC 3339 UTC timestamp ending in Z (%v)", where, k, s, err)
		}
	}
	maxOf := map[string]uint64{
		"ifindex": math.MaxUint32, "ip_version": 6, "src_port": 65535, "dst_port": 65535, "proto": 255,
		"packets": math.MaxUint64, "bytes": math.MaxUint64, "sampled_packets": math.MaxUint64,
		"sampled_bytes": math.MaxUint64, "sampling_rate": math.MaxUint32, "tcp_flags": 255,
		"tos": 255, "ttl_min": 255, "ttl_max": 255,
	}
	optional := map[string]uint64{"vlan": 4095, "inner_vlan": 4095}
	// tunnel ("vxlan" or "geneve") and vni come together, for
	// decapsulated traffic only.
	tunnel, hasTunnel := raw["tunnel"]
	if _, hasVNI := raw["vni"]; hasTunnel != hasVNI {
		t.Errorf("%s: tunnel %v and vni %v: documented as present together", where, raw["tunnel"], raw["vni"])
	}
	if hasTunnel {
		if tunnel != "vxlan" && tunnel != "geneve" {
			t.Errorf("%s: tunnel %v, want \"vxlan\" or \"geneve\"", where, tunnel)
		}
		maxOf["vni"] = 1<<24 - 1
	}
	check := func(k string, max uint64, required bool) {
		v, present := raw[k]
		if !present {
			if required {
				t.Errorf("%s: key %q missing", where, k)
			}
			return
		}
		n, ok := v.(json.Number)
		if !ok {
			t.Errorf("%s: %q is %T (%v), want a number", where, k, v, v)
			return
		}
		u, err := strconv.ParseUint(string(n), 10, 64)
		if err != nil || u > max {
			t.Errorf("%s: %q = %s, want an integer in 0..%d", where, k, n, max)
		}
		if !required && u == 0 {
			t.Errorf("%s: %q = 0, documented as omitted when 0", where, k)
		}
	}
	for k, m := range maxOf {
		check(k, m, true)
	}
	for k, m := range optional {
		check(k, m, false)
	}
}

func checkFlowValues(t *testing.T, where string, r *flowRecord) {
	t.Helper()
	if r.Kind != "flow" {
		t.Errorf("%s: kind %q, want \"flow\"", where, r.Kind)
	}
	if r.End.Before(r.Start) {
		t.Errorf("%s: end %s before start %s", where, r.End, r.Start)
	}
	if r.Direction != "ingress" && r.Direction != "egress" {
		t.Errorf("%s: direction %q", where, r.Direction)
	}
	for _, a := range []string{r.SrcAddr, r.DstAddr} {
		ip, err := netip.ParseAddr(a)
		switch {
		case err != nil:
			t.Errorf("%s: address %q: %v", where, a, err)
		case ip.String() != a:
			t.Errorf("%s: address %q not in canonical form %q", where, a, ip)
		case r.IPVersion == 4 && !ip.Is4(), r.IPVersion == 6 && !ip.Is6(), r.IPVersion != 4 && r.IPVersion != 6:
			t.Errorf("%s: address %q with ip_version %d", where, a, r.IPVersion)
		}
	}
	if !slices.Contains(endReasons, r.EndReason) {
		t.Errorf("%s: end_reason %q not one of %v", where, r.EndReason, endReasons)
	}
	if r.SampledPackets == 0 || r.SamplingRate == 0 || r.Packets < r.SampledPackets || r.Bytes < r.SampledBytes {
		t.Errorf("%s: packets %d bytes %d sampled %d/%d rate %d: inconsistent",
			where, r.Packets, r.Bytes, r.SampledPackets, r.SampledBytes, r.SamplingRate)
	}
	if r.TTLMin > r.TTLMax {
		t.Errorf("%s: ttl_min %d > ttl_max %d", where, r.TTLMin, r.TTLMax)
	}
	if r.Proto != 6 && r.TCPFlags != 0 {
		t.Errorf("%s: tcp_flags %#x on protocol %d", where, r.TCPFlags, r.Proto)
	}
	if (r.Proto == 1 || r.Proto == 58) && r.SrcPort != 0 {
		t.Errorf("%s: ICMP src_port %d, want 0", where, r.SrcPort)
	}
}

// readFlowsFile reads and checks a flows file; a missing file has no
// records.
func readFlowsFile(t *testing.T, path string) []flowRecord {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return parseFlows(t, filepath.Base(path), data)
}

// byKey groups records by flow key.
func byKey(recs []flowRecord) map[flowKey][]flowRecord {
	m := map[flowKey][]flowRecord{}
	for _, r := range recs {
		m[r.key()] = append(m[r.key()], r)
	}
	return m
}

// truth is what really crossed the wire for one flow.
type truth struct {
	packets, bytes uint64
	tcpFlags       uint8
	tos            uint8 // of the first packet
	ttlMin, ttlMax uint8
	first, last    time.Time // wall clock before the first and after the last packet was sent
}

func (w *truth) addFrame(length int, fi netlab.FrameInfo) {
	if w.packets == 0 {
		w.tos, w.ttlMin, w.ttlMax = fi.TOS, fi.TTL, fi.TTL
	}
	w.packets++
	w.bytes += uint64(length)
	w.tcpFlags |= fi.TCPFlags
	w.ttlMin = min(w.ttlMin, fi.TTL)
	w.ttlMax = max(w.ttlMax, fi.TTL)
}

func frameKey(fi netlab.FrameInfo) flowKey {
	return flowKey{IPVersion: fi.IPVersion, Src: fi.Src, Dst: fi.Dst, Proto: fi.Proto, SrcPort: fi.SrcPort, DstPort: fi.DstPort}
}

func udpKey(s *netlab.Sender) flowKey {
	return flowKey{IPVersion: ipVersion(s.Dst.Addr()), Src: s.Src.Addr(), Dst: s.Dst.Addr(), Proto: 17, SrcPort: s.Src.Port(), DstPort: s.Dst.Port()}
}

func ipVersion(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func labUp(t *testing.T) *netlab.Lab {
	t.Helper()
	lab := netlab.New(t)
	if out, err := exec.Command("ip", "-n", lab.Sensor.Name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v %s", err, out)
	}
	return lab
}

// waitSinks waits until each sink has received its count.
func waitSinks(t *testing.T, sinks map[*netlab.Sink]uint64) {
	t.Helper()
	deadline := time.Now().Add(arriveTimeout)
	for s, n := range sinks {
		for s.Received() < n {
			if time.Now().After(deadline) {
				t.Fatalf("lab: a UDP sink received %d of %d datagrams", s.Received(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if s.Received() != n {
			t.Fatalf("lab: a UDP sink received %d datagrams, %d were sent", s.Received(), n)
		}
	}
}

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
	bin := buildVigil(t)
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

	m := v.metrics()
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
	bin := buildVigil(t)
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

// TestFlowsEvictedAtMaxFlows runs vigil with flows.max_flows 3 at
// 1-in-1 and sends 10 UDP flows one after the other (20 datagrams each,
// 150 ms apart). The table must never hold more than 3 flows
// (vigil_flows_active); every flow past the bound must push the least
// recently seen flow out early: with R records in all (our 10 flows and
// any packet the kernel sent on its own), the R-3 flows seen least
// recently end "evicted" and the 3 most recent "shutdown", and
// vigil_flow_evictions_total and vigil_flows_expired_total
// {reason="evicted"} both count R-3. Every flow's figures stay exact.
func TestFlowsEvictedAtMaxFlows(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := buildVigil(t)
	lab := labUp(t)
	dir := t.TempDir()
	const metricsAddr = "127.0.0.1:19112"
	const maxFlows, nFlows, n = 3, 10, 20
	cfgPath := filepath.Join(dir, "vigil.yaml")
	flowsPath := filepath.Join(dir, "flows.jsonl")
	writeFile(t, cfgPath, fmt.Sprintf(`capture:
  interfaces: [%s]
  sample_rate: 1
flows:
  idle_timeout: 10m
  active_timeout: 1h
  max_flows: %d
  output: %q
http:
  listen: %s
`, netlab.SensorIf, maxFlows, flowsPath, metricsAddr))
	v := startVigil(t, lab, bin, metricsAddr, "--config", cfgPath)

	var keys []flowKey
	frameLen := map[flowKey]int{}
	maxActive := 0.0
	for i := range nFlows {
		port := uint16(7501 + i)
		sink := lab.NewSink(t, 4, port)
		s := lab.NewSender(t, 4, port, 30)
		if sent, err := s.Send(n); err != nil || sent != n {
			t.Fatalf("sent %d of %d: %v", sent, n, err)
		}
		waitSinks(t, map[*netlab.Sink]uint64{sink: n})
		keys = append(keys, udpKey(s))
		frameLen[udpKey(s)] = s.FrameLen()
		time.Sleep(150 * time.Millisecond) // past the reader's 100 ms flush: flows enter the table in order
		maxActive = max(maxActive, v.metrics().get(t, "vigil_flows_active"))
	}
	time.Sleep(quiet)
	m := v.metrics()
	scraped := time.Now()
	maxActive = max(maxActive, m.get(t, "vigil_flows_active"))
	if maxActive > maxFlows {
		t.Errorf("vigil_flows_active reached %v with flows.max_flows %d", maxActive, maxFlows)
	}
	evictions := m.counter("vigil_flow_evictions_total")
	expiredEvicted := m.counter("vigil_flows_expired_total", `reason="evicted"`)
	v.stop()

	recs := readFlowsFile(t, flowsPath)
	got := byKey(recs)
	for i, k := range keys {
		rs := got[k]
		if len(rs) != 1 {
			t.Errorf("flow %d (%s): %d records, want 1", i+1, k, len(rs))
			continue
		}
		r := rs[0]
		checkEstimate(t, fmt.Sprintf("flow %d", i+1), r.Packets, r.SampledPackets, r.Bytes, r.SampledBytes, r.SamplingRate, n, frameLen[k])
	}
	// Least recently seen first: order every record by its last packet.
	slices.SortFunc(recs, func(a, b flowRecord) int { return a.End.Compare(b.End) })
	wantEvicted := len(recs) - maxFlows
	var order []string
	for i, r := range recs {
		port := fmt.Sprint(r.DstPort)
		if j := slices.Index(keys, r.key()); j >= 0 {
			port = fmt.Sprintf("flow %d", j+1)
		}
		order = append(order, port+":"+r.EndReason)
		want := "shutdown"
		if i < wantEvicted {
			want = "evicted"
		}
		if r.EndReason != want {
			t.Errorf("record %d of %d by last packet (%s, last packet %s): end_reason %q, want %q",
				i+1, len(recs), r.key(), r.End.Format(time.RFC3339Nano), r.EndReason, want)
		}
	}
	t.Logf("records by last packet: %v; most flows active at once: %v", order, maxActive)
	// A flow the kernel started after the scrape evicted one more after it.
	late := 0
	for _, r := range recs {
		if r.Start.After(scraped) {
			late++
		}
	}
	if want := float64(wantEvicted - late); evictions != want || expiredEvicted != want {
		t.Errorf("vigil_flow_evictions_total %v, vigil_flows_expired_total{reason=\"evicted\"} %v; %d flows (%d after the scrape) with max_flows %d: want %v",
			evictions, expiredEvicted, len(recs), late, maxFlows, want)
	}
}

// checkJSONLog checks that every line of a --log-json stderr is a JSON
// object with time, level and msg, and that there is at least one.
func checkJSONLog(t *testing.T, stderr string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) == 0 || lines[0] == "" {
		t.Errorf("nothing logged with --log-json")
		return
	}
	for i, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Errorf("stderr line %d is not JSON with --log-json: %v: %s", i+1, err, l)
			continue
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k].(string); !ok {
				t.Errorf("stderr line %d: no string %q: %s", i+1, k, l)
			}
		}
	}
}
