package datafile

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseTOMLTypesAndOrder(t *testing.T) {
	d, err := ParseTOML([]byte(`
i = 3
f = 3.0
g = 2.5
s = "x"
b = true
when = 1979-05-27T07:32:00Z
day = 1979-05-27
arr = [1, 2.5, "m"]

["zeta.com"]
connection_limit = 1

["alpha.com"]
connection_limit = 2

[provider.b]
x = 1
[provider.a]
x = 2

[[auto]]
n = 1
[[auto]]
n = 2
`))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := d.Table()
	want := map[string]any{"i": int64(3), "f": float64(3), "g": 2.5, "s": "x", "b": true,
		"when": "1979-05-27T07:32:00Z", "day": "1979-05-27", "arr": []any{int64(1), 2.5, "m"}}
	for k, v := range want {
		if !reflect.DeepEqual(m[k], v) {
			t.Errorf("%s = %#v, want %#v", k, m[k], v)
		}
	}
	if _, ok := m["f"].(float64); !ok {
		t.Errorf("f is %T, want float64: integers and floats are kept apart", m["f"])
	}
	if got := d.Keys(); strings.Join(got, ",") != "i,f,g,s,b,when,day,arr,zeta.com,alpha.com,provider,auto" {
		t.Errorf("top-level order %v", got)
	}
	if got := d.Keys("provider"); strings.Join(got, ",") != "b,a" {
		t.Errorf("provider order %v", got)
	}
	if auto := m["auto"].([]any); len(auto) != 2 || auto[1].(map[string]any)["n"] != int64(2) {
		t.Errorf("array of tables %#v", m["auto"])
	}
	if d.Keys("i") != nil || d.Keys("nope") != nil {
		t.Error("Keys of a non-table must be nil")
	}
}

func TestSyntaxErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct {
		f    Format
		src  string
		want string
	}{
		{TOML, "a = 1\nb = \n", "line 2"},
		{TOML, "a = 1\n[x]\nc = 1\n[x]\n", "line 4"},
		{JSON, "{\n  \"a\": 1,\n  \"b\": ,\n}", "line 3"},
		{JSON, "{\n // comment\n \"a\": [1, 2\n", "unexpected end"},
		{JSON, "{\"a\": 1} x", "trailing"},
		{YAML, "a: 1\nb: [1, 2\n", "line"},
	} {
		_, err := Parse(tc.f, []byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %q: err %v, want %q", tc.f, tc.src, err, tc.want)
		}
	}
}

func TestParseJSONCommentsOrderNumbers(t *testing.T) {
	d, err := ParseJSON([]byte(`{
  // line comment
  "z": 1, # hash comment
  /* block
     comment */ "a": {"y": 1.5, "x": "s//not a comment"},
  "n": [1, 2.0, null, true]
}`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(d.Keys(), ",") != "z,a,n" || strings.Join(d.Keys("a"), ",") != "y,x" {
		t.Fatalf("order %v %v", d.Keys(), d.Keys("a"))
	}
	m, _ := d.Table()
	if m["a"].(map[string]any)["x"] != "s//not a comment" {
		t.Fatalf("string with // changed: %#v", m["a"])
	}
	if !reflect.DeepEqual(m["n"], []any{int64(1), 2.0, nil, true}) {
		t.Fatalf("n = %#v", m["n"])
	}
}

func TestParseYAML(t *testing.T) {
	v, err := ParseYAML([]byte("a: 1\nb: 1.0\nc: [x, 2]\nd:\n  1: one\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": int64(1), "b": 1.0, "c": []any{"x", int64(2)}, "d": map[string]any{"1": "one"}}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("%#v", v)
	}
	if _, ok := v.(map[string]any)["b"].(float64); !ok {
		t.Fatal("1.0 must stay a float")
	}
	if v, err := ParseYAML(nil); err != nil || v != nil {
		t.Fatalf("empty: %v %v", v, err)
	}
}

func TestEncodeTOML(t *testing.T) {
	v := map[string]any{"b": int64(2), "a": 1.5, "t": map[string]any{"x": "y", "e": map[string]any{}}, "l": []any{int64(1), int64(2)}}
	compact, err := EncodeTOML(v, TOMLCompact)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseTOML([]byte(compact))
	if err != nil {
		t.Fatalf("%v\n%s", err, compact)
	}
	if !reflect.DeepEqual(back.Value, v) {
		t.Fatalf("round trip %#v\n%s", back.Value, compact)
	}
	if !strings.Contains(compact, "a = 1.5") || !strings.Contains(compact, "b = 2\n") {
		t.Fatalf("compact:\n%s", compact)
	}
	pretty, _ := EncodeTOML(v, TOMLPretty)
	if !strings.Contains(pretty, "  x = \"y\"") {
		t.Fatalf("pretty is not indented:\n%s", pretty)
	}
	pc, _ := EncodeTOML(v, TOMLPrettyCompact)
	if !strings.Contains(pc, "e = {}") || strings.Contains(pc, "[t.e]") {
		t.Fatalf("pretty compact:\n%s", pc)
	}
	if _, err := EncodeTOML([]any{int64(1)}, TOMLCompact); err == nil || !strings.Contains(err.Error(), "must be a table") {
		t.Fatalf("array document: %v", err)
	}
}

func TestEncodeYAML(t *testing.T) {
	s, err := EncodeYAML(map[string]any{"a": int64(1), "b": 1.5, "c": []any{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	if s != "a: 1\nb: 1.5\nc:\n    - x\n" {
		t.Fatalf("%q", s)
	}
}

func TestLoadByExtension(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"a.toml": "k = 1\n", "a.json": `{"k": 1}`, "a.yaml": "k: 1\n", "a.yml": "k: 1\n", "a.conf": `{"k": 1}`,
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(src), 0o644)
		d, err := Load(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m, _ := d.Table(); m["k"] != int64(1) {
			t.Fatalf("%s: %#v", name, d.Value)
		}
	}
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("ok = 1\nnot toml\n"), 0o644)
	if _, err := Load(bad); err == nil || !strings.HasPrefix(err.Error(), bad+": line 2") {
		t.Fatalf("bad: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil {
		t.Fatal("missing file: no error")
	}
	if _, err := (&Doc{Value: "x"}).Table(); err != ErrNotTable {
		t.Fatal("Table of a string")
	}
}

func TestTOMLKeyLine(t *testing.T) {
	src := []byte(`top = 1
["gmail.com"]
a = 1

  b = 2
["gmail.com".sources."s1"]
c = 3
[x.y]
z = { w = 1 }
[[arr]]
q = 1
`)
	for _, tc := range []struct {
		path []string
		want int
	}{
		{[]string{"top"}, 1},
		{[]string{"gmail.com", "a"}, 3},
		{[]string{"gmail.com", "b"}, 5},
		{[]string{"gmail.com", "sources", "s1", "c"}, 7},
		{[]string{"x", "y", "z"}, 9},
		{[]string{"x"}, 8},
		{[]string{"gmail.com", "nope"}, 0},
		{[]string{"nope", "a"}, 0},
		{[]string{"top", "a"}, 0},
		{[]string{"arr", "q"}, 0},
		{nil, 0},
	} {
		if got := TOMLKeyLine(src, tc.path...); got != tc.want {
			t.Errorf("%v: line %d, want %d", tc.path, got, tc.want)
		}
	}
	if TOMLKeyLine([]byte("a = "), "a") != 0 {
		t.Error("bad document")
	}
}
