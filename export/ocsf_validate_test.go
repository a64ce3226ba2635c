package export

// Validation of OCSF events against the schema ocsf_schema_test.go
// resolves: required attributes, known attributes, JSON types, enums and
// their captions, type constraints and the classes' constraints.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// validator checks one event against a class.
type validator struct {
	s        *ocsfSchema
	profiles []string // metadata.profiles of the event
	errs     []string
}

func (v *validator) errf(path, format string, args ...any) {
	v.errs = append(v.errs, path+": "+fmt.Sprintf(format, args...))
}

// validateOCSF checks a JSON line against a class and returns what is
// wrong, one string per problem.
func (s *ocsfSchema) validateOCSF(line []byte, class string) []string {
	v := &validator{s: s}
	if err := checkDuplicateKeys(line); err != nil {
		v.errf("", "%v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var ev map[string]any
	if err := dec.Decode(&ev); err != nil {
		v.errf("", "not a JSON object: %v", err)
		return v.errs
	}
	r, err := s.resolve("class", class)
	if err != nil {
		v.errf("", "%v", err)
		return v.errs
	}
	if md, ok := ev["metadata"].(map[string]any); ok {
		if ps, ok := md["profiles"].([]any); ok {
			for _, p := range ps {
				if ps, ok := p.(string); ok {
					v.profiles = append(v.profiles, ps)
				}
			}
		}
	}
	v.object("", ev, r)
	cls, _ := ev["class_uid"].(json.Number)
	act, _ := ev["activity_id"].(json.Number)
	typ, _ := ev["type_uid"].(json.Number)
	if cls.String() != strconv.Itoa(r.uid) {
		v.errf("class_uid", "%s, want %d", cls, r.uid)
	}
	c, _ := cls.Int64()
	a, _ := act.Int64()
	if tu, err := typ.Int64(); err != nil || tu != c*100+a {
		v.errf("type_uid", "%s, want class_uid*100+activity_id = %d", typ, c*100+a)
	}
	return v.errs
}

func (v *validator) object(path string, obj map[string]any, r *ocsfResolved) {
	for _, name := range r.required(v.profiles) {
		if val, ok := obj[name]; !ok || val == nil {
			v.errf(join(path, name), "required attribute missing")
		}
	}
	for name, val := range obj {
		a, ok := r.attrs[name]
		switch {
		case !ok:
			v.errf(join(path, name), "not an attribute of %s", r.name)
			continue
		case a.profile() != "" && !slices.Contains(v.profiles, a.profile()):
			v.errf(join(path, name), "belongs to profile %q, which metadata.profiles does not apply", a.profile())
			continue
		}
		v.attribute(join(path, name), val, a)
		if sib := a.str("sibling"); sib != "" && obj[sib] != nil {
			v.sibling(join(path, sib), val, obj[sib], a)
		}
	}
	for kind, names := range r.constraints {
		n := 0
		for _, name := range names {
			if obj[name] != nil {
				n++
			}
		}
		if (kind == "at_least_one" && n == 0) || (kind == "just_one" && n != 1) {
			v.errf(path, "%s of %v: %d present", kind, names, n)
		}
	}
}

// sibling checks that a caption attribute matches its id's enum caption
// (except for 99, Other, where it carries the source's own value).
func (v *validator) sibling(path string, id, caption any, a ocsfAttr) {
	n, ok := id.(json.Number)
	if !ok || n.String() == "99" {
		return
	}
	e, _ := a.enum()[n.String()].(map[string]any)
	if want, ok := e["caption"].(string); ok && caption != want {
		v.errf(path, "%v, want %q (the caption of %s)", caption, want, n)
	}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func (v *validator) attribute(path string, val any, a ocsfAttr) {
	if isArr, _ := a["is_array"].(bool); isArr {
		arr, ok := val.([]any)
		if !ok {
			v.errf(path, "%T, want an array", val)
			return
		}
		for i, e := range arr {
			v.value(fmt.Sprintf("%s[%d]", path, i), e, a)
		}
		return
	}
	v.value(path, val, a)
}

func (v *validator) value(path string, val any, a ocsfAttr) {
	typ := a.str("type")
	switch {
	case typ == "object": // free form, as unmapped
		if _, ok := val.(map[string]any); !ok {
			v.errf(path, "%T, want an object", val)
		}
		return
	case !strings.HasSuffix(typ, "_t"):
		obj, ok := val.(map[string]any)
		if !ok {
			v.errf(path, "%T, want object %s", val, typ)
			return
		}
		r, err := v.s.resolve("object", typ)
		if err != nil {
			v.errf(path, "%v", err)
			return
		}
		v.object(path, obj, r)
		return
	}
	base, cons, ok := v.s.baseType(typ)
	if !ok {
		v.errf(path, "unknown type %s", typ)
		return
	}
	v.scalar(path, val, typ, base, cons)
	if e := a.enum(); e != nil {
		key := fmt.Sprint(val)
		if _, ok := e[key]; !ok {
			v.errf(path, "%v is not in the enum %v", val, slices.Sorted(mapKeys(e)))
		}
	}
}

func (v *validator) scalar(path string, val any, typ, base string, cons []map[string]any) {
	switch base {
	case "string_t":
		s, ok := val.(string)
		if !ok {
			v.errf(path, "%T, want a string (%s)", val, typ)
			return
		}
		for _, c := range cons {
			if ml, ok := c["max_len"].(float64); ok && len(s) > int(ml) {
				v.errf(path, "%d bytes, more than %s's %d", len(s), typ, int(ml))
			}
			if re, ok := c["regex"].(string); ok {
				rx, err := v.s.regexp(re)
				if err != nil {
					v.errf(path, "%s regex does not compile: %v", typ, err)
				} else if !rx.MatchString(s) {
					v.errf(path, "%q does not match %s", s, typ)
				}
			}
		}
	case "integer_t", "long_t":
		n, ok := val.(json.Number)
		i, err := n.Int64()
		if !ok || err != nil {
			v.errf(path, "%v (%T), want an integer (%s)", val, val, typ)
			return
		}
		if base == "integer_t" && (i < math.MinInt32 || i > math.MaxInt32) {
			v.errf(path, "%d does not fit integer_t (32 bits)", i)
		}
		for _, c := range cons {
			if rg, ok := c["range"].([]any); ok && len(rg) == 2 {
				lo, hi := rg[0].(float64), rg[1].(float64)
				if float64(i) < lo || float64(i) > hi {
					v.errf(path, "%d outside %s's range [%v, %v]", i, typ, lo, hi)
				}
			}
		}
	case "float_t":
		if _, ok := val.(json.Number); !ok {
			v.errf(path, "%T, want a number (%s)", val, typ)
		}
	case "boolean_t":
		if _, ok := val.(bool); !ok {
			v.errf(path, "%T, want a boolean", val)
		}
	case "json_t":
	default:
		v.errf(path, "type %s has unknown base %s", typ, base)
	}
}

func (s *ocsfSchema) regexp(re string) (*regexp.Regexp, error) {
	if rx, ok := s.regexps[re]; ok {
		return rx, nil
	}
	rx, err := regexp.Compile(re)
	if err != nil {
		return nil, err
	}
	s.regexps[re] = rx
	return rx, nil
}

// checkDuplicateKeys reports an object key given twice, which
// encoding/json would silently accept.
func checkDuplicateKeys(line []byte) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	var walk func() error
	walk = func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key := k.(string)
				if seen[key] {
					return fmt.Errorf("duplicate key %q", key)
				}
				seen[key] = true
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	if err := walk(); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("data after the object")
	}
	return nil
}
