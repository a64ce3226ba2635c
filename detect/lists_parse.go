package detect

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/gaissmai/bart"
)

// maxLineErrors bounds the bad lines an error lists: a file in the wrong
// format would otherwise give one error per line.
const maxLineErrors = 10

// errNotEntry is why most bad entries are bad.
var errNotEntry = errors.New("not an address or prefix")

// parseEntry parses an address (a /32 or /128) or a prefix, masked. IPv4-
// mapped IPv6 addresses and prefixes become IPv4 ones.
func parseEntry(s string) (netip.Prefix, error) {
	if strings.IndexByte(s, '/') >= 0 {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, errNotEntry
		}
		p = p.Masked()
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, errNotEntry
	}
	if a.Zone() != "" {
		// As in filters: a zone would be silently ignored when matching.
		return netip.Prefix{}, errors.New("zones are not supported")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// splitComment splits a line at the first '#' or ';' into the trimmed
// entry and the trimmed comment, which becomes the entry's label.
func splitComment(line string) (entry, label string) {
	if i := strings.IndexAny(line, "#;"); i >= 0 {
		label = strings.TrimSpace(strings.TrimLeft(line[i:], "#;"))
		line = line[:i]
	}
	return strings.TrimSpace(line), label
}

// lineErrors collects the bad lines of a source, up to maxLineErrors.
type lineErrors struct {
	src  string // file name; "" for inline entries
	errs []error
	more int
}

func (e *lineErrors) add(line int, format string, args ...any) {
	if len(e.errs) == maxLineErrors {
		e.more++
		return
	}
	msg := fmt.Sprintf(format, args...)
	if e.src == "" {
		e.errs = append(e.errs, fmt.Errorf("entry %d: %s", line, msg))
	} else {
		e.errs = append(e.errs, fmt.Errorf("%s:%d: %s", e.src, line, msg))
	}
}

func (e *lineErrors) badEntry(line int, s string, err error) {
	e.add(line, "%q: %v", s, err)
}

func (e *lineErrors) err() error {
	if e.more > 0 {
		e.errs = append(e.errs, fmt.Errorf("%s: %d more bad lines", e.src, e.more))
	}
	return errors.Join(e.errs...)
}

// parseInline parses the entries of an inline list, as plain lines.
func parseInline(entries []string) (*bart.Table[string], error) {
	t := new(bart.Table[string])
	bad := lineErrors{}
	for i, s := range entries {
		entry, label := splitComment(s)
		p, err := parseEntry(entry)
		if err != nil {
			bad.badEntry(i+1, entry, err)
			continue
		}
		t.Insert(p, label)
	}
	if err := bad.err(); err != nil {
		return nil, err
	}
	return t, nil
}

// skipBOM drops a UTF-8 byte order mark, which Windows editors write.
func skipBOM(r io.Reader) *bufio.Reader {
	br := bufio.NewReaderSize(r, 64<<10)
	if b, err := br.Peek(3); err == nil && string(b) == "\ufeff" {
		_, _ = br.Discard(3)
	}
	return br
}

// parseLines parses a plain list or, with spamhaus, a Spamhaus DROP list in
// its text form ("1.10.16.0/20 ; SBL256894") or its JSON lines form.
func parseLines(r io.Reader, src string, spamhaus bool) (*bart.Table[string], error) {
	sc := bufio.NewScanner(skipBOM(r))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	t := new(bart.Table[string])
	bad := lineErrors{src: src}
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if spamhaus {
			if s := strings.TrimSpace(line); strings.HasPrefix(s, "{") {
				parseSpamhausJSON(t, &bad, n, s)
				continue
			}
		}
		entry, label := splitComment(line)
		if entry == "" {
			continue
		}
		p, err := parseEntry(entry)
		if err != nil {
			bad.badEntry(n, entry, err)
			continue
		}
		t.Insert(p, label)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", src, n+1, err)
	}
	if err := bad.err(); err != nil {
		return nil, err
	}
	return t, nil
}

// spamhausRecord is a line of Spamhaus' JSON lines lists. The last line is
// metadata ({"type":"metadata",...}) without a cidr.
type spamhausRecord struct {
	CIDR  string `json:"cidr"`
	SBLID string `json:"sblid"`
	Type  string `json:"type"`
}

func parseSpamhausJSON(t *bart.Table[string], bad *lineErrors, n int, line string) {
	var rec spamhausRecord
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		bad.add(n, "bad JSON: %v", err)
		return
	}
	if rec.CIDR == "" {
		if rec.Type == "" {
			bad.add(n, "JSON line without a cidr")
		}
		return
	}
	p, err := parseEntry(rec.CIDR)
	if err != nil {
		bad.badEntry(n, rec.CIDR, err)
		return
	}
	t.Insert(p, rec.SBLID)
}

// parseCSV parses a CSV list whose column col holds the entries; the other
// fields, joined by commas, are the label. A first record whose column is
// not an entry but has letters is a header. '#' starts comment lines.
func parseCSV(r io.Reader, src string, col int) (*bart.Table[string], error) {
	cr := csv.NewReader(skipBOM(r))
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	t := new(bart.Table[string])
	bad := lineErrors{src: src}
	for first := true; ; first = false {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if pe := (*csv.ParseError)(nil); errors.As(err, &pe) {
			return nil, fmt.Errorf("%s:%d: %w", src, pe.Line, pe.Err)
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		line, _ := cr.FieldPos(0)
		if col >= len(rec) {
			bad.add(line, "no column %d (the record has %d fields)", col, len(rec))
			continue
		}
		entry := strings.TrimSpace(rec[col])
		p, perr := parseEntry(entry)
		if perr != nil {
			if first && strings.ContainsFunc(entry, isLetter) {
				continue
			}
			bad.badEntry(line, entry, perr)
			continue
		}
		t.Insert(p, csvLabel(rec, col))
	}
	if err := bad.err(); err != nil {
		return nil, err
	}
	return t, nil
}

func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

func csvLabel(rec []string, col int) string {
	if len(rec) == 1 {
		return ""
	}
	var b strings.Builder
	for i, f := range rec {
		f = strings.TrimSpace(f)
		if i == col || f == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(f)
	}
	return b.String()
}
