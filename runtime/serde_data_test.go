package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSerdeTOMLYAML drives the TOML and YAML functions of kumo.serde and
// the kumo.toml_* aliases from a policy.
func TestSerdeTOMLYAML(t *testing.T) {
	dir := t.TempDir()
	tf := filepath.Join(dir, "d.toml")
	os.WriteFile(tf, []byte("i = 3\nf = 3.0\n[t]\nlist = [1, 'x']\n"), 0o644)
	yf := filepath.Join(dir, "d.yaml")
	os.WriteFile(yf, []byte("a: 1\nb: [x, 2.5]\n"), 0o644)
	r := newRuntime(t, `
kumo.on('t', function(tf, yf)
  local v = kumo.serde.toml_load(tf)
  assert(v.i == 3 and math.type(v.i) == 'integer', 'i')
  assert(v.f == 3, 'f')
  assert(v.t.list[1] == 1 and v.t.list[2] == 'x', 'list')
  assert(kumo.toml_load == kumo.serde.toml_load and kumo.toml_parse == kumo.serde.toml_parse)
  assert(kumo.toml_encode and kumo.toml_encode_pretty and kumo.yaml_load == nil)
  local p = kumo.toml_parse('x = 1.5\n[s]\ny = "z"\n')
  assert(p.x == 1.5 and p.s.y == 'z')
  local y = kumo.serde.yaml_load(yf)
  assert(y.a == 1 and y.b[1] == 'x' and y.b[2] == 2.5)
  assert(kumo.serde.yaml_parse('[1, 2]')[2] == 2)
  return kumo.serde.toml_encode { n = 2, g = 2.5, s = { a = true } },
    kumo.serde.toml_encode_pretty { s = { a = 1 } },
    kumo.serde.toml_encode_pretty_compact { e = {}, s = { a = 1 } },
    kumo.serde.yaml_encode { b = { 1, 2 }, a = 'x' }
end)
kumo.on('bad', function(what, arg)
  if what == 'parse' then return kumo.serde.toml_parse(arg) end
  if what == 'load' then return kumo.serde.toml_load(arg) end
  if what == 'yaml' then return kumo.serde.yaml_parse(arg) end
  if what == 'enc' then return kumo.serde.toml_encode(arg) end
  if what == 'fn' then return kumo.serde.yaml_encode({ f = print }) end
end)`)
	out := run(t, r, tf, yf)
	if out[0] != "g = 2.5\nn = 2\n\n[s]\na = true\n" {
		t.Errorf("toml_encode %q", out[0])
	}
	if out[1] != "[s]\n  a = 1\n" {
		t.Errorf("toml_encode_pretty %q", out[1])
	}
	if !strings.Contains(out[2].(string), "e = {}") {
		t.Errorf("toml_encode_pretty_compact %q", out[2])
	}
	if out[3] != "a: x\nb:\n    - 1\n    - 2\n" {
		t.Errorf("yaml_encode %q", out[3])
	}
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("a = 1\nb = = 2\n"), 0o644)
	for _, tc := range []struct {
		what string
		arg  any
		want string
	}{
		{"parse", "a = [", "toml_parse: line 1"},
		{"load", bad, "toml_load: " + bad + ": line 2"},
		{"load", filepath.Join(dir, "none.toml"), "no such file"},
		{"yaml", "a: [1\n", "yaml_parse: line"},
		{"enc", int64(5), "must be a table"},
		{"fn", nil, "function"},
	} {
		_, err := r.Call(context.Background(), "bad", tc.what, tc.arg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: err %v, want %q", tc.what, tc.arg, err, tc.want)
		}
	}
}

// TestJSONParseErrorLine: json_parse and json_load name the line of a
// syntax error.
func TestJSONParseErrorLine(t *testing.T) {
	r := newRuntime(t, `kumo.on('t', function(s) return kumo.serde.json_parse(s) end)`)
	_, err := r.Call(context.Background(), "t", "{\n\"a\": 1,\n\"b\": }")
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("err = %v", err)
	}
}

func TestDomainMap(t *testing.T) {
	r := newRuntime(t, `
kumo.on('t', function()
  local d = kumo.domain_map.new()
  d['foo'] = 'bar'
  assert(d['foo'] == 'bar' and d['not.set'] == nil)
  d['*.example.com'] = 'wildcard'
  assert(d['example.com'] == nil, 'wildcard must not match its own domain')
  assert(d['foo.example.com'] == 'wildcard' and d['a.b.example.com'] == 'wildcard')
  d['explicit.example.com'] = 'explicit'
  assert(d['explicit.example.com'] == 'explicit')
  d['*.b.example.com'] = 'closer'
  assert(d['x.b.example.com'] == 'closer' and d['x.c.example.com'] == 'wildcard')
  assert(d['FOO.Example.COM.'] == 'wildcard', 'case and trailing dot')
  local s = kumo.domain_map.new { ['*.woot.com'] = 123, ['example.com'] = { n = 24 } }
  s['*.example.com'] = 42
  assert(s['lemon.example.com'] == 42 and s['example.com'].n == 24)
  assert(s['woot.com'] == nil and s['aa.woot.com'] == 123)
  s['example.com'].n = 99
  assert(s['example.com'].n == 24, 'values are copies')
  s['example.com'] = nil
  assert(s['example.com'] == nil and #s == 2)
  local keys = {}
  for k, v in pairs(s) do keys[#keys + 1] = k .. '=' .. tostring(v) end
  assert(table.concat(keys, ',') == '*.example.com=42,*.woot.com=123', table.concat(keys, ','))
  assert(tostring(s):find('DomainMap'))
  return d['foo.example.com']
end)
kumo.on('bad', function() return kumo.domain_map.new { [1] = 'x' } end)`)
	if out := run(t, r); out[0] != "wildcard" {
		t.Fatalf("out %v", out)
	}
	if _, err := r.Call(context.Background(), "bad"); err == nil || !strings.Contains(err.Error(), "keys must be strings") {
		t.Fatalf("bad key: %v", err)
	}
}

func TestCIDRMap(t *testing.T) {
	r := newRuntime(t, `
kumo.on('t', function()
  local c = kumo.cidr.make_map()
  c['127.0.0.1'] = 'bar'
  assert(c['127.0.0.1'] == 'bar' and c['not.set'] == nil)
  c['10.0.0.0/24'] = '10. block'
  assert(c['10.0.0.1'] == '10. block' and c['10.0.0.42'] == '10. block' and c['100.0.0.100'] == nil)
  c['10.0.0.0/8'] = 'wide'
  assert(c['10.0.0.9'] == '10. block' and c['10.9.0.9'] == 'wide', 'most specific block wins')
  local m = kumo.cidr.make_map { ['127.0.0.0/24'] = 'loopback', ['::1'] = 'v6', ['2001:db8::/32'] = 'doc' }
  assert(m['127.0.0.1:25'] == 'loopback' and m['[127.0.0.1]'] == 'loopback' and m['[127.0.0.2]:25'] == 'loopback')
  assert(m['[::1]:25'] == 'v6' and m['::1'] == 'v6' and m['2001:db8::5'] == 'doc')
  assert(m['::ffff:127.0.0.3'] == 'loopback', 'v4-mapped')
  m['4.2.4.2'] = 4242
  assert(m['4.2.4.2'] == 4242 and #m == 4)
  m['4.2.4.2'] = nil
  assert(m['4.2.4.2'] == nil and #m == 3)
  return true
end)
kumo.on('bad', function(k)
  local m = kumo.cidr.make_map()
  m[k] = 1
end)
kumo.on('badseed', function() return kumo.cidr.make_map { ['10.0.0.1/8'] = 1 } end)`)
	run(t, r)
	for _, k := range []string{"10.0.0.1/24", "nope", "300.1.1.1"} {
		if _, err := r.Call(context.Background(), "bad", k); err == nil {
			t.Errorf("key %q accepted", k)
		}
	}
	if _, err := r.Call(context.Background(), "badseed"); err == nil || !strings.Contains(err.Error(), "host bits") {
		t.Fatalf("badseed: %v", err)
	}
}
