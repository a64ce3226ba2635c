package detect

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Lists is what the filter compiler resolves list names with.
var _ ListSet = (*Lists)(nil)

// entries returns a list's prefixes and labels, as strings for diffs.
func entries(l *List) map[string]string {
	m := map[string]string{}
	for p, label := range l.cur.Load().table.All() {
		m[p.String()] = label
	}
	return m
}

func mustLoad(t *testing.T, spec ListSpec) *List {
	t.Helper()
	l, err := LoadList(spec)
	if err != nil {
		t.Fatalf("LoadList(%+v): %v", spec, err)
	}
	return l
}

func TestListFormats(t *testing.T) {
	dir := filepath.Join("testdata", "lists")
	for _, tc := range []struct {
		name string
		spec ListSpec
		want map[string]string
	}{{
		name: "plain",
		spec: ListSpec{Path: filepath.Join(dir, "plain.txt")},
		want: map[string]string{
			"192.0.2.1/32":       "",
			"198.51.100.0/24":    "scanner net",
			"203.0.0.0/16":       "masked to 203.0.0.0/16",
			"10.9.8.7/32":        "",
			"2001:db8::1/128":    "",
			"2001:db8:abcd::/48": "v6 net",
			"2001:db8::/32":      "",
			"192.0.2.200/32":     "",
			"198.18.0.0/15":      "",
		},
	}, {
		name: "csv",
		spec: ListSpec{Path: filepath.Join(dir, "intel.csv"), Format: "csv", Column: 1},
		want: map[string]string{
			"192.0.2.10/32":      "2025-10-01,scanner,80",
			"198.51.100.0/25":    "2025-10-02,botnet c2,95",
			"2001:db8:feed::/64": "2025-10-03,proxy",
			"203.0.113.5/32":     "2025-10-04",
		},
	}, {
		name: "spamhaus text",
		spec: ListSpec{Path: filepath.Join(dir, "drop.txt"), Format: "spamhaus"},
		want: map[string]string{
			"1.10.16.0/20":      "SBL256894",
			"1.19.0.0/16":       "SBL434604",
			"2.56.192.0/22":     "SBL459831",
			"2001:db8:d00::/40": "SBL000001",
		},
	}, {
		name: "spamhaus json",
		spec: ListSpec{Path: filepath.Join(dir, "drop_v6.json"), Format: "spamhaus"},
		want: map[string]string{
			"2001:db8:bad::/48":   "SBL123456",
			"2001:db8:bad:1::/64": "SBL123457",
			"5.42.64.0/21":        "SBL600001",
		},
	}, {
		name: "inline",
		spec: ListSpec{Entries: []string{"192.0.2.0/24", " 2001:db8::/64 # lab", "::ffff:10.0.0.1", "fe80::1"}},
		want: map[string]string{
			"192.0.2.0/24":  "",
			"2001:db8::/64": "lab",
			"10.0.0.1/32":   "",
			"fe80::1/128":   "",
		},
	}, {
		name: "empty file",
		spec: ListSpec{Path: filepath.Join(dir, "empty.txt")},
		want: map[string]string{},
	}, {
		name: "only comments",
		spec: ListSpec{Path: filepath.Join(dir, "comments.txt")},
		want: map[string]string{},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Name = "l"
			l := mustLoad(t, tc.spec)
			if diff := cmp.Diff(tc.want, entries(l)); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
			if l.Len() != len(tc.want) {
				t.Errorf("Len() = %d, want %d", l.Len(), len(tc.want))
			}
			for p := range tc.want {
				a := netip.MustParsePrefix(p).Addr()
				if !l.Contains(a) {
					t.Errorf("Contains(%s) = false", a)
				}
			}
			if l.Contains(netip.MustParseAddr("100.64.0.1")) || l.Contains(netip.MustParseAddr("2001:db9::1")) {
				t.Error("Contains is true for an address outside the list")
			}
		})
	}
}

func TestListCSVWithoutHeader(t *testing.T) {
	path := writeFile(t, "a.csv", "192.0.2.1,x\n2001:db8::/32,y\n")
	l := mustLoad(t, ListSpec{Name: "c", Path: path, Format: "csv"})
	want := map[string]string{"192.0.2.1/32": "x", "2001:db8::/32": "y"}
	if diff := cmp.Diff(want, entries(l)); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	// Only the first record may be a header.
	path = writeFile(t, "b.csv", "ip\n192.0.2.1\naddress\n")
	_, err := LoadList(ListSpec{Name: "c", Path: path, Format: "csv"})
	if want := path + `:3: "address": not an address or prefix`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to contain %s", err, want)
	}
}

func TestListLongestPrefixMatch(t *testing.T) {
	l := mustLoad(t, ListSpec{Name: "n", Entries: []string{
		"10.0.0.0/8 # eight", "10.1.0.0/16 # sixteen", "10.1.2.0/24 # twenty-four", "10.1.2.3 # host",
		"2001:db8::/32 # v6-32", "2001:db8:1::/48 # v6-48", "2001:db8:1:2::/64 # v6-64",
	}})
	for _, tc := range []struct {
		addr, prefix, label string
	}{
		{"10.200.0.1", "10.0.0.0/8", "eight"},
		{"10.1.200.1", "10.1.0.0/16", "sixteen"},
		{"10.1.2.4", "10.1.2.0/24", "twenty-four"},
		{"10.1.2.3", "10.1.2.3/32", "host"},
		{"::ffff:10.1.2.3", "10.1.2.3/32", "host"},
		{"2001:db8:ffff::1", "2001:db8::/32", "v6-32"},
		{"2001:db8:1:ffff::1", "2001:db8:1::/48", "v6-48"},
		{"2001:db8:1:2::1", "2001:db8:1:2::/64", "v6-64"},
		{"fe80::1%eth0", "", ""},
		{"11.0.0.1", "", ""},
		{"2001:db9::1", "", ""},
	} {
		a := netip.MustParseAddr(tc.addr)
		p, label, ok := l.LookupLabel(a)
		p2, ok2 := l.Lookup(a)
		if tc.prefix == "" {
			if ok || ok2 || l.Contains(a) {
				t.Errorf("%s: got %s %q, want no match", tc.addr, p, label)
			}
			continue
		}
		if !ok || p.String() != tc.prefix || label != tc.label {
			t.Errorf("LookupLabel(%s) = %s %q %v, want %s %q", tc.addr, p, label, ok, tc.prefix, tc.label)
		}
		if !ok2 || p2 != p {
			t.Errorf("Lookup(%s) = %s %v, want %s", tc.addr, p2, ok2, p)
		}
		if !l.Contains(a) {
			t.Errorf("Contains(%s) = false", tc.addr)
		}
	}
	if l.Contains(netip.Addr{}) {
		t.Error("Contains(invalid address) = true")
	}
	if _, ok := l.Lookup(netip.Addr{}); ok {
		t.Error("Lookup(invalid address) matched")
	}
}

func TestListErrors(t *testing.T) {
	bad := filepath.Join("testdata", "lists", "bad.txt")
	_, err := LoadList(ListSpec{Name: "intel", Path: bad})
	for _, want := range []string{
		`list "intel": testdata/lists/bad.txt:4: "10.0.0.300/8": not an address or prefix`,
		`testdata/lists/bad.txt:6: "not-an-ip": not an address or prefix`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to contain %s", err, want)
		}
	}

	var many strings.Builder
	for i := range 25 {
		fmt.Fprintf(&many, "192.0.2.%d\nbad%d\n", i, i)
	}
	path := writeFile(t, "many.txt", many.String())
	_, err = LoadList(ListSpec{Name: "m", Path: path})
	if err == nil || strings.Count(err.Error(), "not an address or prefix") != maxLineErrors ||
		!strings.Contains(err.Error(), path+": 15 more bad lines") {
		t.Errorf("err = %v, want %d bad lines and 15 more", err, maxLineErrors)
	}

	for _, tc := range []struct {
		spec ListSpec
		want string
	}{
		{ListSpec{Name: "x", Path: filepath.Join(t.TempDir(), "missing.txt")}, "no such file"},
		{ListSpec{Path: bad}, "the name is empty"},
		{ListSpec{Name: "x", Path: bad, Format: "json"}, `unknown format "json"`},
		{ListSpec{Name: "x", Path: bad, Column: 2}, "column is for the csv format"},
		{ListSpec{Name: "x", Path: bad, Format: "csv", Column: -1}, "negative column"},
		{ListSpec{Name: "x", Path: bad, Entries: []string{"192.0.2.1"}}, "a path or entries, not both"},
		{ListSpec{Name: "x"}, "needs a path or entries"},
		{ListSpec{Name: "x", Entries: []string{"192.0.2.1"}, Format: "csv"}, "inline entries are plain"},
		{ListSpec{Name: "x", Entries: []string{"192.0.2.1", "192.0.2.0/33"}}, `list "x": entry 2: "192.0.2.0/33": not an address or prefix`},
		{ListSpec{Name: "x", Entries: []string{"fe80::1%eth0"}}, `list "x": entry 1: "fe80::1%eth0": zones are not supported`},
		{ListSpec{Name: "x", Path: writeFile(t, "c.csv", "1.2.3.4,a\n5.6.7.8,b\n"), Format: "csv", Column: 1}, "c.csv:2: \"b\": not an address"},
		{ListSpec{Name: "x", Path: writeFile(t, "d.csv", "1.2.3.4,a\n5.6.7.8\n"), Format: "csv"}, ""},
		{ListSpec{Name: "x", Path: writeFile(t, "e.csv", "h,ip\nx,1.2.3.4\ny\n"), Format: "csv", Column: 1}, "e.csv:3: no column 1 (the record has 1 fields)"},
		{ListSpec{Name: "x", Path: writeFile(t, "f.csv", "1.2.3.4\n\"5.6.7.8\n"), Format: "csv"}, "f.csv:2: extraneous or missing \" in quoted-field"},
	} {
		_, err := LoadList(tc.spec)
		if tc.want == "" {
			if err != nil {
				t.Errorf("LoadList(%+v): %v", tc.spec, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadList(%+v) err = %v, want it to contain %q", tc.spec, err, tc.want)
		}
	}
}

func TestListSpamhausJSONErrors(t *testing.T) {
	path := writeFile(t, "g.json", "{\"cidr\":\"5.6.7.8/33\"}\n{\"cidr\":\n{\"sblid\":\"x\"}\n{\"type\":\"metadata\"}\n")
	_, err := LoadList(ListSpec{Name: "x", Path: path, Format: "spamhaus"})
	for _, want := range []string{
		path + `:1: "5.6.7.8/33": not an address or prefix`,
		path + `:2: bad JSON`,
		path + `:3: JSON line without a cidr`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to contain %s", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), ":4:") {
		t.Errorf("err = %v, the metadata line is not an error", err)
	}
}

func TestLoadLists(t *testing.T) {
	dir := filepath.Join("testdata", "lists")
	ls, err := LoadLists([]ListSpec{
		{Name: "intel", Path: filepath.Join(dir, "drop.txt"), Format: "spamhaus"},
		{Name: "allow", Entries: []string{"192.0.2.0/24"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"allow", "intel"}, ls.Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	if l := ls.Get("intel"); l == nil || l.Name() != "intel" || l.Len() != 4 {
		t.Errorf("Get(intel) = %v", l)
	}
	set, ok := ls.List("allow")
	if l, isList := set.(*List); !ok || !isList || l != ls.Get("allow") {
		t.Errorf("List(allow) = %v, %v; want the *List", set, ok)
	}
	if !set.Contains(netip.MustParseAddr("192.0.2.9")) || set.Contains(netip.MustParseAddr("192.0.3.9")) {
		t.Error("List(allow) does not hold its entries")
	}
	if set, ok := ls.List("nope"); ok || set != nil {
		t.Errorf("List(nope) = %v, %v; want nil, false", set, ok)
	}
	if ls.Get("nope") != nil {
		t.Error("Get(nope) is not nil")
	}

	var none *Lists
	if _, ok := none.List("x"); ok || none.Get("x") != nil || none.Names() != nil {
		t.Error("a nil *Lists has lists")
	}

	_, err = LoadLists([]ListSpec{
		{Name: "a", Path: filepath.Join(dir, "bad.txt")},
		{Name: "b", Entries: []string{"192.0.2.1"}},
		{Name: "b", Entries: []string{"192.0.2.2"}},
		{Name: "c", Format: "xml", Path: "x"},
	})
	for _, want := range []string{`list "a": testdata/lists/bad.txt:4:`, `list "b": defined twice`, `list "c": unknown format`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to contain %s", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), `list "b": entry`) {
		t.Errorf("err = %v blames the good list b", err)
	}
}

func TestParseEntryRejects(t *testing.T) {
	// Every kind of bad line is rejected, with the text it had.
	for _, s := range []string{"10.0.0.300", "10.0.0.0/33", "2001:db8::/129", "1.2.3", "010.1.1.1", "1.2.3.4/", "/8", "1.2.3.4 5.6.7.8", "::ffff:1.2.3.4%x/128", "fe80::1%eth0"} {
		if p, err := parseEntry(s); err == nil {
			t.Errorf("parseEntry(%q) = %s, want an error", s, p)
		}
	}
	var errAs *os.PathError
	_, err := LoadList(ListSpec{Name: "x", Path: "testdata/lists/none.txt"})
	if !errors.As(err, &errAs) {
		t.Errorf("err = %v, want an *os.PathError", err)
	}
}

// writeFile writes a file in a test's temporary directory.
func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
