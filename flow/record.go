package flow

import "time"

// EndReason says why a flow record was written.
type EndReason uint8

// End reasons. Each maps to an IPFIX flowEndReason (RFC 5102): idle 1,
// active 2, end of flow detected 3, forced end 4, lack of resources 5.
const (
	EndIdle     EndReason = iota + 1 // no packet for the idle timeout
	EndActive                        // the active timeout cut a long flow
	EndTCP                           // FIN or RST seen
	EndShutdown                      // forced: the sensor stopped or the input ended
	EndEvicted                       // the table was full
	numEndReasons
)

// EndReasons lists every end reason, in IPFIX order.
var EndReasons = [...]EndReason{EndIdle, EndActive, EndTCP, EndShutdown, EndEvicted}

var endReasonNames = [numEndReasons]string{"", "idle", "active", "tcp_end", "shutdown", "evicted"}

func (r EndReason) String() string {
	if r > 0 && r < numEndReasons {
		return endReasonNames[r]
	}
	return "unknown"
}

// IPFIX returns the IPFIX flowEndReason code.
func (r EndReason) IPFIX() uint8 { return uint8(r) }

// Record is a flow, or one slice of a long flow, as the table reports it.
//
// Packets and Bytes are estimates: each sample adds its own sampling rate
// times what it stands for, so the estimates stay unbiased when the rate
// changes in the middle of a flow. SampledPackets and SampledBytes are
// what was actually seen.
type Record struct {
	Key            Key
	Start          int64 // first sample, ns since the Unix epoch
	End            int64 // last sample, ns since the Unix epoch
	SampledPackets uint64
	SampledBytes   uint64
	Packets        uint64  // estimated
	Bytes          uint64  // estimated
	Samples        uint64  // samples (frames) behind the record
	RateSum        uint64  // sum of the samples' rates, for the effective rate
	PacketsVar     float64 // variance of Packets, estimated (see Estimate)
	BytesVar       float64 // variance of Bytes, estimated
	MaxPacketsW    float32 // the most one sample added to Packets beyond itself
	MaxBytesW      float32 // the same for Bytes
	TCPFlags       uint8   // OR of all sampled packets' flags
	TOS            uint8   // of the first sample
	MinTTL         uint8
	MaxTTL         uint8
	EndReason      EndReason
}

// SamplingRate returns the effective 1-in-N rate behind the record: the
// mean of its samples' rates, rounded.
func (r *Record) SamplingRate() uint32 {
	if r.Samples == 0 {
		return 0
	}
	return uint32((r.RateSum + r.Samples/2) / r.Samples)
}

// PacketsEstimate returns the packet estimate with what its confidence
// interval needs.
func (r *Record) PacketsEstimate() Estimate {
	return Estimate{Value: float64(r.Packets), Seen: float64(r.SampledPackets), Var: r.PacketsVar, MaxW: float64(r.MaxPacketsW)}
}

// BytesEstimate returns the byte estimate with what its confidence
// interval needs.
func (r *Record) BytesEstimate() Estimate {
	return Estimate{Value: float64(r.Bytes), Seen: float64(r.SampledBytes), Var: r.BytesVar, MaxW: float64(r.MaxBytesW)}
}

// unseenAt widens the record's interval for packets that no sample
// caught while the rate was up to rate: one unseen packet of the
// record's mean size may stand for rate−1 more.
func (r *Record) unseenAt(rate uint32) {
	if rate <= 1 || r.SampledPackets == 0 {
		return
	}
	w := float64(rate - 1)
	r.MaxPacketsW = max(r.MaxPacketsW, float32(w))
	r.MaxBytesW = max(r.MaxBytesW, float32(w*float64(r.SampledBytes)/float64(r.SampledPackets)))
}

// StartTime returns the time of the first sample.
func (r *Record) StartTime() time.Time { return time.Unix(0, r.Start) }

// EndTime returns the time of the last sample.
func (r *Record) EndTime() time.Time { return time.Unix(0, r.End) }

// TCP flag bits.
const (
	TCPFin uint8 = 1 << 0
	TCPSyn uint8 = 1 << 1
	TCPRst uint8 = 1 << 2
	TCPPsh uint8 = 1 << 3
	TCPAck uint8 = 1 << 4
)

// start initialises r from the first sample of a flow.
func (r *Record) start(k *Key, s *Sample) {
	*r = Record{Key: *k, Start: s.Timestamp, End: s.Timestamp, TOS: s.TOS, MinTTL: s.TTL, MaxTTL: s.TTL}
	r.add(s)
}

// add accounts one sample.
func (r *Record) add(s *Sample) {
	segs := uint64(s.Segments)
	if segs == 0 {
		segs = 1
	}
	rate := uint64(s.SamplingRate)
	if rate == 0 {
		rate = 1
	}
	wl := uint64(s.WireLen)
	if s.Timestamp > r.End {
		r.End = s.Timestamp
	} else if s.Timestamp < r.Start {
		r.Start = s.Timestamp
	}
	r.Samples++
	r.RateSum += rate
	r.SampledPackets += segs
	r.SampledBytes += wl
	r.Packets += segs * rate
	r.Bytes += wl * rate
	if rate > 1 {
		// Estimate.Observe, kept apart for Packets and Bytes, which
		// stay exact integers.
		n, p, b := float64(rate), float64(segs), float64(wl)
		r.PacketsVar += n * (n - 1) * p * p
		r.BytesVar += n * (n - 1) * b * b
		r.MaxPacketsW = max(r.MaxPacketsW, float32((n-1)*p))
		r.MaxBytesW = max(r.MaxBytesW, float32((n-1)*b))
	}
	r.TCPFlags |= s.TCPFlags
	r.MinTTL = min(r.MinTTL, s.TTL)
	r.MaxTTL = max(r.MaxTTL, s.TTL)
}
