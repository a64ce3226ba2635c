package detect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"
)

// List formats.
const (
	ListFormatPlain    = "plain"
	ListFormatCSV      = "csv"
	ListFormatSpamhaus = "spamhaus"
)

// ListSpec describes an address list: a threat-intel feed read from a file,
// or an allow list written inline in the configuration.
type ListSpec struct {
	Name    string   // referenced by filters: in_list(src_addr, "intel")
	Path    string   // file; "" when Entries are inline
	Format  string   // "plain" (default), "csv", "spamhaus"
	Column  int      // csv: 0-based column holding the address/prefix (default 0)
	Entries []string // inline addresses/prefixes (allow lists in YAML)
}

// List is a set of prefixes with longest-prefix match. Lookups are safe
// during Reload: a reload builds a new table and swaps it in atomically.
type List struct {
	spec ListSpec
	cur  atomic.Pointer[listData]

	mu      sync.Mutex // serializes Reload; guards the fields below
	loaded  fileStamp  // the file the current content was read from
	failed  fileStamp  // the last file that did not parse
	failErr error      // and why
}

// listData is one immutable generation of a list.
type listData struct {
	table *bart.Table[string] // prefix -> label (comment, SBL id, other CSV fields)
}

// fileStamp identifies a version of a file by identity, mtime and size.
type fileStamp struct {
	fi os.FileInfo
}

func (s fileStamp) same(fi os.FileInfo) bool {
	return s.fi != nil && fi != nil && os.SameFile(s.fi, fi) &&
		s.fi.ModTime().Equal(fi.ModTime()) && s.fi.Size() == fi.Size()
}

// LoadList checks spec and reads the list. Errors name the list and, for a
// bad line, the file and line: list "intel": intel.txt:12: "10.0.0.300/8":
// not an address or prefix.
func LoadList(spec ListSpec) (*List, error) {
	if err := spec.check(); err != nil {
		return nil, fmt.Errorf("list %q: %w", spec.Name, err)
	}
	l := &List{spec: spec}
	if spec.Path == "" {
		t, err := parseInline(spec.Entries)
		if err != nil {
			return nil, fmt.Errorf("list %q: %w", spec.Name, err)
		}
		l.cur.Store(&listData{table: t})
		return l, nil
	}
	t, fi, err := readListFile(spec)
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", spec.Name, err)
	}
	l.cur.Store(&listData{table: t})
	l.loaded = fileStamp{fi}
	return l, nil
}

func (spec ListSpec) check() error {
	if spec.Name == "" {
		return errors.New("the name is empty")
	}
	switch spec.Format {
	case "", ListFormatPlain, ListFormatSpamhaus:
		if spec.Column != 0 {
			return fmt.Errorf("column is for the csv format, not %q", spec.Format)
		}
	case ListFormatCSV:
		if spec.Column < 0 {
			return fmt.Errorf("negative column %d", spec.Column)
		}
	default:
		return fmt.Errorf("unknown format %q (want plain, csv or spamhaus)", spec.Format)
	}
	switch {
	case spec.Path != "" && len(spec.Entries) > 0:
		return errors.New("a list has a path or entries, not both")
	case spec.Path == "" && len(spec.Entries) == 0:
		return errors.New("a list needs a path or entries")
	case spec.Path == "" && spec.Format != "" && spec.Format != ListFormatPlain:
		return fmt.Errorf("inline entries are plain, not %q", spec.Format)
	}
	return nil
}

// Name is the name filters use for the list.
func (l *List) Name() string { return l.spec.Name }

// Path is the list's file, "" for an inline list.
func (l *List) Path() string { return l.spec.Path }

// Contains reports whether a prefix of the list holds a. IPv4-mapped IPv6
// addresses match IPv4 entries.
func (l *List) Contains(a netip.Addr) bool {
	return l.cur.Load().table.Contains(a.Unmap())
}

// Lookup returns the longest prefix of the list holding a.
func (l *List) Lookup(a netip.Addr) (netip.Prefix, bool) {
	p, _, ok := l.LookupLabel(a)
	return p, ok
}

// LookupLabel returns the longest prefix of the list holding a and its
// label: the entry's comment in plain files, the SBL id of Spamhaus lists,
// the other fields of a CSV record.
func (l *List) LookupLabel(a netip.Addr) (netip.Prefix, string, bool) {
	a = a.Unmap()
	return l.cur.Load().table.LookupPrefixLPM(netip.PrefixFrom(a, a.BitLen()))
}

// Len is the number of distinct prefixes loaded.
func (l *List) Len() int { return l.cur.Load().table.Size() }

// Reload re-reads the list's file if its identity, mtime or size changed
// since the last load. On error the list keeps its content; a file that
// failed is not parsed again until it changes (Reload returns the same
// error meanwhile). Writers should replace the file atomically (rename); a
// file read half-written is read again once its size or mtime settles.
func (l *List) Reload() (changed bool, err error) {
	if l.spec.Path == "" {
		return false, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fi, err := os.Stat(l.spec.Path)
	if err != nil {
		return false, fmt.Errorf("list %q: %w", l.spec.Name, err)
	}
	if l.loaded.same(fi) {
		return false, nil
	}
	if l.failed.same(fi) {
		return false, l.failErr
	}
	t, fi, err := readListFile(l.spec)
	if err != nil {
		err = fmt.Errorf("list %q: %w", l.spec.Name, err)
		l.failed, l.failErr = fileStamp{fi}, err
		return false, err
	}
	l.cur.Store(&listData{table: t})
	l.loaded, l.failed, l.failErr = fileStamp{fi}, fileStamp{}, nil
	return true, nil
}

// MaxListFileBytes bounds a list file: 256 MiB is some ten million
// prefixes, past any published block list.
const MaxListFileBytes = 256 << 20

// readListFile parses spec's file. The FileInfo comes from the open file,
// so it describes what was read even if the path is replaced meanwhile;
// it is nil when the file could not be opened.
func readListFile(spec ListSpec) (*bart.Table[string], os.FileInfo, error) {
	// Stat before opening: opening a FIFO would wait for a writer.
	if st, err := os.Stat(spec.Path); err == nil && !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a regular file", spec.Path)
	}
	f, err := os.Open(spec.Path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a regular file", spec.Path)
	}
	if fi.Size() > MaxListFileBytes {
		return nil, nil, fmt.Errorf("%s is %d bytes, past the limit of %d MiB for a list file", spec.Path, fi.Size(), MaxListFileBytes>>20)
	}
	var t *bart.Table[string]
	switch spec.Format {
	case ListFormatCSV:
		t, err = parseCSV(f, spec.Path, spec.Column)
	case ListFormatSpamhaus:
		t, err = parseLines(f, spec.Path, true)
	default:
		t, err = parseLines(f, spec.Path, false)
	}
	return t, fi, err
}

// Lists are the configured lists by name. A nil *Lists has no lists.
type Lists struct {
	byName map[string]*List
	names  []string // sorted
}

// LoadLists loads every list; the error joins the errors of every bad
// list.
func LoadLists(specs []ListSpec) (*Lists, error) {
	ls := &Lists{byName: make(map[string]*List, len(specs))}
	var errs []error
	for i, spec := range specs {
		if _, dup := ls.byName[spec.Name]; dup {
			errs = append(errs, &OptionError{Field: fmt.Sprintf("lists[%d].name", i), Msg: fmt.Sprintf("list %q: defined twice", spec.Name)})
			continue
		}
		l, err := LoadList(spec)
		if err != nil {
			if spec.Path == "" && spec.check() == nil {
				// Inline entries: placed at the entries in the config file.
				err = &OptionError{Field: fmt.Sprintf("lists[%d].entries", i), Msg: err.Error()}
			}
			errs = append(errs, err)
			continue
		}
		ls.byName[spec.Name] = l
		ls.names = append(ls.names, spec.Name)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.Sort(ls.names)
	return ls, nil
}

// List returns the named list as the filter compiler wants it (a *List).
func (ls *Lists) List(name string) (AddrSet, bool) {
	l := ls.Get(name)
	if l == nil {
		return nil, false // not a typed nil
	}
	return l, true
}

// Get returns the named list, nil if there is none.
func (ls *Lists) Get(name string) *List {
	if ls == nil {
		return nil
	}
	return ls.byName[name]
}

// Names returns the lists' names, sorted.
func (ls *Lists) Names() []string {
	if ls == nil {
		return nil
	}
	return append([]string(nil), ls.names...)
}

// Watch checks the lists' files every interval (5 s when every <= 0) and
// reloads the changed ones until ctx ends. A failure is logged once per
// distinct error and the list keeps its previous content; onReload, if not
// nil, is called after each successful change with the list's new length.
func (ls *Lists) Watch(ctx context.Context, every time.Duration, log *slog.Logger, onReload func(name string, n int)) {
	if every <= 0 {
		every = 5 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lastErr := map[string]string{}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, name := range ls.Names() {
			l := ls.byName[name]
			if l.spec.Path == "" {
				continue
			}
			changed, err := l.Reload()
			if err != nil {
				if msg := err.Error(); msg != lastErr[name] {
					lastErr[name] = msg
					log.Warn("reloading list failed, keeping its previous content",
						"list", name, "file", l.spec.Path, "error", err)
				}
				continue
			}
			delete(lastErr, name)
			if changed {
				n := l.Len()
				log.Info("list reloaded", "list", name, "file", l.spec.Path, "entries", n)
				if onReload != nil {
					onReload(name, n)
				}
			}
		}
	}
}
