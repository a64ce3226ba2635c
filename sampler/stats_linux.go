package sampler

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/vigil-sensor/vigil/flow"
)

// Stats reads the global counters.
func (p *Programs) Stats() (Stats, error) {
	var per []sensorVigilStats
	if err := p.objs.Stats.Lookup(uint32(0), &per); err != nil {
		return Stats{}, fmt.Errorf("reading stats map: %w", err)
	}
	var s Stats
	for _, c := range per {
		for i := range s.Outcomes {
			s.Outcomes[i] += c.Outcome[i]
		}
		s.Samples += c.Samples
		s.RingbufFull += c.RingbufFull
		s.IfMapFull += c.IfMapFull
		s.Wakeups += c.Wakeups
	}
	return s, nil
}

// InterfaceStats reads the counters of one interface and direction.
// An interface the programs never saw reads as zero.
func (p *Programs) InterfaceStats(ifindex uint32, dir flow.Direction) (InterfaceStats, error) {
	var per []sensorVigilIfStats
	var err error
	if ifindex < ifSlots {
		err = p.objs.IfStats.Lookup(ifindex*2+uint32(dir), &per)
	} else {
		err = p.objs.IfStatsBig.Lookup(sensorVigilIfKey{Ifindex: ifindex, Direction: uint32(dir)}, &per)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return InterfaceStats{}, nil
		}
	}
	if err != nil {
		return InterfaceStats{}, fmt.Errorf("reading counters of ifindex %d: %w", ifindex, err)
	}
	var s InterfaceStats
	for _, c := range per {
		s.Packets += c.Packets
		s.Bytes += c.Bytes
		s.Frames += c.Frames
	}
	return s, nil
}

// ResetInterfaceStats zeroes the counters of an interface, so that an
// ifindex reused by a new interface starts from zero.
func (p *Programs) ResetInterfaceStats(ifindex uint32) error {
	zero := make([]sensorVigilIfStats, ebpf.MustPossibleCPU())
	for _, dir := range []flow.Direction{flow.Ingress, flow.Egress} {
		var err error
		if ifindex < ifSlots {
			err = p.objs.IfStats.Put(ifindex*2+uint32(dir), zero)
		} else {
			err = p.objs.IfStatsBig.Delete(sensorVigilIfKey{Ifindex: ifindex, Direction: uint32(dir)})
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				err = nil
			}
		}
		if err != nil {
			return fmt.Errorf("resetting counters of ifindex %d: %w", ifindex, err)
		}
	}
	return nil
}
