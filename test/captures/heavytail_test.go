package captures

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// TestHeavyTailed reads a default HeavyTailed capture back with gopacket
// and checks it against the truth HeavyTailed returns: per key and per
// destination totals, time order and bounds, snap length, SYN first and
// FIN last in TCP flows; and the shape it promises: mostly small flows, a
// few of 10^4 packets or more, skewed destinations, both families and
// both protocols, bulk flows of mostly MTU frames. The same seed gives
// the same bytes, another seed other bytes.
func TestHeavyTailed(t *testing.T) {
	var buf bytes.Buffer
	start := time.Now()
	stats, err := HeavyTailed(&buf, HeavyTailedConfig{Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d flows, %d packets, %d bytes (%d in the file) in %s; largest flow %d packets",
		stats.Flows, stats.Packets, stats.Bytes, buf.Len(), time.Since(start).Round(time.Millisecond), stats.MaxFlowPackets)

	r, err := pcapgo.NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	keys := make(map[Key]Counts)
	dsts := make(map[netip.Addr]Counts)
	mtu := make(map[Key]uint64) // MTU frames per key
	type order struct {
		last         time.Time
		first, flags uint8 // TCP flags of the first and the latest packet
	}
	orders := make(map[Key]*order)
	var prev time.Time
	var packets uint64
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		packets++
		if ci.Timestamp.Before(prev) || ci.Timestamp.Before(stats.Start) || !ci.Timestamp.Before(stats.Start.Add(stats.Duration)) {
			t.Fatalf("packet %d at %s: out of order or outside [%s, +%s)", packets, ci.Timestamp, stats.Start, stats.Duration)
		}
		prev = ci.Timestamp
		if len(data) != min(ci.Length, 96) {
			t.Fatalf("packet %d: %d bytes kept of %d, want the first 96", packets, len(data), ci.Length)
		}
		k, _, flags := decodeKey(gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default))
		if k.Proto != 6 && k.Proto != 17 || !k.Dst.IsValid() {
			t.Fatalf("packet %d: key %s", packets, k)
		}
		switch o := orders[k]; {
		case o == nil:
			orders[k] = &order{last: ci.Timestamp, first: flags, flags: flags}
		case !o.last.Before(ci.Timestamp) || o.flags&FIN != 0:
			t.Fatalf("packet %d of %s at %s: not after the previous one of its flow at %s, or after its FIN", packets, k, ci.Timestamp, o.last)
		default:
			o.last, o.flags = ci.Timestamp, flags
		}
		c := keys[k]
		c.Packets++
		c.Bytes += uint64(ci.Length)
		keys[k] = c
		d := dsts[k.Dst]
		d.Packets++
		d.Bytes += uint64(ci.Length)
		dsts[k.Dst] = d
		if ci.Length == 1514 {
			mtu[k]++
		}
	}
	if diff := cmp.Diff(keys, stats.Keys); diff != "" {
		t.Errorf("per key totals (-read, +returned):\n%s", diff)
	}
	if diff := cmp.Diff(dsts, stats.Dsts); diff != "" {
		t.Errorf("per destination totals (-read, +returned):\n%s", diff)
	}
	var bytesRead uint64
	for k, c := range keys {
		bytesRead += c.Bytes
		if o := orders[k]; k.Proto == 6 && c.Packets >= 3 && (o.first != SYN || o.flags != FIN|ACK) {
			t.Errorf("%s: first packet's flags %#x, last's %#x; want SYN first and FIN last", k, o.first, o.flags)
		}
	}
	if packets != stats.Packets || bytesRead != stats.Bytes || len(keys) != stats.Flows || stats.Flows != 4000 {
		t.Errorf("read %d packets %d bytes %d keys; returned %d, %d, %d (want 4000 flows)",
			packets, bytesRead, len(keys), stats.Packets, stats.Bytes, stats.Flows)
	}

	// The shape.
	var small, huge, bulkFrames, bulkMTU int
	var v6, udp int
	for k, c := range keys {
		switch {
		case c.Packets <= 10:
			small++
		case c.Packets >= 10_000:
			huge++
		}
		if c.Packets > 1000 {
			bulkFrames += int(c.Packets)
			bulkMTU += int(mtu[k])
		}
		if k.Dst.Is6() {
			v6++
		}
		if k.Proto == 17 {
			udp++
		}
	}
	if small < 3200 || huge < 2 || huge > 20 {
		t.Errorf("%d flows of at most 10 packets and %d of 10^4 or more; want most and a few", small, huge)
	}
	if share := float64(bulkMTU) / float64(bulkFrames); share < 0.7 {
		t.Errorf("flows of more than 1000 packets: %.2f of frames are MTU-sized, want most", share)
	}
	if v6 != stats.IPv6 || udp != stats.UDP || v6 < 200 || udp < 800 || v6 > udp {
		t.Errorf("%d IPv6 and %d UDP flows (returned %d and %d)", v6, udp, stats.IPv6, stats.UDP)
	}
	perDst := make([]int, 0, len(dsts))
	flowsTo := make(map[netip.Addr]int)
	for k := range keys {
		flowsTo[k.Dst]++
	}
	for _, n := range flowsTo {
		perDst = append(perDst, n)
	}
	slices.Sort(perDst)
	slices.Reverse(perDst)
	if len(perDst) < 300 || perDst[0] < 200 || perDst[len(perDst)/2] > 5 {
		t.Errorf("%d destinations; most popular has %d flows, median %d: want many, skewed", len(perDst), perDst[0], perDst[len(perDst)/2])
	}

	var again bytes.Buffer
	if _, err := HeavyTailed(&again, HeavyTailedConfig{Seed: 3}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("the same seed wrote different bytes")
	}
	again.Reset()
	if _, err := HeavyTailed(&again, HeavyTailedConfig{Seed: 4}); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("another seed wrote the same bytes")
	}
}

func BenchmarkHeavyTailed(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := HeavyTailed(io.Discard, HeavyTailedConfig{Seed: int64(i)}); err != nil {
			b.Fatal(err)
		}
	}
}
