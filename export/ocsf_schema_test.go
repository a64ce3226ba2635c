package export

// A small OCSF schema resolver and validator, for testing Vigil's OCSF
// output against the schema files in testdata/ocsf-schema-1.8.0: classes
// are resolved through "extends" and "$include" (profiles), objects
// through theirs, attribute types and enums through the dictionary, as
// the OCSF server compiles them.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const ocsfSchemaDir = "testdata/ocsf-schema-1.8.0"

// ocsfDef is a class or an object as a file gives it.
type ocsfDef struct {
	Name        string                     `json:"name"`
	Caption     string                     `json:"caption"`
	Extends     string                     `json:"extends"`
	Category    string                     `json:"category"`
	UID         int                        `json:"uid"`
	Observable  int                        `json:"observable"`
	Attributes  map[string]json.RawMessage `json:"attributes"`
	Constraints map[string][]string        `json:"constraints"`
}

// ocsfAttr is an attribute resolved: the dictionary's definition
// overridden by the parents' and then the definition's own.
type ocsfAttr map[string]any

func (a ocsfAttr) str(k string) string { s, _ := a[k].(string); return s }

// profile is the profile the attribute belongs to, "" for none.
func (a ocsfAttr) profile() string { return a.str("profile") }

func (a ocsfAttr) enum() map[string]any { e, _ := a["enum"].(map[string]any); return e }

// ocsfResolved is a class or object with all its attributes.
type ocsfResolved struct {
	name        string
	caption     string
	uid         int // classes: class_uid
	attrs       map[string]ocsfAttr
	constraints map[string][]string
}

type ocsfSchema struct {
	dict       map[string]map[string]any // dictionary attributes
	types      map[string]map[string]any // dictionary types
	classes    map[string]*ocsfDef
	objects    map[string]*ocsfDef
	categories map[string]map[string]any
	resolved   map[string]*ocsfResolved // "class:name" or "object:name"
	regexps    map[string]*regexp.Regexp
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func loadOCSFSchema(t testing.TB) *ocsfSchema {
	t.Helper()
	s := &ocsfSchema{classes: map[string]*ocsfDef{}, objects: map[string]*ocsfDef{},
		resolved: map[string]*ocsfResolved{}, regexps: map[string]*regexp.Regexp{}}
	var dict struct {
		Attributes map[string]map[string]any
		Types      struct{ Attributes map[string]map[string]any }
	}
	var cats struct{ Attributes map[string]map[string]any }
	if err := readJSON(filepath.Join(ocsfSchemaDir, "dictionary.json"), &dict); err != nil {
		t.Fatal(err)
	}
	if err := readJSON(filepath.Join(ocsfSchemaDir, "categories.json"), &cats); err != nil {
		t.Fatal(err)
	}
	s.dict, s.types, s.categories = dict.Attributes, dict.Types.Attributes, cats.Attributes
	for dir, into := range map[string]map[string]*ocsfDef{"events": s.classes, "objects": s.objects} {
		err := filepath.WalkDir(filepath.Join(ocsfSchemaDir, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
				return err
			}
			def := new(ocsfDef)
			if err := readJSON(path, def); err != nil {
				return err
			}
			into[def.Name] = def
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(s.dict) < 100 || len(s.types) < 10 || len(s.objects) < 50 || s.classes["network_activity"] == nil || s.classes["detection_finding"] == nil {
		t.Fatalf("schema not loaded: %d attributes, %d types, %d objects, classes %v", len(s.dict), len(s.types), len(s.objects), slices.Sorted(mapKeys(s.classes)))
	}
	return s
}

func mapKeys[M ~map[string]V, V any](m M) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// merge deep-merges over into base: maps merge key by key (enums gain
// values), anything else is replaced, an explicit null included.
func merge(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		bm, ok1 := out[k].(map[string]any)
		om, ok2 := v.(map[string]any)
		if ok1 && ok2 {
			out[k] = merge(bm, om)
		} else {
			out[k] = v
		}
	}
	return out
}

// rawAttrs returns a definition's attributes merged over its parents':
// profiles first ($include, each attribute tagged with its profile),
// then the definition's own attributes.
func (s *ocsfSchema) rawAttrs(def *ocsfDef, defs map[string]*ocsfDef) (map[string]map[string]any, map[string][]string, error) {
	attrs := map[string]map[string]any{}
	var constraints map[string][]string
	if def.Extends != "" {
		parent, ok := defs[def.Extends]
		if !ok {
			return nil, nil, fmt.Errorf("%s extends unknown %q", def.Name, def.Extends)
		}
		pa, pc, err := s.rawAttrs(parent, defs)
		if err != nil {
			return nil, nil, err
		}
		attrs, constraints = pa, pc
	}
	own := map[string]map[string]any{}
	for name, raw := range def.Attributes {
		if name == "$include" {
			var paths []string
			if err := json.Unmarshal(raw, &paths); err != nil {
				return nil, nil, fmt.Errorf("%s $include: %w", def.Name, err)
			}
			for _, p := range paths {
				var prof ocsfDef
				if err := readJSON(filepath.Join(ocsfSchemaDir, p), &prof); err != nil {
					return nil, nil, err
				}
				for an, ar := range prof.Attributes {
					var a map[string]any
					if err := json.Unmarshal(ar, &a); err != nil {
						return nil, nil, fmt.Errorf("%s %s: %w", p, an, err)
					}
					a["profile"] = prof.Name
					attrs[an] = merge(attrs[an], a)
				}
			}
			continue
		}
		var a map[string]any
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, nil, fmt.Errorf("%s %s: %w", def.Name, name, err)
		}
		own[name] = a
	}
	for name, a := range own {
		attrs[name] = merge(attrs[name], a)
	}
	if def.Constraints != nil {
		constraints = def.Constraints
	}
	return attrs, constraints, nil
}

// resolve returns a class ("class") or object ("object") with every
// attribute completed from the dictionary.
func (s *ocsfSchema) resolve(kind, name string) (*ocsfResolved, error) {
	if r, ok := s.resolved[kind+":"+name]; ok {
		return r, nil
	}
	defs := s.objects
	if kind == "class" {
		defs = s.classes
	}
	def, ok := defs[name]
	if !ok {
		return nil, fmt.Errorf("no %s %q in the schema", kind, name)
	}
	raw, constraints, err := s.rawAttrs(def, defs)
	if err != nil {
		return nil, err
	}
	r := &ocsfResolved{name: name, caption: def.Caption, attrs: map[string]ocsfAttr{}, constraints: constraints}
	for an, a := range raw {
		d, ok := s.dict[an]
		if !ok {
			return nil, fmt.Errorf("%s %s: attribute not in the dictionary", name, an)
		}
		r.attrs[an] = ocsfAttr(merge(d, a))
	}
	if kind == "class" {
		s.classEnums(def, r)
	}
	if kind == "object" && name == "observable" {
		s.observableTypes(r)
	}
	s.resolved[kind+":"+name] = r
	return r, nil
}

// classEnums fills the enums the OCSF server generates for a class:
// class_uid, category_uid and type_uid (class_uid × 100 + activity_id).
func (s *ocsfSchema) classEnums(def *ocsfDef, r *ocsfResolved) {
	category := ""
	for d := def; d != nil; d = s.classes[d.Extends] {
		if d.Category != "" {
			category = d.Category
			break
		}
	}
	cat := s.categories[category]
	catUID := int(cat["uid"].(float64))
	r.uid = catUID*1000 + def.UID
	r.attrs["category_uid"] = ocsfAttr(merge(r.attrs["category_uid"], map[string]any{"enum": map[string]any{
		strconv.Itoa(catUID): map[string]any{"caption": cat["caption"]}}}))
	r.attrs["class_uid"] = ocsfAttr(merge(r.attrs["class_uid"], map[string]any{"enum": map[string]any{
		strconv.Itoa(r.uid): map[string]any{"caption": def.Caption}}}))
	types := map[string]any{}
	for v, e := range r.attrs["activity_id"].enum() {
		n, _ := strconv.Atoi(v)
		caption := e.(map[string]any)["caption"].(string)
		types[strconv.Itoa(r.uid*100+n)] = map[string]any{"caption": def.Caption + ": " + caption}
	}
	r.attrs["type_uid"] = ocsfAttr(merge(r.attrs["type_uid"], map[string]any{"enum": types}))
}

// observableTypes fills observable.type_id with every type, attribute
// and object the schema marks observable, as the OCSF server does.
func (s *ocsfSchema) observableTypes(r *ocsfResolved) {
	enum := map[string]any{}
	for name, t := range s.types {
		if id, ok := t["observable"].(float64); ok {
			enum[strconv.Itoa(int(id))] = map[string]any{"caption": t["caption"], "from": name}
		}
	}
	for name, a := range s.dict {
		if id, ok := a["observable"].(float64); ok {
			enum[strconv.Itoa(int(id))] = map[string]any{"from": name} // no caption check
		}
	}
	for name, o := range s.objects {
		if o.Observable != 0 {
			enum[strconv.Itoa(o.Observable)] = map[string]any{"from": name}
		}
		for an, raw := range o.Attributes {
			var a map[string]any
			if json.Unmarshal(raw, &a) == nil {
				if id, ok := a["observable"].(float64); ok {
					enum[strconv.Itoa(int(id))] = map[string]any{"from": name + "." + an}
				}
			}
		}
	}
	r.attrs["type_id"] = ocsfAttr(merge(r.attrs["type_id"], map[string]any{"enum": enum}))
}

// required lists the attributes a class or object requires when the
// given profiles are applied.
func (r *ocsfResolved) required(profiles []string) []string {
	var out []string
	for name, a := range r.attrs {
		if a.str("requirement") == "required" && (a.profile() == "" || slices.Contains(profiles, a.profile())) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// baseType follows a dictionary type to its base (string_t, integer_t,
// long_t, float_t, boolean_t, json_t) and collects the constraints met on
// the way.
func (s *ocsfSchema) baseType(name string) (base string, cons []map[string]any, ok bool) {
	for range 10 {
		t, found := s.types[name]
		if !found {
			return "", nil, false
		}
		cons = append(cons, t)
		next, _ := t["type"].(string)
		if next == "" {
			return name, cons, true
		}
		name = next
	}
	return "", nil, false
}

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
