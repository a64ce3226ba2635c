package detect

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/flow"
)

// evictRule is the pack's brute_force_attempts with a small max_keys:
// 25 SYNs to ssh of one server from one source in a minute.
const evictRule = `
rules:
  - name: ssh_guess
    filter: tcp && syn && !ack && login_port
    group_by: [src_addr, dst_addr, dst_port]
    window: 60s
    slots: 12
    measures:
      attempts: {sum: packets}
    thresholds:
      attempts: 25
    min_samples: 5
    max_keys: %d
`

const (
	evictAttacker = "203.0.113.7"
	evictServer   = "10.0.0.22"
)

// evictSSH is one sampled SYN from src to the server's ssh.
func evictSSH(at int64, src netip.Addr) Event {
	return Event{
		Source: SourceSamples, Time: at, SrcAddr: src, DstAddr: netip.MustParseAddr(evictServer),
		SrcPort: 40000, DstPort: 22, Proto: 6, TCPFlags: flow.TCPSyn, IPVersion: 4,
		Packets: 1, Bytes: 60, Samples: 1, Rate: 1,
	}
}

// evictSpoofed is the nth spoofed source of a flood: every one distinct.
func evictSpoofed(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{100, 64 + byte(n>>16), byte(n >> 8), byte(n)})
}

// evictFlood runs an attacker sending one SYN every gap from start to
// end, and from floodFrom on perGap spoofed one-SYN sources between each
// two of its SYNs, a batch per gap. It returns how many spoofed sources
// were sent.
func evictFlood(e *Engine, start, end, floodFrom, gap time.Duration, perGap int) int {
	attacker := netip.MustParseAddr(evictAttacker)
	n := 0
	var evs []Event
	for at := start; at < end; at += gap {
		t := engT0 + int64(at)
		evs = append(evs[:0], evictSSH(t, attacker))
		if at >= floodFrom {
			for i := range perGap {
				evs = append(evs, evictSSH(t+int64(i+1)*int64(gap)/int64(perGap+1), evictSpoofed(n)))
				n++
			}
		}
		e.Events(SourceSamples, evs)
	}
	return n
}

// evictStarts returns the start alerts of the attacker's key.
func evictStarts(rec *engRecorder) []flow.Alert {
	var out []flow.Alert
	for _, a := range rec.of("ssh_guess", flow.AlertStart) {
		if len(a.Key) > 0 && a.Key[0].Value == evictAttacker {
			out = append(out, a)
		}
	}
	return out
}

// A slow brute force (a SYN every 2s, 30 a minute against a threshold of
// 25) runs inside a spoofed SYN flood to the same port from its start:
// 900 new sources between each two of its SYNs, 108,000 in all, through
// a state of 1000 keys. Its key has more events than any spoofed one, so
// it is never the one evicted. A random victim (the earlier eviction)
// lost it about once every two SYNs: it never reached 25.
func TestEvictSlowBruteForceInFlood(t *testing.T) {
	e, rec := engNew(t, fmt.Sprintf(evictRule, 1000), Options{})
	n := evictFlood(e, 0, 240*time.Second, 0, 2*time.Second, 900)
	if n < 100_000 {
		t.Fatalf("%d spoofed sources, want 100,000 or more", n)
	}
	st := engStats(t, e, "ssh_guess")
	if got := evictStarts(rec); len(got) != 1 {
		t.Errorf("%d start alerts of the slow brute force under a flood of %d sources, want 1 (evictions %d, full %d)",
			len(got), n, st.Evictions, st.StateFull)
	} else if got[0].Start != engT0 {
		t.Errorf("alert starts at %d, want its first SYN %d: the key was evicted on the way", got[0].Start, engT0)
	}
	// Every spoofed source past the first 999 evicted one key; none was
	// refused.
	if st.Evictions < uint64(n-1000) || st.StateFull != 0 {
		t.Errorf("evictions %d (want %d or more), state full %d (want 0)", st.Evictions, n-1000, st.StateFull)
	}
	if st.Keys > 1000 {
		t.Errorf("%d keys, max_keys 1000", st.Keys)
	}
}

// A brute force seen for 20s before the flood survives a flood ten times
// as dense as the state is large: 10,000 new sources between each two of
// its SYNs.
func TestEvictEstablishedKeySurvivesDenseFlood(t *testing.T) {
	e, rec := engNew(t, fmt.Sprintf(evictRule, 1000), Options{})
	n := evictFlood(e, 0, 70*time.Second, 20*time.Second, 2*time.Second, 10_000)
	if got := evictStarts(rec); len(got) != 1 || got[0].Start != engT0 {
		st := engStats(t, e, "ssh_guess")
		t.Errorf("start alerts of the brute force under a flood of %d sources: %d, want 1 from its first SYN (evictions %d)",
			n, len(got), st.Evictions)
	}
}

// A key with a running alert is never evicted: with the state full of
// keys with running alerts, new keys are refused (state full) and the
// alerts carry on, one start each; when they have ended, new keys evict
// their keys.
func TestEvictRunningAlertKept(t *testing.T) {
	const keys = 50
	rec := &engRecorder{}
	e := NewEngine(engLoad(t, fmt.Sprintf(evictRule, keys), Options{}),
		EngineConfig{AlertsPerSecond: 1000, RuleAlertsPerSecond: 1000}, rec.emit)
	attackers := make([]netip.Addr, keys)
	for i := range attackers {
		attackers[i] = netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
	}
	n := 0
	var evs []Event
	// 40s: each attacker a SYN a second (alerts from 24s on), and from
	// 30s on 1000 spoofed sources a second.
	for s := range int64(40) {
		t0 := engT0 + s*int64(time.Second)
		evs = evs[:0]
		for i, a := range attackers {
			evs = append(evs, evictSSH(t0+int64(i)*int64(time.Millisecond), a))
		}
		if s >= 30 {
			for i := range 1000 {
				evs = append(evs, evictSSH(t0+int64(100+i)*int64(time.Millisecond)/2, evictSpoofed(n)))
				n++
			}
		}
		e.Events(SourceSamples, evs)
	}
	st := engStats(t, e, "ssh_guess")
	if st.Active != keys || st.Keys != keys {
		t.Fatalf("%d alerts running, %d keys: want %d, %d", st.Active, st.Keys, keys, keys)
	}
	if st.Evictions != 0 || st.StateFull != uint64(n) {
		t.Errorf("evictions %d, state full %d: want 0, %d (every spoofed source refused)", st.Evictions, st.StateFull, n)
	}
	starts := map[string]int{}
	for _, a := range rec.of("ssh_guess", flow.AlertStart) {
		starts[a.Key[0].Value]++
	}
	for _, a := range attackers {
		if starts[a.String()] != 1 {
			t.Errorf("%v: %d starts, want 1", a, starts[a.String()])
		}
	}
	if ends := rec.of("ssh_guess", flow.AlertEnd); len(ends) != 0 {
		t.Errorf("%d ends while the attacks run", len(ends))
	}
	// The attackers stop; once their alerts have ended, spoofed sources
	// take their keys.
	e.Advance(engT0 + int64(130*time.Second))
	if ends := rec.of("ssh_guess", flow.AlertEnd); len(ends) != keys {
		t.Fatalf("%d ends, want %d", len(ends), keys)
	}
	evs = evs[:0]
	for i := range 2 * keys {
		evs = append(evs, evictSSH(engT0+int64(131*time.Second)+int64(i), evictSpoofed(n+i)))
	}
	e.Events(SourceSamples, evs)
	if st := engStats(t, e, "ssh_guess"); st.Keys != keys || st.Active != 0 {
		t.Errorf("after the alerts: %d keys, %d running; want %d, 0", st.Keys, st.Active, keys)
	}
}

// evictState returns the state of evictRule with max_keys n (window 60s:
// counts halve every minute), and its keys for sources 0 to count-1.
func evictState(t *testing.T, n, count int) (*ruleState, []keyBuf) {
	e, _ := engNew(t, fmt.Sprintf(evictRule, n), Options{})
	rs := e.rules[0]
	keys := make([]keyBuf, count)
	for i := range keys {
		ev := evictSSH(0, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
		keys[i], _ = makeKey(&ev, rs.r.group)
	}
	return rs, keys
}

// evictCheck checks the levels hold every key without a running alert
// once, at its count or lower, in order, and nothing else. Keys whose
// alerts ended are linked again at their next event or sweep: swept
// says one has just run.
func evictCheck(t *testing.T, rs *ruleState) { evictCheckSwept(t, rs, true) }

func evictCheckSwept(t *testing.T, rs *ruleState, swept bool) {
	t.Helper()
	lv := &rs.evict
	linked := 0
	for c := range lv.level {
		l := lv.level[c]
		if (l.head != nil) != (lv.used&(1<<c) != 0) {
			t.Fatalf("level %d: head %p, used bit %v", c, l.head, lv.used&(1<<c) != 0)
		}
		var prev *keyState
		for ks := l.head; ks != nil; prev, ks = ks, ks.ev.next {
			if !ks.ev.linked || ks.ev.prev != prev || lv.levelOf(ks) != c || lv.count(ks) < c || rs.keys[ks.key] != ks {
				t.Fatalf("level %d: key %v linked %v, prev %p want %p, level %d, count %d, held %v",
					c, ks.key[:4], ks.ev.linked, ks.ev.prev, prev, lv.levelOf(ks), lv.count(ks), rs.keys[ks.key] == ks)
			}
			linked++
		}
		if l.tail != prev {
			t.Fatalf("level %d: tail %p, want %p", c, l.tail, prev)
		}
	}
	want := 0
	for _, ks := range rs.keys {
		if ks.ev.linked {
			want++
		} else if ks.alert == nil && swept {
			t.Fatalf("key %v: no alert, not linked", ks.key[:4])
		}
	}
	if linked != want {
		t.Fatalf("%d keys in the levels, %d linked", linked, want)
	}
}

func TestEvictOrder(t *testing.T) {
	sec := func(s int64) int64 { return engT0 + s*int64(time.Second) }
	held := func(rs *ruleState, k keyBuf) bool { _, ok := rs.keys[k]; return ok }
	t.Run("fewest events first", func(t *testing.T) {
		rs, k := evictState(t, 3, 4)
		for i, n := range []int{3, 1, 2} {
			for range n {
				rs.key(k[i], sec(1))
			}
		}
		rs.key(k[3], sec(2))
		evictCheck(t, rs)
		if held(rs, k[1]) || !held(rs, k[0]) || !held(rs, k[2]) {
			t.Errorf("the key with one event should be the one evicted")
		}
	})
	t.Run("ties to the least recently seen", func(t *testing.T) {
		rs, k := evictState(t, 3, 4)
		rs.key(k[0], sec(1))
		rs.key(k[1], sec(2))
		rs.key(k[2], sec(3))
		rs.key(k[0], sec(4)) // 2 events now
		rs.key(k[3], sec(5))
		evictCheck(t, rs)
		if held(rs, k[1]) || !held(rs, k[2]) {
			t.Errorf("of two keys with one event, the older should be evicted")
		}
	})
	t.Run("counts age", func(t *testing.T) {
		// 50 events an hour ago count for nothing against one now; a
		// minute ago, for 25.
		for _, c := range []struct {
			ago     int64
			evicted int
		}{{3600, 0}, {60, 1}} {
			rs, k := evictState(t, 2, 3)
			for range 50 {
				rs.key(k[0], sec(0))
			}
			rs.key(k[1], sec(c.ago))
			rs.key(k[2], sec(c.ago+1))
			evictCheck(t, rs)
			if held(rs, k[c.evicted]) {
				t.Errorf("busy %ds ago: key %d should be evicted", c.ago, c.evicted)
			}
			if n := rs.stats.evictions; n != 1 {
				t.Errorf("%d evictions, want 1", n)
			}
		}
	})
	t.Run("running alerts pinned", func(t *testing.T) {
		rs, k := evictState(t, 2, 4)
		rs.key(k[0], sec(1))
		rs.key(k[1], sec(1))
		rs.key(k[1], sec(1))
		rs.keys[k[0]].alert = &alertState{}
		rs.key(k[2], sec(2)) // evicts k[1], the only key without an alert
		evictCheck(t, rs)
		if !held(rs, k[0]) || held(rs, k[1]) {
			t.Fatalf("the key with a running alert should stay, the other go")
		}
		rs.keys[k[2]].alert = &alertState{}
		if rs.key(k[3], sec(3)) != nil || rs.stats.full != 1 || rs.stats.evictions != 1 {
			t.Fatalf("every key has an alert: want the new key refused, full 1 (got %d), evictions 1 (got %d)",
				rs.stats.full, rs.stats.evictions)
		}
		evictCheck(t, rs)
		// k[0]'s alert ends: its next event links it again, with the
		// events it had while pinned.
		rs.keys[k[0]].alert = nil
		rs.key(k[0], sec(4))
		evictCheck(t, rs)
		if c := rs.evict.count(rs.keys[k[0]]); c != 2 {
			t.Errorf("count %d after the alert, want 2", c)
		}
		rs.key(k[3], sec(5))
		if held(rs, k[0]) || !held(rs, k[3]) {
			t.Errorf("with its alert ended the key should be evictable")
		}
		evictCheck(t, rs)
	})
}

// Random events, alerts, sweeps and time through a small state: the
// levels stay consistent, and every victim has the fewest events.
func TestEvictRandom(t *testing.T) {
	const n, keys = 16, 64
	e, _ := engNew(t, fmt.Sprintf(evictRule, n), Options{})
	rs := e.rules[0]
	r := rand.New(rand.NewPCG(1, 2))
	now := engT0
	for i := range 100_000 {
		now += int64(r.IntN(int(2 * time.Second)))
		ev := evictSSH(now, netip.AddrFrom4([4]byte{192, 0, 2, byte(r.IntN(keys))}))
		k, _ := makeKey(&ev, rs.r.group)
		// The fewest events of the keys a new key may evict, with the
		// clock the event brings.
		if now-rs.evict.decayAt >= rs.evict.halfLife {
			rs.evict.decay(now)
		}
		low := evictMax + 1
		for _, ks := range rs.keys {
			if ks.alert == nil && ks.ev.linked {
				low = min(low, rs.evict.count(ks))
			}
		}
		_, known := rs.keys[k]
		ev0 := rs.stats.evictions
		var victims []keyBuf // states are reused: their keys
		if !known && len(rs.keys) >= n {
			for _, ks := range rs.keys {
				if ks.alert == nil && ks.ev.linked && rs.evict.count(ks) == low {
					victims = append(victims, ks.key)
				}
			}
		}
		ks := rs.key(k, now)
		if !known && len(victims) > 0 {
			if rs.stats.evictions != ev0+1 {
				t.Fatalf("step %d: no eviction", i)
			}
			for _, v := range victims {
				if _, ok := rs.keys[v]; !ok {
					victims = nil
				}
			}
			if victims != nil {
				t.Fatalf("step %d: the victim was not one of the keys with %d events", i, low)
			}
		}
		swept := false
		switch p := r.IntN(100); {
		case ks != nil && p < 3:
			ks.alert = &alertState{}
		case p < 8:
			for ks := range maps.Values(rs.keys) {
				ks.alert = nil
				break
			}
		case p < 9:
			rs.sweep(e, now)
			swept = true
		}
		evictCheckSwept(t, rs, swept)
	}
	if rs.stats.evictions < 10_000 || rs.evict.epoch < 500 {
		t.Errorf("%d evictions, %d halvings: the test should have more", rs.stats.evictions, rs.evict.epoch)
	}
}
