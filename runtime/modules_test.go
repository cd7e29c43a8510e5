package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestModuleSearchOrder: KumoMTA's prefixes in their order, then the
// policy's directory, then kumogo's bundled modules; package.path as the
// policy sets it; Lua's own message listing every place tried.
func TestModuleSearchOrder(t *testing.T) {
	root := t.TempDir()
	share, etc, pol, extra := filepath.Join(root, "share"), filepath.Join(root, "etc"), filepath.Join(root, "pol"), filepath.Join(root, "extra")
	prefixes := []string{share + "/?.lua", share + "/?/init.lua", etc + "/?.lua", etc + "/?/init.lua"}
	// "a" is in share and etc and bundled: share wins. "b" in etc and the
	// policy dir: etc wins. "c" in the policy dir and bundled: the policy
	// dir wins. "d" only bundled. "e" only as share/e/init.lua.
	writeFile(t, share+"/a.lua", "return 'share'")
	writeFile(t, etc+"/a.lua", "return 'etc'")
	writeFile(t, etc+"/b.lua", "return 'etc'")
	writeFile(t, pol+"/b.lua", "return 'pol'")
	writeFile(t, pol+"/c.lua", "return 'pol'")
	writeFile(t, share+"/e/init.lua", "return (...) .. ' ' .. select(2, ...)")
	writeFile(t, extra+"/x/y.lua", "return 'extra'")
	writeFile(t, pol+"/policy.lua", `
local a, b, c, d, e = require 'a', require 'b', require 'c', require 'policy-extras.d', require 'e'
local ok, err = pcall(require, 'x.y')
package.path = '`+extra+`/?.lua;' .. package.path
local y = require 'x.y'
local ok2, missing = pcall(require, 'nope.mod')
kumo.on('t', function() return a, b, c, d, e, ok, y, missing, package.path end)
`)
	mods := fstest.MapFS{
		"a.lua":               {Data: []byte("return 'bundled'")},
		"c.lua":               {Data: []byte("return 'bundled'")},
		"policy-extras/d.lua": {Data: []byte("return 'bundled'")},
	}
	r, err := New(Options{PolicyPath: pol + "/policy.lua", Modules: mods, ModulePrefixes: prefixes,
		Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out, err := r.Call(context.Background(), "t")
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"share", "etc", "pol", "bundled", "e " + share + "/e/init.lua", false, "extra"}
	for i, w := range want {
		if out[i] != w {
			t.Errorf("result %d = %#v, want %#v", i+1, out[i], w)
		}
	}
	msg := out[7].(string)
	wantMsg := "module 'nope.mod' not found:\n\tno field package.preload['nope.mod']\n\tno file '" + extra + "/nope/mod.lua'\n\tno file '" + share + "/nope/mod.lua'\n\tno file '" + share + "/nope/mod/init.lua'\n\tno file '" + etc + "/nope/mod.lua'\n\tno file '" + etc + "/nope/mod/init.lua'\n\tno file '" + pol + "/nope/mod.lua'\n\tno file '" + pol + "/nope/mod/init.lua'\n\tno bundled module 'kumogo:nope/mod.lua'\n\tno bundled module 'kumogo:nope/mod/init.lua'"
	if !strings.HasSuffix(msg, wantMsg) {
		t.Errorf("message:\n%s\nwant suffix:\n%s", msg, wantMsg)
	}
	if out[8] != extra+"/?.lua;"+strings.Join(prefixes, ";")+";"+pol+"/?.lua;"+pol+"/?/init.lua" {
		t.Errorf("package.path = %v", out[8])
	}
}

func TestModulePathDefaultsAndEnv(t *testing.T) {
	pol := filepath.Join(t.TempDir(), "policy.lua")
	writeFile(t, pol, "")
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{nil, strings.Join(KumoPrefixes, ";") + ";" + filepath.Dir(pol) + "/?.lua;" + filepath.Dir(pol) + "/?/init.lua"},
		{map[string]string{"LUA_PATH": "/x/?.lua"}, "/x/?.lua"},
		{map[string]string{"LUA_PATH": "/x/?.lua;;"}, "/x/?.lua;" + strings.Join(KumoPrefixes, ";") + ";" + filepath.Dir(pol) + "/?.lua;" + filepath.Dir(pol) + "/?/init.lua"},
		{map[string]string{"LUA_PATH": "/ignored/?.lua", "LUA_PATH_5_4": ";;/y/?.lua"}, strings.Join(KumoPrefixes, ";") + ";" + filepath.Dir(pol) + "/?.lua;" + filepath.Dir(pol) + "/?/init.lua;/y/?.lua"},
	} {
		r := &Runtime{opts: Options{Getenv: func(k string) string { return tc.env[k] }}, policyDir: filepath.Dir(pol)}
		if got := r.modulePath(); got != tc.want {
			t.Errorf("env %v: path\n%s\nwant\n%s", tc.env, got, tc.want)
		}
	}
}

// TestModuleSearchKeptUntilEpoch: require's file searches are answered
// from a cache (new states do not try every directory again), so a module
// file that appears later is found from the next configuration epoch on,
// as a changed module is (compileModule).
func TestModuleSearchKeptUntilEpoch(t *testing.T) {
	root := t.TempDir()
	pol := filepath.Join(root, "policy.lua")
	writeFile(t, pol, `
local ok, m = pcall(require, 'late')
kumo.on('t', function() return ok and m or 'missing' end)
`)
	r, err := New(Options{PolicyPath: pol, ModulePrefixes: []string{root + "/lib/?.lua"},
		Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.maxUse.Store(1) // a new state, and a new require, for every call
	call := func() any {
		out, err := r.Call(context.Background(), "t")
		if err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	if got := call(); got != "missing" {
		t.Fatalf("before: %v", got)
	}
	writeFile(t, root+"/lib/late.lua", "return 'late'")
	if got := call(); got != "missing" {
		t.Fatalf("same epoch: %v (the search is not cached)", got)
	}
	r.BumpEpoch()
	if got := call(); got != "late" {
		t.Fatalf("after the epoch bump: %v", got)
	}
}
