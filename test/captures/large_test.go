package captures

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// TestLarge reads a small Large capture back and checks it against what
// Large says it wrote: packet and conversation counts, per-key totals,
// time order and bounds; and that the same seed gives the same bytes and
// another seed other bytes.
func TestLarge(t *testing.T) {
	cfg := LargeConfig{Packets: 30_000, Flows: 2_000, Seed: 7, Duration: 120 * time.Second, Keys: true}
	var buf bytes.Buffer
	stats, err := Large(&buf, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	keys := make(map[Key]KeyStats)
	convs := make(map[Key]bool)
	var prev time.Time
	var packets, byteCount, v6, udp uint64
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ci.Timestamp.Before(prev) {
			t.Fatalf("packet %d at %s is before the previous one at %s", packets+1, ci.Timestamp, prev)
		}
		prev = ci.Timestamp
		k, _, _ := decodeKey(gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default))
		if k.Proto != 6 && k.Proto != 17 {
			t.Fatalf("packet %d: protocol %d", packets+1, k.Proto)
		}
		ks := keys[k]
		ks.Packets++
		ks.Bytes += uint64(ci.Length)
		ks.BytesSquared += uint64(ci.Length * ci.Length)
		keys[k] = ks
		c := k
		if c.DstPort > c.SrcPort { // clients use ports >= 10000, servers below
			c = c.Reverse()
		}
		if !convs[c] {
			convs[c] = true
			if k.Src.Is6() {
				v6++
			}
			if k.Proto == 17 {
				udp++
			}
		}
		packets++
		byteCount += uint64(ci.Length)
	}
	if packets != uint64(cfg.Packets) || stats.Packets != packets || stats.Bytes != byteCount {
		t.Errorf("read %d packets %d bytes; asked %d, Large says %d packets %d bytes", packets, byteCount, cfg.Packets, stats.Packets, stats.Bytes)
	}
	if len(convs) != cfg.Flows || stats.Conversations != cfg.Flows || stats.Unidirectional != len(keys) {
		t.Errorf("read %d conversations %d keys; asked %d, Large says %d and %d", len(convs), len(keys), cfg.Flows, stats.Conversations, stats.Unidirectional)
	}
	if int(v6) != stats.IPv6 || int(udp) != stats.UDP || v6 == 0 || udp == 0 || v6 > udp {
		t.Errorf("read %d IPv6 and %d UDP conversations, Large says %d and %d", v6, udp, stats.IPv6, stats.UDP)
	}
	if diff := cmp.Diff(stats.Keys, keys); diff != "" {
		t.Errorf("per-key totals (-Large +read back):\n%s", diff)
	}
	if span := stats.End.Sub(stats.Start); span > cfg.Duration || span < cfg.Duration*9/10 {
		t.Errorf("capture spans %s, want about %s and no more", span, cfg.Duration)
	}
	// Heavy tail: the largest conversation holds far more than the mean.
	if mean := cfg.Packets / cfg.Flows; stats.MaxFlowPackets < 20*mean {
		t.Errorf("largest conversation %d packets, mean %d: not heavy-tailed", stats.MaxFlowPackets, mean)
	}

	var again, other bytes.Buffer
	if _, err := Large(&again, cfg); err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(buf.Bytes()) != sha256.Sum256(again.Bytes()) {
		t.Error("same seed, different bytes")
	}
	cfg.Seed++
	if _, err := Large(&other, cfg); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(buf.Bytes(), other.Bytes()) {
		t.Error("another seed, same bytes")
	}
}
