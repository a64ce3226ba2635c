package sampler

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/cilium/ebpf"
)

// Programs are the loaded BPF programs and maps of the capture path.
// One Programs value serves every interface: the maps (counters, ring
// buffer, sampling knob) are shared.
type Programs struct {
	objs    sensorObjects
	rate    atomic.Uint32
	ifRates *ebpf.Memory // the if_rate array, memory-mapped
	ifRate  [ifSlots]atomic.Uint32
}

// LoadOptions are the load-time settings of the BPF programs.
type LoadOptions struct {
	SampleRate     uint32 // initial 1-in-N; 0 means 1
	Decap          Decap  // tunnels to look into
	HeadBytes      int    // bytes of each sampled frame to copy, 0..128
	RingBufferSize int    // bytes, a power of two multiple of the page size; 0: 4 MiB
	WakeupBytes    int    // reader wakeup threshold in bytes; 0: 64 KiB
	MaxInterfaces  int    // counter slots for interfaces with ifindex >= 1024; 0: 1024
}

// LoadPrograms loads the capture programs into the kernel.
func LoadPrograms(opts LoadOptions) (*Programs, error) {
	if opts.HeadBytes < 0 || opts.HeadBytes > headMax {
		return nil, fmt.Errorf("head bytes %d out of range 0..%d", opts.HeadBytes, headMax)
	}
	spec, err := loadSensor()
	if err != nil {
		return nil, err
	}
	set := func(name string, v any) error {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("variable %s missing from BPF object", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
		return nil
	}
	wake := uint32(64 << 10)
	if opts.WakeupBytes > 0 {
		wake = uint32(opts.WakeupBytes)
	}
	rate := max(opts.SampleRate, 1)
	if err := errors.Join(
		set(sensorVarCfgDecap, uint32(opts.Decap)),
		set(sensorVarCfgHeadLen, uint32(opts.HeadBytes)),
		set(sensorVarCfgWakeupBytes, wake),
		set(sensorVarSampleCfg, packRate(rate)),
	); err != nil {
		return nil, err
	}
	if opts.RingBufferSize > 0 {
		spec.Maps[sensorMapSamples].MaxEntries = uint32(opts.RingBufferSize)
	}
	if opts.MaxInterfaces > 0 {
		spec.Maps[sensorMapIfStatsBig].MaxEntries = uint32(opts.MaxInterfaces)
	}

	p := &Programs{}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("loading BPF programs: %+v", ve)
		}
		return nil, fmt.Errorf("loading BPF programs: %w", err)
	}
	p.rate.Store(rate)
	if p.ifRates, err = p.objs.IfRate.Memory(); err != nil {
		p.objs.Close()
		return nil, fmt.Errorf("mapping the per-interface rates: %w", err)
	}
	return p, nil
}

// SetSampleRate changes N at run time, without reloading or re-attaching;
// the next packet is sampled with the new rate and says so. The word is
// written into the memory-mapped .data section with one aligned 8-byte
// store, so the program never reads a rate with another's threshold.
func (p *Programs) SetSampleRate(n uint32) error {
	n = max(n, 1)
	if err := p.objs.SampleCfg.Set(packRate(n)); err != nil {
		return fmt.Errorf("setting sample rate to %d: %w", n, err)
	}
	p.rate.Store(n)
	return nil
}

// SampleRate returns the global rate in force.
func (p *Programs) SampleRate() uint32 { return p.rate.Load() }

// SetInterfaceRate gives an interface (both directions) its own rate N,
// or with 0 makes it follow the global rate again. Only interfaces with
// an ifindex below MaxRateIfindex have a knob of their own.
func (p *Programs) SetInterfaceRate(ifindex, n uint32) error {
	if ifindex >= ifSlots {
		return fmt.Errorf("setting the rate of ifindex %d: only interfaces below ifindex %d have their own rate", ifindex, ifSlots)
	}
	var w [8]byte
	if n > 0 {
		binary.NativeEndian.PutUint64(w[:], packRate(n))
	}
	// One aligned 8-byte copy: the program never reads a torn word.
	if _, err := p.ifRates.WriteAt(w[:], int64(ifindex)*8); err != nil {
		return fmt.Errorf("setting the rate of ifindex %d to %d: %w", ifindex, n, err)
	}
	p.ifRate[ifindex].Store(n)
	return nil
}

// InterfaceRate returns the rate in force on an interface: its own, or
// the global one.
func (p *Programs) InterfaceRate(ifindex uint32) uint32 {
	if ifindex < ifSlots {
		if n := p.ifRate[ifindex].Load(); n > 0 {
			return n
		}
	}
	return p.rate.Load()
}

// Close unloads the programs and maps. Links must be closed first.
func (p *Programs) Close() error {
	return p.objs.Close()
}

const headMax = len(sensorVigilSampleHead{}.Head)

// MaxHeadBytes is the record's head, as the C header defines it.
var _ = [1]struct{}{}[MaxHeadBytes-headMax]
