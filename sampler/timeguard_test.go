package sampler

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestTimeGuard(t *testing.T) {
	base := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	ms := int64(time.Millisecond)
	y2100 := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	latest := base + int64(30*24*time.Hour)
	// steady is n packets 1 ms apart from start.
	steady := func(start int64, n int) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = start + int64(i)*ms
		}
		return out
	}
	cat := func(parts ...[]int64) []int64 { return slices.Concat(parts...) }
	cases := []struct {
		name  string
		in    []int64
		want  []int64 // nil: the same as in
		stats TimeStats
	}{
		{name: "in order", in: steady(base, 10)},
		{
			name: "2100 first", in: cat([]int64{y2100}, steady(base, 5)),
			want: cat([]int64{-1}, steady(base, 5)), stats: TimeStats{Untimed: 1},
		},
		{
			name: "2100 in the middle", in: cat(steady(base, 5), []int64{y2100}, steady(base+5*ms, 5)),
			want: cat(steady(base, 5), []int64{base + 4*ms}, steady(base+5*ms, 5)), stats: TimeStats{Clamped: 1},
		},
		{
			name: "a day ahead, once", in: cat(steady(base, 5), []int64{base + int64(24*time.Hour)}, steady(base+5*ms, 5)),
			want: cat(steady(base, 5), []int64{base + 4*ms}, steady(base+5*ms, 5)), stats: TimeStats{Clamped: 1},
		},
		{
			name: "a day back, once", in: cat(steady(base, 5), []int64{base - int64(24*time.Hour)}, steady(base+5*ms, 5)),
			want: cat(steady(base, 5), []int64{base + 4*ms}, steady(base+5*ms, 5)), stats: TimeStats{Clamped: 1},
		},
		{
			name: "bad packets apart never move the clock",
			in:   cat(steady(base, 3), []int64{y2100 - 1}, steady(base+3*ms, 2), []int64{base + int64(time.Hour)}, steady(base+5*ms, 2), []int64{base + int64(2*time.Hour)}, steady(base+7*ms, 2)),
			want: cat(steady(base, 3), []int64{base + 2*ms}, steady(base+3*ms, 2), []int64{base + 4*ms}, steady(base+5*ms, 2), []int64{base + 6*ms}, steady(base+7*ms, 2)),
			// y2100-1 is past Latest: clamped, like the two in reach.
			stats: TimeStats{Clamped: 3},
		},
		{
			// Held until the third packet confirms the gap: every packet
			// keeps its time.
			name: "a quiet 10 minutes", in: cat(steady(base, 5), steady(base+int64(10*time.Minute), 5)),
			stats: TimeStats{Jumps: 1},
		},
		{
			name: "an hour's gap, two packets, then the end", in: cat(steady(base, 5), steady(base+int64(time.Hour), 2)),
			stats: TimeStats{Jumps: 1},
		},
		{
			name: "the capture steps back an hour", in: cat(steady(base, 5), steady(base-int64(time.Hour), 5)),
			// The first packet back gets the clock's time once the third
			// confirms the step; the ones after it carry on from there.
			want:  cat(steady(base, 5), []int64{base + 4*ms, base + 5*ms, base + 6*ms, base + 7*ms, base + 8*ms}),
			stats: TimeStats{Jumps: 1},
		},
		{
			name: "out of order", in: []int64{base, base + 5*ms, base + 3*ms, base + 6*ms},
			want: []int64{base, base + 5*ms, base + 5*ms, base + 6*ms}, stats: TimeStats{Reordered: 1},
		},
		{
			name: "a bad first packet in the past does not pin the clock", in: cat([]int64{0}, steady(base, 5)),
			want: cat([]int64{0}, steady(base, 5)),
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewTimeGuard(latest)
			got := times(g, c.in)
			want := c.want
			if want == nil {
				want = c.in
			}
			if !slices.Equal(got, want) {
				t.Errorf("times\n got %v\nwant %v", rel(got, base), rel(want, base))
			}
			if g.Stats() != c.stats {
				t.Errorf("stats %+v, want %+v", g.Stats(), c.stats)
			}
		})
	}
}

// times runs in through g as the pcap source does, holding packets
// while the guard says to, and returns the time each packet ends up
// with (-1: dropped), in input order.
func times(g *TimeGuard, in []int64) []int64 {
	got := make([]int64, len(in))
	var held []int // indexes of the held packets
	give := func(ts []int64) {
		for i, t := range ts {
			got[held[i]] = t
		}
		held = held[len(ts):]
	}
	for i, ts := range in {
		v, act := g.Time(ts)
		give(g.Released())
		switch act {
		case TimeKeep:
			got[i] = v
		case TimeHold:
			held = append(held, i)
		case TimeDrop:
			got[i] = -1
		}
	}
	give(g.End())
	if len(held) > 0 {
		panic("packets still held after End")
	}
	return got
}

// rel shows times as offsets from base, for readable failures.
func rel(ts []int64, base int64) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, v := range ts {
		out[i] = time.Duration(v - base)
	}
	return out
}

// TestTimeGuardNeverRunsBackwards feeds timestamps with every kind of
// fault mixed in: whatever comes in, what comes out never decreases,
// never passes the bound, and every change is counted.
func TestTimeGuardNeverRunsBackwards(t *testing.T) {
	base := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	bound := base + int64(365*24*time.Hour)
	rng := rand.New(rand.NewPCG(1, 2))
	for run := range 200 {
		g := NewTimeGuard(bound)
		in := make([]int64, 500)
		ts := base
		for i := range in {
			ts += rng.Int64N(int64(10 * time.Millisecond))
			in[i] = ts
			switch rng.IntN(20) {
			case 0:
				in[i] = rng.Int64() // anything at all
			case 1:
				in[i] = ts - rng.Int64N(int64(time.Hour))
			case 2:
				ts += int64(10 * time.Minute) // a real gap
				in[i] = ts
			}
		}
		out := times(g, in)
		last := int64(-1 << 63)
		var changed uint64
		for i, v := range out {
			if v == -1 {
				changed++
				continue
			}
			if v < last {
				t.Fatalf("run %d: time ran backwards at packet %d: %d after %d", run, i, v, last)
			}
			if v > bound {
				t.Fatalf("run %d: %d is past the bound", run, v)
			}
			if v != in[i] {
				changed++
			}
			last = v
		}
		// A packet given its own time plus the offset of a step back is
		// changed but not counted: those follow a counted jump.
		if st := g.Stats(); st.Total() > changed {
			t.Fatalf("run %d: counted %d changes, saw %d", run, st.Total(), changed)
		}
	}
}
