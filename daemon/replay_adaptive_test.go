package daemon

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/vigil-sensor/vigil/flow"
)

// stepLevel is a stretch of constant packet rate.
type stepLevel struct {
	pps     int
	seconds int
}

// stepStart is when the step captures start: on a whole second.
var stepStart = time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)

// writeStepCapture writes UDP packets over 64 flows, evenly spaced at
// each level's rate, one level after the other from start, and returns
// the file's path and its packet count.
func writeStepCapture(t *testing.T, start time.Time, levels []stepLevel) (string, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "steps.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriterNanos(bw)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for fl := range 64 {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, byte(fl + 1)}, DstIP: net.IP{10, 0, 1, 1}}
		udp := &layers.UDP{SrcPort: layers.UDPPort(20000 + fl), DstPort: 53}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, eth, ip, udp, gopacket.Payload(make([]byte, 100))); err != nil {
			t.Fatal(err)
		}
		frames = append(frames, buf.Bytes())
	}
	at, n := start, 0
	for _, l := range levels {
		gap := time.Second / time.Duration(l.pps)
		for i := range l.pps * l.seconds {
			fr := frames[n%len(frames)]
			ci := gopacket.CaptureInfo{Timestamp: at.Add(time.Duration(i) * gap), CaptureLength: len(fr), Length: len(fr)}
			if err := w.WritePacket(ci, fr); err != nil {
				t.Fatal(err)
			}
			n++
		}
		at = at.Add(time.Duration(l.seconds) * time.Second)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return path, n
}

// An adaptive replay of 1k packets/s for 5 s, 100k for 5 s and 1k again
// at a budget of 2,000 samples per second of capture time: after the
// first second of each level, every packet is sampled below the budget
// and the stream is within ±20% of it above; the flow records' summed
// estimate holds the true packet count; a seed gives the same output.
func TestReplayAdaptiveStepsWithTheTraffic(t *testing.T) {
	const budget = 2000
	levels := []stepLevel{{1000, 5}, {100_000, 5}, {1000, 5}}
	start := stepStart
	capture, packets := writeStepCapture(t, start, levels)
	cfg := DefaultConfig()
	cfg.Detect.Enabled = false

	run := func(seed uint64) (ReplayStats, []byte, [15]int, [15]map[uint32]int, flow.Estimate) {
		t.Helper()
		var perSecond [15]int
		var ratesPerSecond [15]map[uint32]int
		var total flow.Estimate
		out := filepath.Join(t.TempDir(), "flows.json")
		st, err := Replay(context.Background(), ReplayOptions{
			Files: []string{capture}, Config: cfg, SampleRate: 1, SampleBudget: budget, Seed: seed, Output: out,
			onSamples: func(b []flow.Sample) {
				for i := range b {
					sec := int(b[i].Time().Sub(start) / time.Second)
					perSecond[sec]++
					if ratesPerSecond[sec] == nil {
						ratesPerSecond[sec] = map[uint32]int{}
					}
					ratesPerSecond[sec][b[i].SamplingRate]++
				}
			},
			onRecords: func(recs []flow.Record) {
				for i := range recs {
					total.Add(recs[i].PacketsEstimate())
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return st, raw, perSecond, ratesPerSecond, total
	}

	st, raw, perSecond, rates, total := run(1)
	t.Logf("samples per second %v; %+v; estimate %.0f %+v", perSecond, st, total.Value, total.Interval())
	if st.Packets != uint64(packets) {
		t.Fatalf("replay counted %d packets, the capture has %d", st.Packets, packets)
	}
	var sampled int
	for _, n := range perSecond {
		sampled += n
	}
	if st.Samples != uint64(sampled) {
		t.Errorf("stats say %d samples, the table was fed %d", st.Samples, sampled)
	}
	for sec, n := range perSecond {
		pps := levels[sec/5].pps
		if sec%5 == 0 {
			continue // the controller follows within the first second
		}
		if pps <= budget {
			if n != pps || rates[sec][1] != pps {
				t.Errorf("second %d at %d packets/s, under the budget: %d samples (rates %v), want every packet at 1 in 1", sec, pps, n, rates[sec])
			}
		} else if n < budget*8/10 || n > budget*12/10 {
			t.Errorf("second %d at %d packets/s: %d samples (rates %v), want %d ± 20%%", sec, pps, n, rates[sec], budget)
		}
	}
	if st.RateChanges == 0 || st.MinRate != 1 || st.Rate != 1 || st.MaxRate < 100_000/budget*8/10 || st.MaxRate > 100_000/budget*12/10 {
		t.Errorf("rates: %d changes, 1 in %d..%d, 1 in %d at the end; want changes, 1 in 1 to about 1 in %d and back",
			st.RateChanges, st.MinRate, st.MaxRate, st.Rate, 100_000/budget)
	}
	// The 95% interval, with twice its half-widths as slack.
	iv := total.Interval()
	lo, hi := total.Value-2*(total.Value-float64(iv.Lo)), total.Value+2*(float64(iv.Hi)-total.Value)
	if float64(packets) < lo || float64(packets) > hi {
		t.Errorf("flows estimate %.0f packets [%d, %d] (95%%), %d true: outside twice the interval", total.Value, iv.Lo, iv.Hi, packets)
	}
	if iv.Hi == iv.Lo {
		t.Errorf("interval [%d, %d] has no width: nothing was sampled below 1 in 1?", iv.Lo, iv.Hi)
	}

	st2, raw2, _, _, _ := run(1)
	if string(raw) != string(raw2) || st != st2 {
		t.Errorf("the same seed gave different output (%d and %d bytes) or stats %+v and %+v", len(raw), len(raw2), st, st2)
	}
	if _, raw3, _, _, _ := run(2); string(raw) == string(raw3) {
		t.Error("different seeds gave identical output")
	}
}

func TestReplaySampleBudgetErrors(t *testing.T) {
	capture := writeUDPCapture(t, 1, 10)
	cfg := DefaultConfig()
	cfg.Detect.Enabled = false
	_, err := Replay(context.Background(), ReplayOptions{Files: []string{capture}, Config: cfg, SampleRate: 1, SampleBudget: -1, Output: filepath.Join(t.TempDir(), "f")})
	if err == nil || !strings.Contains(err.Error(), "sample budget -1") {
		t.Errorf("negative budget: error %v, want one naming the budget", err)
	}
	cfg.Capture.Adaptive.MinRate, cfg.Capture.Adaptive.MaxRate = 10, 5
	_, err = Replay(context.Background(), ReplayOptions{Files: []string{capture}, Config: cfg, SampleRate: 1, SampleBudget: 100, Output: filepath.Join(t.TempDir(), "f")})
	if err == nil || !strings.Contains(err.Error(), "capture.adaptive") {
		t.Errorf("min_rate above max_rate: error %v, want one naming capture.adaptive", err)
	}
}

// A capture under the budget that starts just before a 100 ms boundary
// is sampled whole: the controller's first interval is a whole tick, not
// the 0.1 ms from the first packet to the boundary, which would read as
// a burst of 10k packets/s and raise the rate.
func TestReplayAdaptiveStartsOffTheTickGrid(t *testing.T) {
	capture, packets := writeStepCapture(t, stepStart.Add(99_900*time.Microsecond), []stepLevel{{1000, 3}})
	cfg := DefaultConfig()
	cfg.Detect.Enabled = false
	st, err := Replay(context.Background(), ReplayOptions{
		Files: []string{capture}, Config: cfg, SampleRate: 1, SampleBudget: 2000, Seed: 1,
		Output: filepath.Join(t.TempDir(), "flows.json"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Samples != uint64(packets) || st.RateChanges != 0 || st.MaxRate != 1 {
		t.Errorf("1,000 packets/s under a budget of 2,000: %d samples of %d packets, %d rate changes, up to 1 in %d; want every packet at 1 in 1",
			st.Samples, packets, st.RateChanges, st.MaxRate)
	}
}
