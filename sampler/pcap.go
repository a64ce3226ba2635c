package sampler

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/vigil-sensor/vigil/flow"
)

// PcapConfig configures an offline capture source.
type PcapConfig struct {
	SampleRate uint32 // 1-in-N; 0 means 1
	Seed       uint64 // sampling is reproducible for a given seed
	Decap      Decap
	HeadBytes  int            // 0..MaxHeadBytes
	BatchSize  int            // 0: 512
	Ifindex    uint32         // reported for pcap files; pcapng carries its own
	Direction  flow.Direction // reported for every sample

	// Tick and OnTick step a controller on capture time, as `vigil run`
	// steps it on the wall clock. OnTick is called at the first packet
	// (now: the multiple of Tick at or before it) and then each time
	// capture time reaches a multiple of Tick (now: that multiple), so
	// ticks are always a whole Tick apart, however few packets are
	// sampled, with the counters of the packets before now. Every sample
	// taken before now has been handed out (to ReadFileFunc's callback,
	// or sent on Read's channel) when OnTick runs; it may call
	// SetSampleRate, which applies from the packet that crossed.
	//
	// Ticks follow the latest timestamp read: a packet out of order, or
	// a file earlier than the one before, fires none. A gap of more than
	// maxTickGap ticks without packets (a broken clock) fires the first
	// maxTickGap and then jumps to the last multiple before the packet.
	// Tick 0 or a nil OnTick: no ticks.
	Tick   time.Duration
	OnTick func(now int64, st InterfaceStats)
}

// maxTickGap bounds the ticks one packet can fire: 4,096 (6.8 minutes
// at 100 ms) is far past where a controller stops changing its rate
// (a fall of 3x per step reaches 1-in-1 from any rate within 21 steps),
// and keeps a hostile capture of packets hours apart from costing
// millions of controller steps per packet (it was 65,536).
const maxTickGap = 1 << 12

// PcapSource reads a pcap or pcapng file and produces the samples the
// BPF program would produce for the same frames: same parser semantics,
// the same 1-in-N Bernoulli sampling (seeded), timestamps from the
// capture, guarded by a TimeGuard so that one bad timestamp cannot
// move the clock. Every packet is counted, sampled or not.
type PcapSource struct {
	cfg       PcapConfig
	threshold uint32
	rng       *rand.Rand
	stats     Stats
	packets   uint64
	bytes     uint64
	nextTick  int64 // capture time of the next tick; MaxInt64: none
	times     *TimeGuard
	held      []heldSample // packets the time guard holds, in order
}

// NewPcapSource returns a source with its own seeded sampler.
func NewPcapSource(cfg PcapConfig) (*PcapSource, error) {
	if cfg.HeadBytes < 0 || cfg.HeadBytes > MaxHeadBytes {
		return nil, fmt.Errorf("head bytes %d out of range 0..%d", cfg.HeadBytes, MaxHeadBytes)
	}
	cfg.SampleRate = max(cfg.SampleRate, 1)
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 512
	}
	if cfg.Tick < 0 {
		return nil, fmt.Errorf("tick %v is negative", cfg.Tick)
	}
	s := &PcapSource{
		cfg:       cfg,
		threshold: uint32(packRate(cfg.SampleRate) >> 32),
		rng:       rand.New(rand.NewPCG(cfg.Seed, 0x76696769)),
		nextTick:  math.MaxInt64,
		times:     NewTimeGuard(WallBound()),
	}
	if cfg.Tick > 0 && cfg.OnTick != nil {
		s.nextTick = math.MinInt64 // the first packet fires one
	}
	return s, nil
}

// SetSampleRate changes N for the packets read from now on, as the
// run-time knob does for the BPF programs: each sample says which rate
// it was taken at. It may be called from the batch callback of
// ReadFileFunc, between batches.
func (s *PcapSource) SetSampleRate(n uint32) {
	s.cfg.SampleRate = max(n, 1)
	s.threshold = uint32(packRate(s.cfg.SampleRate) >> 32)
}

// SampleRate returns the rate in force.
func (s *PcapSource) SampleRate() uint32 { return s.cfg.SampleRate }

// packetSource is what both pcapgo readers offer. The zero-copy read
// reuses its buffer (and pcapng's AncillaryData) on the next call: a
// frame is used only within its loop iteration, and the head bytes a
// sample keeps are copied into the batch's arena.
type packetSource interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	LinkType() layers.LinkType
}

// ReadFile replays one capture file into out, blocking when out is full:
// offline, nothing is dropped. It returns at the end of the file.
func (s *PcapSource) ReadFile(ctx context.Context, path string, out chan<- []flow.Sample) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := s.Read(ctx, f, out); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Read replays a pcap or pcapng stream into out, a new batch each time.
func (s *PcapSource) Read(ctx context.Context, r io.Reader, out chan<- []flow.Sample) error {
	return s.read(r, func(batch []flow.Sample) error {
		select {
		case out <- batch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, false)
}

// ReadFileFunc replays one capture file, calling fn with each batch of
// samples. The batch and its memory are reused once fn returns: this is
// the fast path for offline replay.
func (s *PcapSource) ReadFileFunc(ctx context.Context, path string, fn func([]flow.Sample) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = s.read(f, func(batch []flow.Sample) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(batch)
	}, true)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func (s *PcapSource) read(r io.Reader, emit func([]flow.Sample) error, reuse bool) error {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, err := br.Peek(4)
	if err != nil {
		return fmt.Errorf("reading capture header: %w", err)
	}
	var src packetSource
	var ng *pcapgo.NgReader
	if binary.LittleEndian.Uint32(magic) == 0x0a0d0d0a {
		// Interfaces of one pcapng file may differ in link type (mergecap
		// of Ethernet and raw IP captures): take each packet's own.
		opts := pcapgo.DefaultNgReaderOptions
		opts.WantMixedLinkType = true
		ng, err = pcapgo.NewNgReader(br, opts)
		src = ng
	} else {
		src, err = pcapgo.NewReader(br)
	}
	if err != nil {
		return fmt.Errorf("opening capture: %w", err)
	}
	curLink := src.LinkType()
	frameOffset, kind, linkErr := linkLayer(curLink)
	if linkErr != nil && ng == nil {
		return linkErr
	}

	batch := make([]flow.Sample, 0, s.cfg.BatchSize)
	var arena []byte
	first := s.packets // packets of earlier files: errors count this file's
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := emit(batch); err != nil {
			return err
		}
		if reuse {
			clear(batch)
			batch, arena = batch[:0], arena[:0]
		} else {
			batch, arena = make([]flow.Sample, 0, s.cfg.BatchSize), nil
		}
		return nil
	}
	// release hands out the packets the time guard held, with the times
	// it gives them now.
	release := func(times []int64) error {
		for i, t := range times {
			h := &s.held[i]
			if !h.sampled {
				continue
			}
			h.smp.Timestamp = t
			batch = append(batch, h.smp)
			if n := len(h.smp.Head); n > 0 {
				start := len(arena)
				arena = append(arena, h.smp.Head...)
				batch[len(batch)-1].Head = arena[start : start+n : start+n]
			}
			if len(batch) == cap(batch) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if len(times) > 0 {
			s.held = s.held[:copy(s.held, s.held[len(times):])]
		}
		return nil
	}
	for {
		data, ci, err := src.ZeroCopyReadPacketData()
		if err != nil {
			// The end of the file ends a jump the guard was holding
			// packets for: it was real.
			if rerr := release(s.times.End()); rerr != nil {
				return rerr
			}
			if ferr := flush(); ferr != nil || errors.Is(err, io.EOF) {
				return ferr
			}
			return fmt.Errorf("reading packet %d: %w (the %d before it were read)", s.packets-first+1, err, s.packets-first)
		}
		ts, act := s.times.Time(ci.Timestamp.UnixNano())
		if err := release(s.times.Released()); err != nil {
			return err
		}
		if act == TimeKeep && ts >= s.nextTick {
			if err := s.tick(ts, flush); err != nil {
				return err
			}
		}
		s.packets++
		s.bytes += uint64(ci.Length)

		sampled := s.rng.Uint32() <= s.threshold
		batch = append(batch, flow.Sample{})
		smp := &batch[len(batch)-1]
		if ng != nil && len(ci.AncillaryData) > 0 {
			if lt, ok := ci.AncillaryData[0].(layers.LinkType); ok && lt != curLink {
				curLink = lt
				frameOffset, kind, linkErr = linkLayer(lt)
			}
		}
		outcome := flow.OutcomeNotIP // a link type Vigil does not read
		if linkErr == nil {
			outcome = parseLink(data, ci.Length, frameOffset, kind, s.cfg.Decap, smp)
		}
		s.stats.Outcomes[outcome]++
		if act == TimeHold {
			// Held until the guard gives it a time: out of the batch, with
			// its own copy of the head bytes.
			h := heldSample{sampled: sampled}
			if sampled {
				s.fill(smp, ts, ci, ng != nil, outcome)
				h.smp = *smp
				h.smp.Head = append([]byte(nil), data[:min(s.cfg.HeadBytes, len(data))]...)
				s.stats.Samples++
			}
			s.held = append(s.held, h)
			batch = batch[:len(batch)-1]
			continue
		}
		if !sampled || act == TimeDrop {
			batch = batch[:len(batch)-1]
			continue
		}
		s.stats.Samples++
		s.fill(smp, ts, ci, ng != nil, outcome)
		if n := min(s.cfg.HeadBytes, len(data)); n > 0 {
			start := len(arena)
			arena = append(arena, data[:n]...)
			smp.Head = arena[start : start+n : start+n]
		}
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// fill sets the fields of a sample the parser does not: all but Head.
func (s *PcapSource) fill(smp *flow.Sample, ts int64, ci gopacket.CaptureInfo, ng bool, outcome flow.Outcome) {
	smp.Timestamp = ts
	smp.Ifindex = s.cfg.Ifindex
	if ng {
		smp.Ifindex = uint32(ci.InterfaceIndex)
	}
	smp.WireLen = uint32(ci.Length)
	smp.SamplingRate = s.cfg.SampleRate
	smp.Segments = 1
	smp.Direction = s.cfg.Direction
	smp.Outcome = outcome
}

// heldSample is a packet the time guard holds: its sample, if it was
// sampled, waits for the time the guard gives it.
type heldSample struct {
	sampled bool
	smp     flow.Sample
}

// tick fires the ticks a packet at capture time ts crosses, after
// handing out the samples taken before it.
func (s *PcapSource) tick(ts int64, flush func() error) error {
	if err := flush(); err != nil {
		return err
	}
	tick := int64(s.cfg.Tick)
	st := InterfaceStats{Packets: s.packets, Bytes: s.bytes, Frames: s.packets}
	if s.nextTick == math.MinInt64 {
		// The first tick is the multiple at or before the first packet,
		// so that every interval between ticks is a whole Tick long: a
		// controller reading one packet over a sliver of a tick would
		// see a burst that is not there.
		first := floorTick(ts, tick)
		s.cfg.OnTick(first, st)
		s.nextTick = first + tick
		return nil
	}
	for n := 0; ts >= s.nextTick; n++ {
		if n == maxTickGap {
			s.nextTick = floorTick(ts, tick)
		}
		s.cfg.OnTick(s.nextTick, st)
		s.nextTick += tick
	}
	return nil
}

// floorTick is the largest multiple of tick at or before ts.
func floorTick(ts, tick int64) int64 {
	r := ts % tick
	if r < 0 {
		r += tick
	}
	return ts - r
}

// linkKind is how a capture's frames start.
type linkKind uint8

const (
	linkEthernet linkKind = iota // an Ethernet header
	linkRawIP                    // the IP header; its version nibble tells v4 from v6
	linkSLL                      // Linux cooked: 16 bytes, protocol at bytes 14-15
)

// linkLayer says how frames of a link type start and where IP begins.
func linkLayer(lt layers.LinkType) (offset int, kind linkKind, err error) {
	switch lt {
	case layers.LinkTypeEthernet:
		return 0, linkEthernet, nil
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6,
		12: // DLT_RAW as some systems write it
		return 0, linkRawIP, nil
	case layers.LinkTypeLinuxSLL:
		return 16, linkSLL, nil
	}
	return 0, 0, fmt.Errorf("unsupported link type %s (%d): want Ethernet, raw IP or Linux cooked", lt, int(lt))
}

// parseLink parses a frame of any supported link type.
// parseLink parses a captured frame of wireLen bytes (more than
// len(data) when the capture's snaplen cut it: headers must be captured,
// lengths are checked against the wire).
func parseLink(data []byte, wireLen int, offset int, kind linkKind, decap Decap, s *flow.Sample) flow.Outcome {
	cut := max(0, wireLen-len(data))
	if kind == linkEthernet {
		p := frameParser{b: data, rem: len(data), cut: cut, s: s}
		return p.frame(decap)
	}
	if len(data) <= offset {
		return flow.OutcomeTruncated
	}
	var et uint16
	switch {
	case kind == linkSLL:
		et = binary.BigEndian.Uint16(data[14:16])
	case data[0]>>4 == 4:
		et = ethPIPv4
	case data[0]>>4 == 6:
		et = ethPIPv6
	}
	s.EtherType = et
	p := frameParser{b: data[offset:], rem: len(data) - offset, cut: cut, s: s}
	var flags, tflag flow.Flags
	ret := p.l3(et, &flags, decap)
	if ret == parseTunnel {
		ret = p.afterTunnel(&flags, &tflag)
	}
	s.Flags = flags
	return flow.Outcome(ret)
}

// TimeStats is what the source's TimeGuard changed: timestamps out of
// order, suspect, or impossible.
func (s *PcapSource) TimeStats() TimeStats { return s.times.Stats() }

// Stats returns what the source counted so far: every packet by parse
// outcome, and the samples it produced.
func (s *PcapSource) Stats() (Stats, InterfaceStats) {
	return s.stats, InterfaceStats{Packets: s.packets, Bytes: s.bytes, Frames: s.packets}
}
