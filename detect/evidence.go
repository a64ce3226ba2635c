package detect

import (
	"slices"

	"github.com/vigil-sensor/vigil/flow"
)

// topKSize is how many values a key's evidence keeps per field. Alerts
// show the heaviest five.
const (
	topKSize  = 8
	topKShown = 5
)

// topK keeps the heaviest values of a stream with the Space-Saving
// algorithm (Metwally et al., 2005): a value not kept replaces the
// lightest and inherits its weight, so a heavy value is never lost and
// each weight over-counts by at most the lightest one.
type topK struct {
	n     int
	items [topKSize]topItem
}

type topItem struct {
	v evValue
	w float64
}

func (t *topK) add(v evValue, w float64) {
	for i := 0; i < t.n; i++ {
		if t.items[i].v == v {
			t.items[i].w += w
			return
		}
	}
	if t.n < topKSize {
		t.items[t.n] = topItem{v, w}
		t.n++
		return
	}
	low := 0
	for i := 1; i < topKSize; i++ {
		if t.items[i].w < t.items[low].w {
			low = i
		}
	}
	t.items[low] = topItem{v, t.items[low].w + w}
}

func (t *topK) reset() { t.n = 0 }

// top returns the heaviest values, heaviest first.
func (t *topK) top() []flow.Top {
	if t.n == 0 {
		return nil
	}
	items := slices.Clone(t.items[:t.n])
	slices.SortFunc(items, func(a, b topItem) int {
		switch {
		case a.w > b.w:
			return -1
		case a.w < b.w:
			return 1
		}
		return 0
	})
	items = items[:min(len(items), topKShown)]
	out := make([]flow.Top, len(items))
	for i, it := range items {
		out[i] = flow.Top{Value: it.v.String(), Packets: uint64(it.w + 0.5)}
	}
	return out
}
