package sampler

import (
	"fmt"
	"time"
)

// Mode is how the capture program is attached to an interface.
type Mode string

// Attach modes, in the order the fallback tries them.
const (
	ModeAuto       Mode = "auto"        // native XDP, then generic XDP, then tcx
	ModeXDPNative  Mode = "xdp-native"  // XDP in the driver
	ModeXDPGeneric Mode = "xdp-generic" // XDP on the skb, any driver
	ModeTCX        Mode = "tcx"         // tc ingress (tcx), where XDP will not attach
)

// ParseMode checks a mode name from the configuration.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "", ModeAuto:
		return ModeAuto, nil
	case ModeXDPNative, ModeXDPGeneric, ModeTCX:
		return m, nil
	}
	return "", fmt.Errorf("unknown attach mode %q (want auto, xdp-native, xdp-generic or tcx)", s)
}

// MaxHeadBytes is the most of a frame a sample can carry
// (VIGIL_HEAD_MAX in bpf/include).
const MaxHeadBytes = 128

// MaxRateIfindex bounds the interfaces that can have a rate of their own.
const MaxRateIfindex = ifSlots

// packRate builds the sample_cfg word for 1-in-n: the rate in the low
// half, and in the high half the threshold t = ceil(2^32/n) - 1 that a
// random u32 must not exceed, so the kernel compares instead of dividing.
func packRate(n uint32) uint64 {
	t := (uint64(1)<<32+uint64(n)-1)/uint64(n) - 1
	return t<<32 | uint64(n)
}

// Sampling cadence: the controller steps every SamplingTick; the
// self-check compares estimates with the counters every checkEvery over
// the last checkWindow.
const (
	SamplingTick = 100 * time.Millisecond
	checkEvery   = time.Second      // the self-check runs this often
	CheckWindow  = 10 * time.Second // the self-check's window
)
