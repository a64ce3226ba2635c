package flow

// rateHistLen is how many seconds of sampling rates a shard remembers.
// A record that spans more takes the largest rate of the whole history.
const rateHistLen = 128

// rateHist is the largest sampling rate among the samples a shard saw,
// per second of sample time. A flow's packets that no sample caught were
// taken at a rate the flow's own samples may not show (the rate rose in
// the middle of the flow): the history tells what rate was in force
// around the flow while it was open, for the upper end of its interval.
type rateHist struct {
	slots  [rateHistLen]rateSlot
	latest int64 // the newest second noted
}

type rateSlot struct {
	sec int64
	max uint32
}

// note accounts a sample taken at rate at time ts (ns).
func (h *rateHist) note(ts int64, rate uint32) {
	sec := ts / 1e9
	s := &h.slots[uint64(sec)%rateHistLen]
	if s.sec != sec {
		*s = rateSlot{sec: sec, max: rate}
	} else if rate > s.max {
		s.max = rate
	}
	h.latest = max(h.latest, sec)
}

// max returns the largest rate noted from time from to time until (ns).
func (h *rateHist) max(from, until int64) uint32 {
	first, last := from/1e9, min(until/1e9, h.latest)
	var m uint32
	if last-first >= rateHistLen {
		for i := range h.slots {
			m = max(m, h.slots[i].max)
		}
		return m
	}
	for sec := first; sec <= last; sec++ {
		if s := &h.slots[uint64(sec)%rateHistLen]; s.sec == sec {
			m = max(m, s.max)
		}
	}
	return m
}
