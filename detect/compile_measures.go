package detect

import (
	"fmt"
	"slices"
)

// compileMeasures compiles a rule's measures, in name order so that
// `when` and metrics are stable, and its reverse measures' filter. It
// returns how to find a measure by name.
func (r *rule) compileMeasures(rs *RuleSpec, compileFilter func(path, src string) Filter,
	bad func(path, format string, args ...any)) (index func(string) int) {
	// Measures, in name order so `when` and metrics are stable.
	names := make([]string, 0, len(rs.Measures))
	for n := range rs.Measures {
		names = append(names, n)
	}
	slices.Sort(names)
	r.names = names
	index = func(n string) int { return slices.Index(names, n) }
	for _, n := range names {
		ms := rs.Measures[n]
		path := "measures." + n
		m := measure{filter: nil}
		if !identOK(n) {
			bad(path, "%q is not a measure name: letters, digits and _", n)
		}
		set := 0
		for _, vk := range []struct {
			key, val string
			kind     measureKind
		}{{"sum", ms.Sum, mSum}, {"rate", ms.Rate, mRate}, {"mean", ms.Mean, mMean}, {"spread", ms.Spread, mSpread}} {
			if vk.val == "" {
				continue
			}
			set++
			m.kind = vk.kind
			v, ok := parseValueKind(vk.val)
			if !ok {
				bad(path+"."+vk.key, "%q is not one of packets, bytes, bits, samples, events", vk.val)
			}
			m.value = v
		}
		for _, d := range []struct {
			key, field string
			once       bool
		}{{"distinct", ms.Distinct, false}, {"distinct_once", ms.DistinctOnce, true}} {
			if d.field == "" {
				continue
			}
			set++
			m.kind = mDistinct
			m.once = d.once
			hf, ok := hashFields[d.field]
			if !ok {
				bad(path+"."+d.key, "%q: distinct counts src_addr, dst_addr, src_port, dst_port or proto", d.field)
			}
			m.field = hf
			m.dslot = countDistinct(r.measures)
			r.hasDistinct = true
		}
		if ms.Ratio != nil {
			set++
			m.kind = mRatio
			if len(ms.Ratio) != 2 {
				bad(path+".ratio", "needs two measure names: [a, b]")
			} else {
				m.a, m.b = index(ms.Ratio[0]), index(ms.Ratio[1])
				for j, x := range []int{m.a, m.b} {
					if x < 0 {
						bad(fmt.Sprintf("%s.ratio[%d]", path, j), "no measure %q", ms.Ratio[j])
					} else if rs.Measures[ms.Ratio[j]].Ratio != nil {
						bad(fmt.Sprintf("%s.ratio[%d]", path, j), "a ratio cannot use another ratio")
					}
				}
			}
			if ms.Filter != "" {
				bad(path+".filter", "a ratio has no filter of its own: filter its two measures")
			}
		}
		if set != 1 {
			bad(path, "needs exactly one of sum, rate, mean, spread, distinct, distinct_once, ratio")
		}
		if ms.Filter != "" && m.kind != mRatio {
			m.filter = compileFilter(path+".filter", ms.Filter)
		}
		if ms.Reverse {
			m.reverse = true
			if m.kind != mSum && m.kind != mRate {
				bad(path+".reverse", "only a sum or a rate counts reverse traffic")
			}
			r.hasReverse = true
		}
		m.col = r.ncols
		r.ncols += m.cols()
		r.measures = append(r.measures, m)
	}
	if r.hasReverse {
		var fs []Filter
		for _, m := range r.measures {
			if m.reverse {
				f := m.filter
				if f == nil {
					f = MatchAll
				}
				fs = append(fs, f)
			}
		}
		r.revFilter = anyFilter(fs)
		if !slices.ContainsFunc(r.group, func(g groupField) bool { return g.kind == gAddr }) {
			bad("group_by", "a rule with reverse measures groups by an address")
		}
	}
	return index
}
