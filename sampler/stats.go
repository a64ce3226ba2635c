package sampler

import (
	"github.com/vigil-sensor/vigil/flow"
)

// ifSlots is VIGIL_IF_SLOTS: ifindexes below it are counted in the
// if_stats array, the rest in the if_stats_big hash.
const ifSlots = 1024

// Stats are the capture path's global counters, summed over CPUs.
type Stats struct {
	Outcomes    [flow.NumOutcomes]uint64 // packets by parse outcome
	Samples     uint64                   // records submitted to the ring buffer
	RingbufFull uint64                   // samples lost: ring buffer full
	IfMapFull   uint64                   // packets with no interface counter slot
	Wakeups     uint64                   // forced reader wakeups
}

// Packets is the number of packets the programs ran on.
func (s Stats) Packets() uint64 {
	var n uint64
	for _, v := range s.Outcomes {
		n += v
	}
	return n
}

// InterfaceStats are the exact counters of one interface and direction.
type InterfaceStats struct {
	Packets uint64 // wire packets (GSO segments counted one by one in tc)
	Bytes   uint64
	Frames  uint64 // frames the program ran on
}
