package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// TestStandardLibrary: a policy is trusted configuration and gets Lua's
// whole standard library, as in KumoMTA (policies read secrets with
// io.open, split themselves up with dofile, and KumoMTA's sink.lua uses
// os.tmpname).
func TestStandardLibrary(t *testing.T) {
	dir := t.TempDir()
	part := filepath.Join(dir, "part.lua")
	if err := os.WriteFile(part, []byte("return 40 + ..."), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRuntime(t, `
kumo.on('t', function(dir, part)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, 'r'))   -- tmpname creates the file
  f:close()
  f = assert(io.open(tmp, 'w'))
  f:write('secret\n')
  f:close()
  local moved = dir .. '/moved'
  assert(os.rename(tmp, moved))
  local content = io.open(moved):read('*a')
  assert(os.remove(moved))
  assert(io.open(moved) == nil)
  local lines = 0
  for _ in io.lines(part) do lines = lines + 1 end
  local chunk = assert(loadfile(part))
  local env = { x = 5 }
  local fromString = assert(load('return x', 'chunk', 't', env))
  local parts = {'return ', '1', ' + 1'}
  local i = 0
  local fromReader = assert(load(function() i = i + 1; return parts[i] end))
  local bad, msg = load('return +', 'badchunk')
  return content, chunk(2), fromString(), fromReader(), bad, msg,
    type(debug.traceback), type(collectgarbage), type(os.execute), type(os.exit),
    os.date('!%Y-%m-%d', 0), lines, type(dofile)
end)`)
	out := run(t, r, dir, part)
	want := []any{"secret\n", int64(42), int64(5), int64(2), nil}
	for i, w := range want {
		if out[i] != w {
			t.Fatalf("result %d = %#v, want %#v (all %#v)", i+1, out[i], w, out)
		}
	}
	if !strings.Contains(out[5].(string), "badchunk") {
		t.Errorf("load error = %v", out[5])
	}
	for i, w := range []any{"function", "function", "function", "function", "1970-01-01", int64(1), "function"} {
		if out[6+i] != w {
			t.Errorf("result %d = %#v, want %#v", 7+i, out[6+i], w)
		}
	}
}

func TestDofile(t *testing.T) {
	dir := t.TempDir()
	part := filepath.Join(dir, "part.lua")
	policy := filepath.Join(dir, "policy.lua")
	if err := os.WriteFile(part, []byte("SHARED = 'from part'\nreturn 7"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(policy, []byte("local n = dofile('"+part+"')\nkumo.on('t', function() return SHARED, n end)"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := New(Options{PolicyPath: policy})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out, err := r.Call(context.Background(), "t")
	if err != nil || out[0] != "from part" || out[1] != int64(7) {
		t.Fatalf("out = %#v, err = %v", out, err)
	}
}

func TestStringRepCapped(t *testing.T) {
	r := newRuntime(t, `kumo.on('t', function() return #string.rep('ab', 3, ','), pcall(string.rep, 'x', 1e9) end)`)
	out := run(t, r)
	if out[0] != int64(8) || out[1] != false || !strings.Contains(out[2].(string), "too large") {
		t.Fatalf("out = %#v", out)
	}
}

func TestLua54Shims(t *testing.T) {
	r := newRuntime(t, `
kumo.on('t', function()
  local a, b, c = table.unpack({1, 2, 3})
  assert(a == 1 and c == 3)
  local p = table.pack(1, nil, 3)
  assert(p.n == 3)
  assert(math.type(1) == 'integer' and math.type(1.5) == 'float' and math.type('1') == nil)
  assert(math.tointeger(3.0) == 3 and math.tointeger(3.5) == nil)
  local s = utf8.char(72, 228, 8364, 128512)
  assert(s == 'Hä€😀')
  assert(utf8.len(s) == 4)
  assert(utf8.len('\255') == nil)
  local cps = {utf8.codepoint(s, 1, -1)}
  assert(#cps == 4 and cps[2] == 228 and cps[4] == 128512)
  assert(utf8.offset(s, 3) == 4)
  assert(utf8.offset(s, -1) == 7)
  local n = 0
  for pos, cp in utf8.codes(s) do n = n + 1 end
  assert(n == 4)
  assert(('Hä'):match(utf8.charpattern .. '$') == 'ä')
  -- large table.concat / unpack must not overflow the registry
  local t = {}
  for i = 1, 200000 do t[i] = 'x' end
  assert(#table.concat(t) == 200000)
  local u = {}
  for i = 1, 50000 do u[i] = i end
  assert(select('#', table.unpack(u)) == 50000)
  return os.getenv('KUMOGO_TEST_ENV'), math.type(os.time())
end)`)
	t.Setenv("KUMOGO_TEST_ENV", "yes")
	out := run(t, r)
	if out[0] != "yes" || out[1] != "integer" {
		t.Fatalf("out = %#v", out)
	}
}

func TestRequire(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.lua")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "lib", "pkg"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "lib", "local.lua"), []byte(`return { name = 'local' }`), 0o644))
	must(os.WriteFile(filepath.Join(dir, "lib", "pkg", "init.lua"), []byte(`return { name = 'pkg' }`), 0o644))
	must(os.WriteFile(policy, []byte(`
local k = require 'kumo'
assert(k == kumo and package.loaded.kumo == kumo)
local bundled = require 'helpers.util'
local again = require 'helpers.util'
assert(bundled == again)
local loc = require 'lib.local'
local pkg = require 'lib.pkg'
local ok, err = pcall(require, 'missing.mod')
assert(not ok)
kumo.on('t', function() return bundled.name, loc.name, pkg.name, tostring(err) end)
`), 0o644))
	mods := fstest.MapFS{"helpers/util.lua": {Data: []byte(`return { name = 'bundled' }`)}}
	r, err := New(Options{PolicyPath: policy, Modules: mods})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out, err := r.Call(context.Background(), "t")
	if err != nil {
		t.Fatal(err)
	}
	if out[0] != "bundled" || out[1] != "local" || out[2] != "pkg" || !strings.Contains(out[3].(string), "missing") {
		t.Fatalf("out = %#v", out)
	}
}

func TestBundledSource(t *testing.T) {
	r, err := New(Options{PolicyPath: "sink.lua", Source: []byte("kumo.on('t', function() error('x') end)")})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = r.Call(context.Background(), "t")
	if err == nil || !strings.Contains(err.Error(), "sink.lua:1: x") {
		t.Fatalf("err = %v", err)
	}
}

func TestSerdeAndMisc(t *testing.T) {
	dir := t.TempDir()
	jf := filepath.Join(dir, "d.json")
	if err := os.WriteFile(jf, []byte("# comment\n{\"a\": [1, 2.5, \"x\"], // c\n \"b\": {\"c\": null, \"d\": true} /* block */}"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRuntime(t, `
kumo.set_smtpsrv_threads(4)
kumo.set_max_lua_context_use_count(10)
kumo.set_max_lua_context_age(60)
kumo.set_max_spare_lua_contexts(100)
kumo.on('t', function(path)
  local v = kumo.serde.json_load(path)
  assert(v.a[1] == 1 and v.a[2] == 2.5 and v.a[3] == 'x' and v.b.d == true and v.b.c == nil)
  local p = kumo.json_parse('{"k": "v // not a comment", "n": 3}')
  assert(p.k == 'v // not a comment')
  kumo.log_info('hello', 1, true)
  print('printed')
  kumo.sleep(0.001)
  assert(type(kumo.version) == 'string')
  assert(#kumo.traceback(1) >= 1)
  return kumo.serde.json_encode({b = {1, 2}, a = 'x<y'}), kumo.json_encode_pretty({a=1}), kumo.serde.json_encode({})
end)`)
	out := run(t, r, jf)
	if out[0] != `{"a":"x<y","b":[1,2]}` || out[1] != "{\n  \"a\": 1\n}" || out[2] != "{}" {
		t.Fatalf("out = %#v", out)
	}
	if r.maxUse.Load() != 10 || r.maxSpare.Load() != 100 {
		t.Fatal("pool settings not applied")
	}
}

func TestSleepHonoursContext(t *testing.T) {
	r := newRuntime(t, `kumo.on('t', function() kumo.sleep(10) end)`)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Call(ctx, "t"); err == nil {
		// the pool wait may fail first with a canceled context; both are fine
		t.Fatal("want error")
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20e6)
	defer cancel2()
	_, err := r.Call(ctx2, "t")
	if err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("err = %v", err)
	}
}
