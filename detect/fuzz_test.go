package detect

// Fuzz targets for what Vigil reads from operators' files: rule files
// (FuzzParseRules) and address lists (FuzzParseLists). Neither may panic
// on any input; a rule file that parses must also load into a rule set
// and run in an engine.

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/flow"
	"github.com/vigil-sensor/vigil/internal/testutil"
)

// fuzzListSpecs are the lists rule files may name: the built-in ones.
var fuzzListSpecs = []ListSpec{
	{Name: "intel", Entries: []string{"192.0.2.0/24", "2001:db8:bad::/48"}},
	{Name: "watched", Entries: []string{"198.51.100.7"}},
	{Name: "allow", Entries: []string{"203.0.113.1"}},
}

func ruleSeeds(f *testing.F) {
	for _, src := range testutil.FileSeeds(f, 3, "pack/*.yaml", "testdata/rules/*.yaml") {
		f.Add(src)
	}
	// One small rule of each kind, so that mutations start close to
	// every compiler path.
	for _, s := range []string{
		"rules:\n  - name: t\n    filter: tcp && syn && !ack\n    group_by: [dst_addr/24]\n    window: 2s\n    slots: 4\n    measures:\n      pps: {rate: packets}\n      src: {distinct: src_addr}\n      r: {ratio: [pps, src]}\n    thresholds:\n      pps: 10\n    all:\n      src: 2\n    when: r > 1\n    burst: {window: 500ms}\n    evidence: [src_addr]\n",
		"rules:\n  - name: b\n    group_by: [src_addr]\n    window: 1s\n    measures:\n      bps: {rate: bits}\n    baseline: {measure: bps, warmup: 2, alpha: 0.5, deviations: 3}\n",
		"rules:\n  - name: s\n    group_by: [src_addr]\n    sequence:\n      within: 10s\n      steps:\n        - filter: tcp && dst_port == 22\n        - filter: in_list(dst_addr, \"intel\")\n          source: flows\n",
		"rules:\n  - name: a\n    source: flows\n    group_by: [src_addr]\n    filter: in_list(src_addr, \"watched\")\n    absence: {after: 5s, learn: 2s}\n",
		"rules:\n  - name: c\n    source: alerts\n    group_by: [dst_addr]\n    window: 10s\n    measures:\n      n: {sum: events}\n    thresholds:\n      n: 2\n",
	} {
		f.Add([]byte(s))
	}
}

// fuzzEvents are a few seconds of traffic that the seed rules look at.
func fuzzEvents(t0 int64) []Event {
	var evs []Event
	srcs := []string{"192.0.2.9", "198.51.100.7", "10.0.0.1", "2001:db8:bad::1", "203.0.113.1"}
	for i := range 40 {
		ev := Event{
			Source: SourceSamples, Time: t0 + int64(i)*int64(100*time.Millisecond),
			SrcAddr: netip.MustParseAddr(srcs[i%len(srcs)]), DstAddr: netip.MustParseAddr("192.0.2.80"),
			SrcPort: uint16(40000 + i), DstPort: []uint16{22, 80, 53, 443}[i%4], Proto: []uint8{6, 17, 1, 6}[i%4],
			TCPFlags: flow.TCPSyn, IPVersion: 4, Packets: 100, Bytes: 6000, Samples: 1, Rate: 100,
		}
		if ev.SrcAddr.Is6() {
			ev.DstAddr, ev.IPVersion = netip.MustParseAddr("2001:db8::80"), 6
		}
		evs = append(evs, ev)
	}
	return evs
}

// fuzzWatchdog crashes the test binary, with every goroutine's stack,
// if what it guards takes longer than d: the fuzzer then keeps the input
// as a crasher, where a hang would only stall it.
func fuzzWatchdog(d time.Duration, what string) (stop func() bool) {
	return time.AfterFunc(d, func() {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		fmt.Fprintf(os.Stderr, "%s took more than %v:\n%s\n", what, d, buf)
		panic(fmt.Sprintf("%s took more than %v", what, d))
	}).Stop
}

func FuzzParseRules(f *testing.F) {
	ruleSeeds(f)
	lists, err := LoadLists(fuzzListSpecs)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > 256<<10 {
			return
		}
		defer fuzzWatchdog(10*time.Second, "a rule file")()
		start := time.Now()
		rules, err := ParseRules("r.yaml", src, lists)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("ParseRules took %v on %d bytes (err %v)", d, len(src), err)
		}
		if err != nil {
			if rules != nil {
				t.Fatalf("ParseRules returned %d rules and an error", len(rules))
			}
			var re *RuleError
			if !errors.As(err, &re) || re.File != "r.yaml" {
				t.Fatalf("error %v (%T) is not a *RuleError naming the file", err, err)
			}
			return
		}
		if len(rules) == 0 {
			t.Fatal("ParseRules accepted a file and returned no rules")
		}
		// The file loads as a rule set, as the daemon loads it, and runs.
		path := filepath.Join(t.TempDir(), "r.yaml")
		if err := os.WriteFile(path, src, 0o644); err != nil {
			t.Fatal(err)
		}
		set, err := Load(Options{Files: []string{path}, Lists: fuzzListSpecs})
		if err != nil {
			// Only an option can be at fault, and there are none.
			t.Fatalf("ParseRules accepted the file but Load failed: %v", err)
		}
		_ = set.Rules()
		var alerts []flow.Alert
		e := NewEngine(set, EngineConfig{}, func(as []flow.Alert) { alerts = append(alerts, as...) })
		t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC).UnixNano()
		evs := fuzzEvents(t0)
		e.Events(SourceSamples, evs)
		for i := range evs {
			evs[i].Source, evs[i].Duration = SourceFlows, int64(time.Second)
		}
		e.Events(SourceFlows, evs)
		end := evs[len(evs)-1].Time
		for _, d := range []time.Duration{time.Second, 10 * time.Second, time.Minute, time.Hour} {
			e.Advance(end + int64(d))
		}
		e.Close(end + int64(2*time.Hour))
		for _, a := range alerts {
			if a.Rule == "" {
				t.Fatalf("an alert with no rule: %+v", a)
			}
		}
	})
}

// listSeeds are the test lists, each in the formats it may be read as.
func listSeeds(f *testing.F) {
	files, err := filepath.Glob("testdata/lists/*")
	if err != nil {
		f.Fatal(err)
	}
	if len(files) < 3 {
		f.Fatalf("only %d list files to seed the fuzzer with", len(files))
	}
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		switch filepath.Ext(name) {
		case ".csv":
			f.Add(src, uint8(1), uint8(1))
		case ".json":
			f.Add(src, uint8(2), uint8(0))
		default:
			f.Add(src, uint8(0), uint8(0))
			f.Add(src, uint8(2), uint8(0))
		}
	}
	f.Add([]byte("a,b\n\"unterminated\n"), uint8(1), uint8(0))
	f.Add([]byte("{\"cidr\":\"::ffff:10.0.0.0/104\",\"sblid\":\"x\"}\n::ffff:1.2.3.4\nfe80::1%eth0\n"), uint8(2), uint8(0))
}

func FuzzParseLists(f *testing.F) {
	listSeeds(f)
	f.Fuzz(func(t *testing.T, src []byte, format, col uint8) {
		var err error
		var n int
		check := func(tbl interface{ Size() int }, e error) {
			err = e
			if e == nil {
				n = tbl.Size()
			}
		}
		switch format % 3 {
		case 0:
			check(parseLines(bytes.NewReader(src), "l.txt", false))
		case 1:
			check(parseCSV(bytes.NewReader(src), "l.txt", int(col%8)))
		case 2:
			check(parseLines(bytes.NewReader(src), "l.txt", true))
		}
		if err != nil {
			if msg := err.Error(); !strings.Contains(msg, "l.txt") {
				t.Fatalf("error %q does not name the file", msg)
			}
			// At most maxLineErrors bad lines, and a count of the rest.
			if lines := strings.Count(err.Error(), "\n") + 1; lines > maxLineErrors+1 {
				t.Fatalf("error of %d lines:\n%v", lines, err)
			}
			return
		}
		if n > len(src) {
			t.Fatalf("%d entries from %d bytes", n, len(src))
		}
		// Inline entries are the plain lines of a file.
		if format%3 == 0 && len(src) < 4096 && !bytes.ContainsAny(src, "\r\x00") {
			lines := strings.Split(strings.TrimPrefix(string(src), "\ufeff"), "\n")
			var entries []string
			for _, l := range lines {
				if e, _ := splitComment(l); e != "" {
					entries = append(entries, l)
				}
			}
			if len(entries) > 0 {
				tbl, ierr := parseInline(entries)
				if ierr != nil {
					t.Fatalf("the lines of a good file are bad inline entries: %v", ierr)
				}
				if tbl.Size() != n {
					t.Fatalf("inline: %d entries, file: %d", tbl.Size(), n)
				}
			}
		}
	})
}
