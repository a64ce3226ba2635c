package sampler

// FuzzPcapSource: a capture file of any bytes, pcap or pcapng, read the
// way `vigil replay` reads it (ReadFileFunc, with the adaptive replay's
// ticks), ends with an error or at its end: no panic, no hang, and the
// counters add up.

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/vigil-sensor/vigil/flow"
)

func pcapSeeds(f *testing.F) {
	files, err := filepath.Glob("../test/replay/testdata/*.pcap*")
	if err != nil {
		f.Fatal(err)
	}
	if len(files) < 2 {
		f.Fatalf("only %d captures to seed the fuzzer with", len(files))
	}
	for i, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src, uint8(1), uint8(i))
		// The start of each: the fuzzer mutates small inputs best.
		f.Add(src[:min(len(src), 512)], uint8(3), uint8(i))
	}
	// Small captures of a few wire-case frames, in each format and link type.
	var frames [][]byte
	for _, c := range wireCases(f) {
		frames = append(frames, c.frame)
		if len(frames) == 4 {
			break
		}
	}
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	ci := func(i int, b []byte) gopacket.CaptureInfo {
		return gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * 150 * time.Millisecond), CaptureLength: len(b), Length: len(b)}
	}
	for _, lt := range []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeRaw, layers.LinkTypeLinuxSLL} {
		var buf bytes.Buffer
		w := pcapgo.NewWriterNanos(&buf)
		if err := w.WriteFileHeader(65535, lt); err != nil {
			f.Fatal(err)
		}
		for i, fr := range frames {
			if lt == layers.LinkTypeRaw {
				fr = fr[min(14, len(fr)):]
			}
			if err := w.WritePacket(ci(i, fr), fr); err != nil {
				f.Fatal(err)
			}
		}
		f.Add(bytes.Clone(buf.Bytes()), uint8(1), uint8(0))
	}
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
	if err != nil {
		f.Fatal(err)
	}
	for i, fr := range frames {
		if err := w.WritePacket(ci(i, fr), fr); err != nil {
			f.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Fatal(err)
	}
	f.Add(bytes.Clone(buf.Bytes()), uint8(1), uint8(1))
}

func FuzzPcapSource(f *testing.F) {
	pcapSeeds(f)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, capture []byte, rate, knobs uint8) {
		path := filepath.Join(dir, "f.pcap")
		if err := os.WriteFile(path, capture, 0o644); err != nil {
			t.Fatal(err)
		}
		var ticks uint64
		var lastTick int64
		cfg := PcapConfig{
			SampleRate: uint32(rate%4) + 1,
			Seed:       uint64(knobs),
			Decap:      Decap(knobs) & fxDecapBoth,
			HeadBytes:  int(knobs>>2) % (MaxHeadBytes + 1),
			BatchSize:  int(knobs%5) + 1,
			Ifindex:    7,
		}
		var src *PcapSource
		if knobs&0x80 != 0 {
			cfg.Tick = SamplingTick
			cfg.OnTick = func(now int64, _ InterfaceStats) {
				if ticks > 0 && now <= lastTick || now%int64(SamplingTick) != 0 {
					t.Errorf("tick at %d after %d", now, lastTick)
				}
				ticks++
				lastTick = now
				src.SetSampleRate(uint32(ticks%3) + 1)
			}
		}
		src, err := NewPcapSource(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var samples uint64
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- src.ReadFileFunc(ctx, path, func(batch []flow.Sample) error {
				if len(batch) == 0 || len(batch) > cfg.BatchSize {
					t.Errorf("a batch of %d samples (batch size %d)", len(batch), cfg.BatchSize)
				}
				for i := range batch {
					s := &batch[i]
					if len(s.Head) > cfg.HeadBytes {
						t.Errorf("%d head bytes kept, %d asked", len(s.Head), cfg.HeadBytes)
					}
					if s.SamplingRate < 1 || s.SamplingRate > 4 {
						t.Errorf("sample at rate %d", s.SamplingRate)
					}
					if int(s.Outcome) >= flow.NumOutcomes {
						t.Errorf("outcome %d", s.Outcome)
					}
				}
				samples += uint64(len(batch))
				return nil
			})
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("reading a %d-byte capture did not end in 30s", len(capture))
		}
		st, ist := src.Stats()
		if st.Samples != samples {
			t.Errorf("stats count %d samples, %d were handed out", st.Samples, samples)
		}
		if st.Packets() != ist.Packets || st.Samples > ist.Packets {
			t.Errorf("outcomes add up to %d packets, %d counted, %d sampled", st.Packets(), ist.Packets, st.Samples)
		}
		// A record header is 16 bytes: no more packets than that allows.
		if ist.Packets > uint64(len(capture))/16+1 {
			t.Errorf("%d packets from %d bytes", ist.Packets, len(capture))
		}
		// A packet whose timestamp is impossible before any good one has
		// no time (TimeGuard): no tick can be at it.
		if timed := ist.Packets - src.TimeStats().Untimed; cfg.OnTick != nil && timed > 0 && ticks == 0 {
			t.Errorf("%d packets with a time and no tick", timed)
		}
	})
}
