// Package replay checks `vigil replay` end to end: the built binary on
// the hand-made captures of test/captures against tshark's dissection of
// the same files and the generator's own knowledge, and at 1-in-N
// sampling against a statistical bound.
package replay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/captures"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// vigil builds cmd/vigil once for all the tests of the package.
func vigil(t *testing.T) string { return testutil.Vigil(t) }

// record is a flow record as docs/FLOWS.md describes it.
type record struct {
	Kind           string    `json:"kind"`
	Start          time.Time `json:"start"`
	End            time.Time `json:"end"`
	Interface      string    `json:"interface"`
	Ifindex        *uint32   `json:"ifindex"`
	Direction      string    `json:"direction"`
	IPVersion      int       `json:"ip_version"`
	Src            string    `json:"src_addr"`
	Dst            string    `json:"dst_addr"`
	SrcPort        uint16    `json:"src_port"`
	DstPort        uint16    `json:"dst_port"`
	Proto          uint8     `json:"proto"`
	Packets        uint64    `json:"packets"`
	Bytes          uint64    `json:"bytes"`
	SampledPackets uint64    `json:"sampled_packets"`
	SampledBytes   uint64    `json:"sampled_bytes"`
	SamplingRate   uint32    `json:"sampling_rate"`
	TCPFlags       uint8     `json:"tcp_flags"`
	VLAN           uint16    `json:"vlan"`
	VNI            uint32    `json:"vni"`
	EndReason      string    `json:"end_reason"`
}

func (r *record) key(t *testing.T) captures.Key {
	t.Helper()
	src, err1 := netip.ParseAddr(r.Src)
	dst, err2 := netip.ParseAddr(r.Dst)
	if err1 != nil || err2 != nil {
		t.Fatalf("record with addresses %q %q", r.Src, r.Dst)
	}
	return captures.Key{Src: src, Dst: dst, SrcPort: r.SrcPort, DstPort: r.DstPort, Proto: r.Proto}
}

// replay runs `vigil replay` with args and returns its raw output and the
// flow records in it.
func replay(t *testing.T, args ...string) ([]byte, []record) {
	t.Helper()
	cmd := exec.Command(vigil(t), append([]string{"replay"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\nstderr:\n%s", cmd, err, stderr.Bytes())
	}
	var recs []record
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("vigil replay line %q: %v", sc.Text(), err)
		}
		if r.Kind != "flow" {
			continue // other kinds (alerts) may come
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out, recs
}

// totals adds up the records of each key.
func totals(t *testing.T, recs []record) map[captures.Key]captures.Counts {
	t.Helper()
	got := make(map[captures.Key]captures.Counts)
	for _, r := range recs {
		k := r.key(t)
		n := got[k]
		n.Packets += r.Packets
		n.Bytes += r.Bytes
		got[k] = n
	}
	return got
}

// slicesOf lists the records of each key in start order.
func slicesOf(t *testing.T, recs []record) map[captures.Key][]captures.Slice {
	t.Helper()
	got := make(map[captures.Key][]captures.Slice)
	for _, r := range recs {
		k := r.key(t)
		got[k] = append(got[k], captures.Slice{
			Start: r.Start, Last: r.End, Packets: r.Packets, Bytes: r.Bytes,
			VLAN: r.VLAN, TCPFlags: r.TCPFlags, EndReason: r.EndReason,
		})
	}
	for _, ss := range got {
		slices.SortFunc(ss, func(a, b captures.Slice) int { return a.Start.Compare(b.Start) })
	}
	return got
}

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// TestReplayMatchesTshark replays each hand-made capture at sampling rate
// 1 and checks, per unidirectional 5-tuple, that the records add up to
// exactly the packets and bytes tshark counts in the same file; that
// tshark and the generator agree on those; and that the records are the
// slices the expiry policy makes of the generator's packets (record
// count, start, end, packets, bytes, VLAN, TCP flags, end reason).
func TestReplayMatchesTshark(t *testing.T) {
	tshark := requireTshark(t)
	caps, err := captures.Mixed()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	reasons := make(map[string]int)
	var maxActive, idleSplits int
	ok := t.Run("files", func(t *testing.T) {
		for _, c := range caps {
			t.Run(c.Name, func(t *testing.T) {
				t.Parallel()
				file := filepath.Join("testdata", c.Name)
				onDisk, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				if gen, err := c.Bytes(); err != nil || !bytes.Equal(gen, onDisk) {
					t.Fatalf("%s is not what the generator writes (%v): run go generate ./test/captures", file, err)
				}

				// The truth: tshark's dissection, checked against its own
				// conversation tables and against the generator.
				pkts := tsharkPackets(t, tshark, file)
				tables, total := tsharkConvs(t, tshark, file)
				checkConvs(t, pkts, tables, total)
				want := make(map[captures.Key]captures.Counts)
				vlans := make(map[captures.Key]uint16)
				for _, p := range pkts {
					n := want[p.key]
					n.Packets++
					n.Bytes += p.len
					want[p.key] = n
					vlans[p.key] = p.vlan
				}
				if diff := cmp.Diff(c.Truth(), want, addrCmp); diff != "" {
					t.Errorf("per-key totals (-generator +tshark):\n%s", diff)
				}

				_, recs := replay(t, "--sample-rate", "1", "--flows-out", "-", file)
				for _, r := range recs {
					k := r.key(t)
					wantV := 4
					if k.Src.Is6() {
						wantV = 6
					}
					if r.SamplingRate != 1 || r.SampledPackets != r.Packets || r.SampledBytes != r.Bytes ||
						r.IPVersion != wantV || r.Interface != "replay" || r.Ifindex == nil || *r.Ifindex != 0 ||
						r.VLAN != vlans[k] || r.VNI != 0 || r.End.Before(r.Start) || (r.Direction != "ingress" && r.Direction != "egress") {
						t.Errorf("record %+v: at rate 1 want sampling_rate 1, sampled = estimated, ip_version %d, interface \"replay\", ifindex 0, vlan %d (tshark), no vni, start <= end, direction ingress or egress", r, wantV, vlans[k])
					}
				}
				got, gotSlices := totals(t, recs), slicesOf(t, recs)
				if diff := cmp.Diff(got, want, addrCmp); diff != "" {
					t.Errorf("packets and bytes per key (-vigil +tshark):\n%s", diff)
				}

				wantSlices := c.ExpectedSlices(captures.IdleTimeout, captures.ActiveTimeout)
				if diff := cmp.Diff(gotSlices, wantSlices, addrCmp); diff != "" {
					t.Errorf("records per key (-vigil +expected from the generator's packets and the expiry policy):\n%s", diff)
				}
				nWant := 0
				for _, ss := range wantSlices {
					nWant += len(ss)
				}
				if len(recs) != nWant {
					t.Errorf("%d records, want %d", len(recs), nWant)
				}

				mu.Lock()
				defer mu.Unlock()
				for _, ss := range gotSlices {
					active := 0
					for i, s := range ss {
						reasons[s.EndReason]++
						if s.EndReason == "active" {
							active++
						}
						if s.EndReason == "idle" && i+1 < len(ss) {
							idleSplits++
						}
					}
					maxActive = max(maxActive, active)
				}
			})
		}
	})
	if !ok {
		return
	}
	// What the set is there to exercise, as vigil reported it: a flow cut
	// in several slices by the active timeout, one split by the idle
	// timeout, records ended by FIN/RST and by the end of the input.
	if maxActive < 2 {
		t.Errorf("no flow was cut twice by the active timeout (most: %d)", maxActive)
	}
	if idleSplits == 0 {
		t.Error("no flow was split by the idle timeout")
	}
	for _, r := range []string{"tcp_end", "shutdown"} {
		if reasons[r] == 0 {
			t.Errorf("no record ended %q", r)
		}
	}
	t.Logf("records by end reason: %v", reasons)
}

// TestReplayManyFiles replays all the hand-made captures in one run. In
// time order (they do not overlap) the records must be what the expiry
// policy makes of all their packets on one timeline, flows of one file
// ending idle while the next plays; in reverse order, where capture time
// jumps back, at least the totals per key must still be tshark's.
func TestReplayManyFiles(t *testing.T) {
	tshark := requireTshark(t)
	caps, err := captures.Mixed()
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[captures.Key]captures.Counts)
	all := &captures.Capture{Name: "all files"}
	var files []string
	for i, c := range caps {
		if i > 0 && !c.Packets[0].Time.After(caps[i-1].End()) {
			t.Fatalf("%s starts before %s ends", c.Name, caps[i-1].Name)
		}
		file := filepath.Join("testdata", c.Name)
		files = append(files, file)
		for _, p := range tsharkPackets(t, tshark, file) {
			n := want[p.key]
			n.Packets++
			n.Bytes += p.len
			want[p.key] = n
		}
		all.Packets = append(all.Packets, c.Packets...)
	}
	if err := all.CheckMargins(captures.IdleTimeout, captures.ActiveTimeout, captures.Margin); err != nil {
		t.Fatal(err)
	}
	wantSlices := all.ExpectedSlices(captures.IdleTimeout, captures.ActiveTimeout)

	_, recs := replay(t, append([]string{"--sample-rate", "1", "--flows-out", "-"}, files...)...)
	if diff := cmp.Diff(totals(t, recs), want, addrCmp); diff != "" {
		t.Errorf("files in time order: packets and bytes per key (-vigil +tshark):\n%s", diff)
	}
	gotSlices := slicesOf(t, recs)
	if diff := cmp.Diff(gotSlices, wantSlices, addrCmp); diff != "" {
		t.Errorf("files in time order: records per key (-vigil +expected):\n%s", diff)
	}

	slices.Reverse(files)
	_, recs = replay(t, append([]string{"--sample-rate", "1", "--flows-out", "-"}, files...)...)
	if diff := cmp.Diff(totals(t, recs), want, addrCmp); diff != "" {
		t.Errorf("files in reverse time order: packets and bytes per key (-vigil +tshark):\n%s", diff)
	}
}

// sampledRate and sampledSeed drive TestReplaySampled.
const (
	sampledRate = 10
	sampledSeed = 20260301
)

// TestReplaySampled replays a generated capture of 300,000 packets at 1
// in 10 and checks the estimates against the generator's exact counts.
//
// Vigil samples each packet independently with probability p = 1/N and
// weighs a sample N, so a key's packet estimate N·X, X ~ Binomial(P, p),
// has mean P and variance N²·P·p(1-p) = P(N-1); its byte estimate
// N·Σ Xᵢ·Lᵢ has mean B and variance (N-1)·Σ Lᵢ². The sums over all keys
// have the same form with the totals. The test allows 5 standard
// deviations (two-sided chance 6e-7 for a normal) on the totals and on
// every key of at least 1,000 packets, and the result is deterministic:
// the same seed gives the same output, byte for byte.
func TestReplaySampled(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sampled.pcap")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	truth, err := captures.Large(w, captures.LargeConfig{Packets: 300_000, Flows: 10_000, Seed: 3, Duration: 120 * time.Second, Keys: true})
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	seed := strconv.Itoa(sampledSeed)
	out, recs := replay(t, "--sample-rate", strconv.Itoa(sampledRate), "--seed", seed, "--flows-out", "-", file)
	if len(recs) == 0 {
		t.Fatal("no records")
	}
	const n = sampledRate
	got := make(map[captures.Key]captures.Counts)
	var est, sampled captures.Counts
	for _, r := range recs {
		if r.SamplingRate != n || r.Packets != n*r.SampledPackets || r.Bytes != n*r.SampledBytes || r.SampledPackets == 0 {
			t.Fatalf("record %+v: want sampling_rate %d, packets and bytes %d times the sampled ones", r, n, n)
		}
		k := r.key(t)
		if _, ok := truth.Keys[k]; !ok {
			t.Fatalf("record %+v: no such key in the capture", r)
		}
		c := got[k]
		c.Packets += r.Packets
		c.Bytes += r.Bytes
		got[k] = c
		est.Packets += r.Packets
		est.Bytes += r.Bytes
		sampled.Packets += r.SampledPackets
	}

	within := func(what string, estimate, exact uint64, sumSquares float64) {
		t.Helper()
		sigma := math.Sqrt((n - 1) * sumSquares)
		if d := math.Abs(float64(estimate) - float64(exact)); d > 5*sigma {
			t.Errorf("%s: estimate %d, truth %d: off by %.0f, more than 5 sigma (sigma %.1f)", what, estimate, exact, d, sigma)
		}
	}
	within("total packets", est.Packets, truth.Packets, float64(truth.Packets))
	within("total bytes", est.Bytes, truth.Bytes, float64(truth.BytesSquared))
	big := 0
	for k, ks := range truth.Keys {
		if ks.Packets < 1000 {
			continue
		}
		big++
		within(k.String()+" packets", got[k].Packets, ks.Packets, float64(ks.Packets))
		within(k.String()+" bytes", got[k].Bytes, ks.Bytes, float64(ks.BytesSquared))
	}
	if big < 10 {
		t.Errorf("only %d keys of 1,000 packets or more: the per-key check checks little", big)
	}
	t.Logf("%d of %d packets sampled; estimate %d packets %d bytes, truth %d packets %d bytes; %d records, %d keys checked one by one",
		sampled.Packets, truth.Packets, est.Packets, est.Bytes, truth.Packets, truth.Bytes, len(recs), big)

	again, _ := replay(t, "--sample-rate", strconv.Itoa(sampledRate), "--seed", seed, "--flows-out", "-", file)
	if !bytes.Equal(out, again) {
		t.Error("the same seed gave different output")
	}
	other, _ := replay(t, "--sample-rate", strconv.Itoa(sampledRate), "--seed", strconv.Itoa(sampledSeed+1), "--flows-out", "-", file)
	if bytes.Equal(out, other) {
		t.Error("another seed gave the same output")
	}
}
