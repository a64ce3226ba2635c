package e2e

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

// The golden test of /metrics: the metric families the daemon serves,
// the golden file and the tables of docs/METRICS.md must agree.

var updateGolden = flag.Bool("update", false, "rewrite "+metricsGolden+" from the scrape (also "+updateGoldenEnv+"=1)")

const (
	updateGoldenEnv = "VIGIL_UPDATE_GOLDEN"
	metricsGolden   = "testdata/metrics.golden"
	metricsDoc      = "../../docs/METRICS.md" // from the package directory, where go test runs
	// conditionalMark in a row's labels column of docs/METRICS.md lets
	// the family be absent from the scrape: it exists only under
	// conditions this test cannot create. Such a row must say why there
	// and here. No row needs it today: the test below makes every
	// family appear.
	conditionalMark = "(conditional)"

	goldenAddr      = "127.0.0.1:19141"
	goldenPort      = 7410    // UDP port of the test's flows
	goldenBridge    = "vgbr0" // an interface native XDP cannot attach to
	goldenIPFIXSink = "ipfix-golden"
	goldenHookSink  = "webhook-golden"
	goldenWait      = 30 * time.Second // every documented family served, both sinks sent
)

// metricFamily is what the test compares of a family: name, type, sorted
// label names and help.
type metricFamily struct {
	Name   string
	Type   string
	Labels []string
	Help   string
}

// line is the family as a line of the golden file.
func (f metricFamily) line() string {
	labels := "-"
	if len(f.Labels) > 0 {
		labels = strings.Join(f.Labels, ",")
	}
	return strings.Join([]string{f.Name, f.Type, labels, f.Help}, "\t")
}

// docRow is a row of a metric table in docs/METRICS.md.
type docRow struct {
	metricFamily
	section     string // the ## heading above the table
	line        int
	conditional bool
}

func (r docRow) where() string { return fmt.Sprintf("%s:%d (%s)", metricsDoc, r.line, r.section) }

// TestMetricsGolden runs `vigil run` in the sensor namespace of a lab
// with every kind of metric turned on, sends a little traffic so that
// the labelled series exist, scrapes /metrics and checks every vigil_*
// family (name, type, label names, help) against testdata/metrics.golden
// and against the tables of docs/METRICS.md, both ways: a family served
// must be documented alike, a documented family must be served. It also
// runs `promtool check metrics` on the scrape where promtool is
// installed (Debian: prometheus).
//
// What it turns on, for the families that exist only then:
//   - detection with the built-in pack, a rule file (a ping rule, so
//     that an alert starts) and an address list: the per-rule series and
//     vigil_detect_list_entries;
//   - adaptive sampling starting at 1-in-100: with little traffic the
//     controller lowers the rate, so vigil_sampling_adjustments_total has
//     series; the self-check reports a second after attaching;
//   - attach_mode xdp-native and, besides the lab's veth, a bridge in the
//     sensor namespace, which has no native XDP: its attach fails, so
//     vigil_attach_failures_total has a series;
//   - two network sinks, IPFIX over UDP to a socket and a webhook to an
//     httptest server, both in the sensor namespace (export metrics are
//     per sink), and an export file.
//
// With -update or VIGIL_UPDATE_GOLDEN=1 it rewrites the golden file from
// the scrape instead of comparing with it (the docs are checked all the
// same).
func TestMetricsGolden(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := testutil.Vigil(t)
	docs := readMetricsDoc(t, metricsDoc)
	lab := labUp(t)
	if out, err := exec.Command("ip", "-n", lab.Sensor.Name, "link", "add", goldenBridge, "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("adding bridge %s: %v %s", goldenBridge, err, out)
	}

	// The IPFIX collector: a UDP socket that counts datagrams.
	var ipfix net.PacketConn
	if err := lab.Sensor.Do(func() (err error) {
		ipfix, err = net.ListenPacket("udp4", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var ipfixDatagrams atomic.Int64
	ipfixDone := make(chan struct{})
	go func() {
		defer close(ipfixDone)
		buf := make([]byte, 65536)
		for {
			if _, _, err := ipfix.ReadFrom(buf); err != nil {
				return
			}
			ipfixDatagrams.Add(1)
		}
	}()
	t.Cleanup(func() { ipfix.Close(); <-ipfixDone })

	// The webhook receiver: an httptest server listening in the sensor
	// namespace.
	var hookLn net.Listener
	if err := lab.Sensor.Do(func() (err error) {
		hookLn, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var hooks atomic.Int64
	hook := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		hooks.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	hook.Listener.Close()
	hook.Listener = hookLn
	hook.Start()
	t.Cleanup(hook.Close)

	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	writeFile(t, rules, pingRule("golden_ping"))
	cfg := filepath.Join(dir, "vigil.yaml")
	writeFile(t, cfg, fmt.Sprintf(`capture:
  interfaces: [%s, %s]
  attach_mode: xdp-native
  sampling: adaptive
  sample_rate: 100
  adaptive: {budget: 20000}
flows:
  idle_timeout: 1s
  active_timeout: 1h
  output: %q
export:
  sensor_name: golden
  spool: {dir: %q, max_mib: 16, fsync: interval}
  files:
    - {path: %q, format: ocsf, records: all}
  ipfix:
    - {name: %s, address: %q, transport: udp}
  webhooks:
    - {name: %s, url: %q}
detect:
  enabled: true
  rules: [%q]
  lists:
    - {name: intel, entries: ["203.0.113.0/24"]}
http:
  listen: %s
log:
  level: info
  stats_interval: 0s
`, netlab.SensorIf, goldenBridge, filepath.Join(dir, "flows.jsonl"), filepath.Join(dir, "spool"),
		filepath.Join(dir, "export.ocsf.jsonl"), goldenIPFIXSink, ipfix.LocalAddr().String(),
		goldenHookSink, hook.URL+"/hook", rules, goldenAddr))
	v := startVigil(t, lab, bin, goldenAddr, "--config", cfg)

	// A little traffic: UDP flows (they end idle after 1 s and go to
	// IPFIX and the files) and pings (the ping rule's alert goes to the
	// webhook).
	lab.NewSink(t, 4, goldenPort)
	lab.NewSink(t, 6, goldenPort)
	for _, family := range []int{4, 6} {
		s := lab.NewSender(t, family, goldenPort, 100)
		if sent, err := s.Send(20); err != nil || sent != 20 {
			t.Fatalf("UDP: sent %d of 20: %v", sent, err)
		}
	}
	pinger := lab.NewPinger(t, 4)

	// Scrape until every documented family is served and both sinks have
	// sent something; compare what the last scrape holds.
	var body string
	var got map[string]metricFamily
	deadline := time.Now().Add(goldenWait)
	for {
		if hooks.Load() == 0 {
			if _, err := pinger.Send([]int{56}); err != nil {
				t.Fatalf("ping: %v", err)
			}
		}
		body = string(v.metrics())
		got = parseFamilies(t, body)
		m := promText(body)
		var missing []string
		for _, r := range docs {
			if _, ok := got[r.Name]; !ok && strings.HasPrefix(r.Name, "vigil_") && !r.conditional {
				missing = append(missing, r.Name)
			}
		}
		sent := m.counter("vigil_export_records_sent_total", `sink="`+goldenIPFIXSink+`"`) > 0 &&
			m.counter("vigil_export_records_sent_total", `sink="`+goldenHookSink+`"`) > 0
		if len(missing) == 0 && sent {
			break
		}
		if !v.running() {
			t.Fatalf("vigil exited (%v)\n%s", v.err, v.stderr.String())
		}
		if time.Now().After(deadline) {
			t.Errorf("after %s: documented families not served: %v; records sent: IPFIX %v (%d datagrams), webhook %v (%d posts)",
				goldenWait, missing,
				m.counter("vigil_export_records_sent_total", `sink="`+goldenIPFIXSink+`"`), ipfixDatagrams.Load(),
				m.counter("vigil_export_records_sent_total", `sink="`+goldenHookSink+`"`), hooks.Load())
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d vigil_* families served; IPFIX received %d datagrams, the webhook %d posts", countVigil(got), ipfixDatagrams.Load(), hooks.Load())

	checkGolden(t, got, docs)
	checkDocs(t, got, docs)
	checkMentions(t, got)
	promtoolCheck(t, body)
	v.stop()
}

// countVigil counts the vigil_* families.
func countVigil(fams map[string]metricFamily) int {
	n := 0
	for name := range fams {
		if strings.HasPrefix(name, "vigil_") {
			n++
		}
	}
	return n
}

// parseFamilies parses a text exposition into families; every series of
// a family must carry the same label names.
func parseFamilies(t *testing.T, body string) map[string]metricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	out := make(map[string]metricFamily, len(mfs))
	for name, mf := range mfs {
		f := metricFamily{Name: name, Type: strings.ToLower(mf.GetType().String()), Help: mf.GetHelp()}
		for i, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName())
			}
			sort.Strings(labels)
			if i == 0 {
				f.Labels = labels
			} else if !slices.Equal(labels, f.Labels) {
				t.Errorf("%s: series with label names %v and %v", name, f.Labels, labels)
			}
		}
		out[name] = f
	}
	return out
}

// checkGolden compares the vigil_* families (less those the docs mark
// conditional, which may come and go) with the golden file, or rewrites
// it.
func checkGolden(t *testing.T, got map[string]metricFamily, docs map[string]docRow) {
	t.Helper()
	var lines []string
	for name, f := range got {
		if strings.HasPrefix(name, "vigil_") && !docs[name].conditional {
			lines = append(lines, f.line())
		}
	}
	sort.Strings(lines)
	if *updateGolden || os.Getenv(updateGoldenEnv) == "1" {
		var b strings.Builder
		fmt.Fprintf(&b, "# The vigil_* metric families `vigil run` serves, one a line: name, type,\n")
		fmt.Fprintf(&b, "# label names (- for none) and help, tab-separated. Written by\n")
		fmt.Fprintf(&b, "# TestMetricsGolden (metrics_golden_test.go) with -update or %s=1.\n", updateGoldenEnv)
		for _, l := range lines {
			fmt.Fprintln(&b, l)
		}
		if err := os.MkdirAll(filepath.Dir(metricsGolden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(metricsGolden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s: %d families", metricsGolden, len(lines))
		return
	}
	data, err := os.ReadFile(metricsGolden)
	if err != nil {
		t.Fatalf("reading the golden file (write it with -update): %v", err)
	}
	var want []string
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			want = append(want, l)
		}
	}
	sort.Strings(want)
	if diff := sortedDiff(lines, want); diff != "" {
		t.Errorf("the vigil_* families served differ from %s (-got +want):\n%s\n"+
			"If the change is meant, rerun with -update (or %s=1) and update docs/METRICS.md.",
			metricsGolden, diff, updateGoldenEnv)
	}
}

// sortedDiff is a line diff of two sorted lists, (-got +want): a line
// only in got with -, only in want with +, the others left out.
func sortedDiff(got, want []string) string {
	var b strings.Builder
	i, j := 0, 0
	for i < len(got) || j < len(want) {
		switch {
		case j == len(want) || i < len(got) && got[i] < want[j]:
			fmt.Fprintf(&b, "-%s\n", got[i])
			i++
		case i == len(got) || want[j] < got[i]:
			fmt.Fprintf(&b, "+%s\n", want[j])
			j++
		default:
			i++
			j++
		}
	}
	return b.String()
}

// checkDocs checks the scrape against docs/METRICS.md: every vigil_*
// family served has a row with its type, label names and help; every
// vigil_* row not marked conditional is served. The other rows (the
// client library's collectors, summarised) must each match a family,
// by prefix when the name ends in *, and its type unless "various".
func checkDocs(t *testing.T, got map[string]metricFamily, docs map[string]docRow) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(got)) {
		f := got[name]
		if !strings.HasPrefix(name, "vigil_") {
			continue
		}
		r, ok := docs[name]
		if !ok {
			t.Errorf("%s (%s, labels %v) is served but not in %s", name, f.Type, f.Labels, metricsDoc)
			continue
		}
		if r.Type != f.Type {
			t.Errorf("%s: %s says type %q, the daemon serves %q", name, r.where(), r.Type, f.Type)
		}
		if !slices.Equal(r.Labels, f.Labels) {
			t.Errorf("%s: %s says labels %v, the daemon serves %v", name, r.where(), r.Labels, f.Labels)
		}
		if r.Help != f.Help {
			t.Errorf("%s: %s says help\n\t%q\nthe daemon serves\n\t%q", name, r.where(), r.Help, f.Help)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(docs)) {
		r := docs[name]
		switch {
		case strings.HasPrefix(name, "vigil_"):
			if _, ok := got[name]; !ok && !r.conditional {
				t.Errorf("%s: %s documents it, the daemon does not serve it (mark the row %s only if it cannot be made to appear here)",
					name, r.where(), conditionalMark)
			}
		case strings.HasSuffix(name, "*"):
			prefix := strings.TrimSuffix(name, "*")
			found := false
			for n, f := range got {
				if strings.HasPrefix(n, prefix) && (r.Type == "various" || r.Type == f.Type) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: %s documents it, no family served matches it", name, r.where())
			}
		default:
			f, ok := got[name]
			switch {
			case !ok && !r.conditional:
				t.Errorf("%s: %s documents it, the daemon does not serve it", name, r.where())
			case ok && r.Type != "various" && r.Type != f.Type:
				t.Errorf("%s: %s says type %q, the daemon serves %q", name, r.where(), r.Type, f.Type)
			}
		}
	}
}

var tableRule = regexp.MustCompile(`^:?-+:?$`)

// readMetricsDoc parses the metric tables of docs/METRICS.md: tables
// whose header is `| name | type | labels | help |`. Names and label
// names are in backticks; labels are comma-separated and may carry the
// conditional mark; help is the plain text of the cell.
func readMetricsDoc(t *testing.T, path string) map[string]docRow {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]docRow{}
	section := ""
	inTable := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			section = strings.TrimSpace(strings.TrimLeft(line, "#"))
		}
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		cells := splitRow(line)
		if len(cells) == 4 && cells[0] == "name" && cells[1] == "type" && cells[2] == "labels" && cells[3] == "help" {
			inTable = true
			continue
		}
		if !inTable || tableRule.MatchString(cells[0]) {
			continue
		}
		if len(cells) != 4 {
			t.Errorf("%s:%d: a metric table row with %d cells, want 4: %s", path, n, len(cells), line)
			continue
		}
		r := docRow{section: section, line: n}
		r.Name = strings.Trim(cells[0], "`")
		r.Type = cells[1]
		labels := cells[2]
		if strings.Contains(labels, conditionalMark) {
			r.conditional = true
			labels = strings.ReplaceAll(labels, conditionalMark, "")
		}
		for _, l := range strings.Split(labels, ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				r.Labels = append(r.Labels, l)
			}
		}
		sort.Strings(r.Labels)
		r.Help = cells[3]
		if old, dup := rows[r.Name]; dup {
			t.Errorf("%s: %s documented twice, also at %s", r.Name, r.where(), old.where())
		}
		rows[r.Name] = r
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no metric tables (| name | type | labels | help |)", path)
	}
	return rows
}

// splitRow splits a markdown table row into its trimmed cells; `\|` is
// a pipe inside a cell.
func splitRow(line string) []string {
	line = strings.TrimPrefix(line, "|")
	line = strings.TrimSuffix(line, "|")
	line = strings.ReplaceAll(line, `\|`, "\x00")
	var cells []string
	for _, c := range strings.Split(line, "|") {
		cells = append(cells, strings.ReplaceAll(strings.TrimSpace(c), "\x00", "|"))
	}
	return cells
}

// promtoolCheck runs `promtool check metrics` (Prometheus's linter of
// an exposition) on the scrape, where promtool is installed.
func promtoolCheck(t *testing.T, body string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed (Debian: prometheus): `promtool check metrics` skipped")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
		return
	}
	t.Logf("promtool check metrics: ok%s", strings.TrimRight("\n"+string(out), "\n"))
}

// mentionedMetric is a metric name in backquotes in a document.
var mentionedMetric = regexp.MustCompile("`(vigil_[a-z0-9_]+)")

// checkMentions fails for every metric a document other than
// docs/METRICS.md names (README.md, docs/*.md) that the daemon does not
// serve: the other pages explain metrics in their context, and a name
// there must stay a name the daemon uses.
func checkMentions(t *testing.T, fams map[string]metricFamily) {
	t.Helper()
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../README.md")
	checked := 0
	for _, f := range files {
		if f == metricsDoc {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, m := range mentionedMetric.FindAllStringSubmatch(line, -1) {
				name := m[1]
				checked++
				if _, ok := fams[name]; ok {
					continue
				}
				// A histogram's or summary's series, or a family name
				// cut short by a line's end.
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
				if _, ok := fams[base]; ok {
					continue
				}
				t.Errorf("%s:%d names %s, which the daemon does not serve", f, i+1, name)
			}
		}
	}
	if checked == 0 {
		t.Errorf("no metric named in README.md or docs/*.md: the check of mentions checked nothing")
	}
	t.Logf("%d mentions of metrics in README.md and docs/*.md checked", checked)
}
