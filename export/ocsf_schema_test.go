package export

// A small OCSF schema resolver, for testing Vigil's OCSF output against
// the schema files in testdata/ocsf-schema-1.8.0 (the checks are in
// ocsf_validate_test.go): classes
// are resolved through "extends" and "$include" (profiles), objects
// through theirs, attribute types and enums through the dictionary, as
// the OCSF server compiles them.

import (
	"encoding/json"
	"fmt"
	"io/fs"
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
