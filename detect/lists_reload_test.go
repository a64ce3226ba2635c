package detect

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
)

var mtimeBase = time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)

// rewrite replaces a file's content and gives it the mtime base+sec, so a
// rewrite within the file system's timestamp granularity is still seen.
func rewrite(t testing.TB, path, content string, sec int) {
	t.Helper()
	// As the docs ask of writers: a new file renamed over the old one, so
	// that a watcher never reads it half-written.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	mtime := mtimeBase.Add(time.Duration(sec) * time.Second)
	if err := os.Chtimes(tmp, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestListReload(t *testing.T) {
	path := writeFile(t, "intel.txt", "")
	rewrite(t, path, "192.0.2.1\n", 0)
	l := mustLoad(t, ListSpec{Name: "intel", Path: path})
	a1, a2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.7")

	if changed, err := l.Reload(); changed || err != nil {
		t.Fatalf("Reload of an unchanged file = %v, %v; want false, nil", changed, err)
	}

	rewrite(t, path, "192.0.2.1\n198.51.100.0/24\n", 1)
	if changed, err := l.Reload(); !changed || err != nil {
		t.Fatalf("Reload of a changed file = %v, %v; want true, nil", changed, err)
	}
	if !l.Contains(a1) || !l.Contains(a2) || l.Len() != 2 {
		t.Fatalf("after a reload: Contains = %v %v, Len = %d", l.Contains(a1), l.Contains(a2), l.Len())
	}
	if changed, err := l.Reload(); changed || err != nil {
		t.Errorf("second Reload = %v, %v; want false, nil", changed, err)
	}

	// Same mtime, other size: changed too.
	rewrite(t, path, "192.0.2.1\n198.51.100.0/24\n203.0.113.0/24\n", 1)
	if changed, err := l.Reload(); !changed || err != nil || l.Len() != 3 {
		t.Fatalf("Reload after a size change = %v, %v (Len %d); want true, nil, 3", changed, err, l.Len())
	}

	// A bad file keeps the old content; until it changes, Reload returns
	// the same error without parsing it again.
	rewrite(t, path, "192.0.2.1\n10.0.0.300/8\n", 2)
	changed, err := l.Reload()
	if changed || err == nil || !strings.Contains(err.Error(), path+`:2: "10.0.0.300/8": not an address or prefix`) {
		t.Fatalf("Reload of a bad file = %v, %v; want false and the bad line", changed, err)
	}
	if !l.Contains(a2) || l.Len() != 3 {
		t.Errorf("a failed reload lost the content: Contains(%s) = %v, Len = %d", a2, l.Contains(a2), l.Len())
	}
	if changed, err2 := l.Reload(); changed || err2 != err {
		t.Errorf("Reload of the same bad file = %v, %v; want false and the same error", changed, err2)
	}

	// A missing file keeps the old content too.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if changed, err := l.Reload(); changed || err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Reload of a missing file = %v, %v", changed, err)
	}
	if !l.Contains(a2) {
		t.Error("a missing file emptied the list")
	}

	// Back with good content.
	rewrite(t, path, "2001:db8::/32\n", 3)
	if changed, err := l.Reload(); !changed || err != nil {
		t.Fatalf("Reload after a fix = %v, %v; want true, nil", changed, err)
	}
	if l.Contains(a1) || !l.Contains(netip.MustParseAddr("2001:db8::5")) || l.Len() != 1 {
		t.Errorf("after a fix the list has %v", entries(l))
	}
}

func TestListReloadReplacedFile(t *testing.T) {
	// A file replaced by rename with the same mtime and size is a change.
	path := writeFile(t, "intel.txt", "")
	rewrite(t, path, "192.0.2.1\n", 0)
	l := mustLoad(t, ListSpec{Name: "intel", Path: path})
	tmp := path + ".new"
	rewrite(t, tmp, "192.0.2.2\n", 0)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if changed, err := l.Reload(); !changed || err != nil || !l.Contains(netip.MustParseAddr("192.0.2.2")) {
		t.Errorf("Reload of a replaced file = %v, %v, entries %v", changed, err, entries(l))
	}
}

func TestListReloadInline(t *testing.T) {
	l := mustLoad(t, ListSpec{Name: "allow", Entries: []string{"192.0.2.0/24"}})
	if changed, err := l.Reload(); changed || err != nil {
		t.Errorf("Reload of an inline list = %v, %v", changed, err)
	}
}

// TestListConcurrentReload runs lookups while the list is reloaded (run it
// with -race): an address in every version is always found.
func TestListConcurrentReload(t *testing.T) {
	versions := []string{"192.0.2.0/24\n2001:db8::/32\n", "192.0.2.0/24\n198.51.100.0/24\n2001:db8::/32\n"}
	path := writeFile(t, "intel.txt", "")
	rewrite(t, path, versions[0], 0)
	l := mustLoad(t, ListSpec{Name: "intel", Path: path})
	always := []netip.Addr{netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("2001:db8::9")}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var misses sync.Map
	for r := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				a := always[(i+r)%len(always)]
				if !l.Contains(a) {
					misses.Store(a, true)
				}
				if p, ok := l.Lookup(a); !ok || !p.Contains(a) {
					misses.Store(a, true)
				}
				l.Contains(netip.MustParseAddr("198.51.100.1"))
			}
		})
	}
	var reloads atomic.Int32
	for i := 1; i <= 100; i++ {
		rewrite(t, path, versions[i%2], i)
		var rg sync.WaitGroup
		for range 2 { // concurrent Reloads are serialized
			rg.Go(func() {
				if changed, err := l.Reload(); err != nil {
					t.Error(err)
				} else if changed {
					reloads.Add(1) // only one of the two sees the change
				}
			})
		}
		rg.Wait()
	}
	close(stop)
	wg.Wait()
	misses.Range(func(a, _ any) bool {
		t.Errorf("%s was missing during a reload", a)
		return true
	})
	if n := reloads.Load(); n != 100 {
		t.Errorf("%d reloads saw a change, want 100", n)
	}
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestListsWatch(t *testing.T) {
	const every = 20 * time.Millisecond
	path := writeFile(t, "intel.txt", "")
	rewrite(t, path, "192.0.2.1\n", 0)
	ls, err := LoadLists([]ListSpec{{Name: "intel", Path: path}, {Name: "allow", Entries: []string{"10.0.0.0/8"}}})
	if err != nil {
		t.Fatal(err)
	}
	type reload struct {
		name string
		n    int
	}
	reloads := make(chan reload, 10)
	var logs testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ls.Watch(ctx, every, log, func(name string, n int) { reloads <- reload{name, n} })
	}()

	rewrite(t, path, "192.0.2.1\n198.51.100.0/24\n", 1)
	start := time.Now()
	select {
	case r := <-reloads:
		if r != (reload{"intel", 2}) {
			t.Errorf("onReload(%q, %d), want (intel, 2)", r.name, r.n)
		}
		t.Logf("change seen after %v", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not reload the changed file")
	}
	if !ls.Get("intel").Contains(netip.MustParseAddr("198.51.100.7")) {
		t.Error("the reloaded list misses the new prefix")
	}

	// A bad file is logged once, with the file and the line, and the list
	// keeps its content.
	rewrite(t, path, "192.0.2.1\nbogus\n", 2)
	eventually(t, "the failure log", func() bool { return strings.Contains(logs.String(), "reloading list failed") })
	time.Sleep(10 * every)
	out := logs.String()
	if n := strings.Count(out, "reloading list failed"); n != 1 {
		t.Errorf("the failure was logged %d times, want once:\n%s", n, out)
	}
	for _, want := range []string{"list=intel", "file=" + path, `:2: \"bogus\": not an address or prefix`} {
		if !strings.Contains(out, want) {
			t.Errorf("the log misses %s:\n%s", want, out)
		}
	}
	if l := ls.Get("intel"); l.Len() != 2 {
		t.Errorf("after a bad file Len = %d, want the previous 2", l.Len())
	}
	select {
	case r := <-reloads:
		t.Errorf("onReload(%q, %d) for a bad file", r.name, r.n)
	default:
	}

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
}
