package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// KumoPrefixes are the entries KumoMTA puts first in package.path, in its
// order (KumoMTA's "Lua dialect and module path", kumomta-model.md).
var KumoPrefixes = []string{
	"/opt/kumomta/share/?.lua",
	"/opt/kumomta/share/?/init.lua",
	"/opt/kumomta/etc/policy/?.lua",
	"/opt/kumomta/etc/policy/?/init.lua",
}

// modulePath computes the initial package.path: KumoMTA's prefixes (or
// Options.ModulePrefixes), then the policy's own directory; LUA_PATH_5_4
// or LUA_PATH replace it, with ";;" standing for that default, as in Lua.
// kumogo's bundled modules are searched after package.path by a searcher
// of their own, so a user's copy of a helper wins.
func (r *Runtime) modulePath() string {
	prefixes := r.opts.ModulePrefixes
	if prefixes == nil {
		prefixes = KumoPrefixes
	}
	def := append([]string(nil), prefixes...)
	if r.policyDir != "" {
		def = append(def, filepath.Join(r.policyDir, "?.lua"), filepath.Join(r.policyDir, "?", "init.lua"))
	}
	defPath := strings.Join(def, ";")
	getenv := r.opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	env := getenv("LUA_PATH_5_4")
	if env == "" {
		env = getenv("LUA_PATH")
	}
	if env == "" {
		return defPath
	}
	if !strings.Contains(env, ";;") {
		return env
	}
	env = strings.Replace(env, ";;", ";\x00;", 1)
	env = strings.ReplaceAll(env, ";;", ";")
	env = strings.Replace(env, "\x00", defPath, 1)
	return strings.Trim(env, ";")
}

// openPackage sets package.path and the searchers: preload, then the
// files of package.path (read when require runs, so a policy may change
// it), then the bundled modules. require is Lua 5.4's, with its message
// listing every place tried.
func (st *state) openPackage() {
	L := st.L
	pkg := L.GetGlobal("package").(*lua.LTable)
	pkg.RawSetString("loadlib", lua.LNil)
	pkg.RawSetString("cpath", lua.LString(""))
	pkg.RawSetString("config", lua.LString(string(filepath.Separator)+"\n;\n?\n!\n-\n"))
	pkg.RawSetString("path", lua.LString(st.rt.searchPath))
	pkg.RawSetString("searchpath", L.NewFunction(pkgSearchPath))
	searchers := L.CreateTable(3, 0)
	searchers.RawSetInt(1, L.NewFunction(searchPreload))
	searchers.RawSetInt(2, L.NewFunction(st.searchLuaPath))
	searchers.RawSetInt(3, L.NewFunction(st.searchBundled))
	pkg.RawSetString("searchers", searchers)
	pkg.RawSetString("loaders", searchers)
	L.SetField(L.Get(lua.RegistryIndex), "_LOADERS", searchers)
	L.SetGlobal("require", L.NewFunction(luaRequire))
}

// luaRequire is Lua 5.4's require: package.loaded, then each searcher of
// package.searchers; a loader is called with the name and the extra value
// its searcher returned (the file name).
func luaRequire(L *lua.LState) int {
	name := L.CheckString(1)
	loaded := L.GetField(L.Get(lua.RegistryIndex), "_LOADED").(*lua.LTable)
	if v := loaded.RawGetString(name); v != lua.LNil && v != lua.LFalse {
		L.Push(v)
		return 1
	}
	pkg, _ := L.GetGlobal("package").(*lua.LTable)
	var searchers *lua.LTable
	if pkg != nil {
		searchers, _ = pkg.RawGetString("searchers").(*lua.LTable)
	}
	if searchers == nil {
		L.RaiseError("'package.searchers' must be a table")
	}
	var msgs strings.Builder
	for i := 1; ; i++ {
		s := searchers.RawGetInt(i)
		if s == lua.LNil {
			L.RaiseError("module '%s' not found:%s", name, msgs.String())
		}
		L.Push(s)
		L.Push(lua.LString(name))
		L.Call(1, 2)
		loader, extra := L.Get(-2), L.Get(-1)
		L.Pop(2)
		if fn, ok := loader.(*lua.LFunction); ok {
			L.Push(fn)
			L.Push(lua.LString(name))
			L.Push(extra)
			L.Call(2, 1)
			res := L.Get(-1)
			L.Pop(1)
			if res != lua.LNil {
				loaded.RawSetString(name, res)
			}
			if loaded.RawGetString(name) == lua.LNil {
				loaded.RawSetString(name, lua.LTrue)
			}
			L.Push(loaded.RawGetString(name))
			L.Push(extra)
			return 2
		}
		if s, ok := loader.(lua.LString); ok {
			msgs.WriteString("\n\t")
			msgs.WriteString(string(s))
		}
	}
}

func searchPreload(L *lua.LState) int {
	name := L.CheckString(1)
	if pkg, ok := L.GetGlobal("package").(*lua.LTable); ok {
		if pre, ok := pkg.RawGetString("preload").(*lua.LTable); ok {
			if fn := pre.RawGetString(name); fn != lua.LNil {
				L.Push(fn)
				L.Push(lua.LString(":preload:"))
				return 2
			}
		}
	}
	L.Push(lua.LString("no field package.preload['" + name + "']"))
	return 1
}

// searchPath returns the first readable file of p ("?" replaced by name
// with dots as separators), or the "no file" lines of every candidate.
func searchPath(name, p string) (string, []string) {
	rel := strings.ReplaceAll(name, ".", string(filepath.Separator))
	var tried []string
	for _, tmpl := range strings.Split(p, ";") {
		if tmpl == "" {
			continue
		}
		cand := strings.ReplaceAll(tmpl, "?", rel)
		if f, err := os.Open(cand); err == nil {
			f.Close()
			return cand, nil
		}
		tried = append(tried, "no file '"+cand+"'")
	}
	return "", tried
}

// pkgSearchPath is package.searchpath(name, path): the file name, or nil
// and the list of files tried.
func pkgSearchPath(L *lua.LState) int {
	found, tried := searchPath(L.CheckString(1), L.CheckString(2))
	if found != "" {
		L.Push(lua.LString(found))
		return 1
	}
	L.Push(lua.LNil)
	L.Push(lua.LString("\n\t" + strings.Join(tried, "\n\t")))
	return 2
}

// searchLuaPath is the searcher for Lua files along package.path.
func (st *state) searchLuaPath(L *lua.LState) int {
	name := L.CheckString(1)
	p := ""
	if pkg, ok := L.GetGlobal("package").(*lua.LTable); ok {
		if s, ok := pkg.RawGetString("path").(lua.LString); ok {
			p = string(s)
		} else {
			L.RaiseError("'package.path' must be a string")
		}
	}
	found, tried := st.rt.searchModule(name, p)
	if found == "" {
		L.Push(lua.LString(tried))
		return 1
	}
	proto, err := st.rt.compileModule("file:"+found, found, func() ([]byte, error) { return os.ReadFile(found) })
	if err != nil {
		L.RaiseError("error loading module '%s' from file '%s':\n\t%s", name, found, err.Error())
	}
	L.Push(L.NewFunctionFromProto(proto))
	L.Push(lua.LString(found))
	return 2
}

// searchBundled is the searcher for kumogo's bundled modules, after
// package.path.
func (st *state) searchBundled(L *lua.LState) int {
	name := L.CheckString(1)
	fsys := st.rt.opts.Modules
	if fsys == nil {
		L.Push(lua.LString("no bundled module '" + name + "'"))
		return 1
	}
	rel := strings.ReplaceAll(name, ".", "/")
	var tried []string
	for _, p := range []string{rel + ".lua", path.Join(rel, "init.lua")} {
		if !fs.ValidPath(p) {
			continue
		}
		proto, err := st.rt.compileModule("fs:"+p, "kumogo:"+p, func() ([]byte, error) { return fs.ReadFile(fsys, p) })
		if err == nil {
			L.Push(L.NewFunctionFromProto(proto))
			L.Push(lua.LString("kumogo:" + p))
			return 2
		}
		if !errors.Is(err, fs.ErrNotExist) {
			L.RaiseError("error loading module '%s' from kumogo:%s:\n\t%s", name, p, err.Error())
		}
		tried = append(tried, "no bundled module 'kumogo:"+p+"'")
	}
	L.Push(lua.LString(strings.Join(tried, "\n\t")))
	return 1
}

// searchModule is searchPath for require: the file found for name along
// p, or "" and the files tried (one per line, tab-indented). The answer is
// kept until the configuration epoch changes, as the compiled modules are
// (compileModule): every new Lua state requires the same modules, and
// without it each would try every directory of package.path again with an
// open(2) per candidate (a policy using the policy-extras helpers tries
// about fifty missing files per state).
func (r *Runtime) searchModule(name, p string) (found, tried string) {
	key := name + "\x00" + p
	r.modMu.Lock()
	res, ok := r.searchCache[key]
	r.modMu.Unlock()
	if ok {
		return res.found, res.tried
	}
	f, t := searchPath(name, p)
	res = moduleSearch{found: f, tried: strings.Join(t, "\n\t")}
	r.modMu.Lock()
	if r.searchCache == nil {
		r.searchCache = make(map[string]moduleSearch)
	}
	r.searchCache[key] = res
	r.modMu.Unlock()
	return res.found, res.tried
}

type moduleSearch struct{ found, tried string }

// compileModule returns the compiled module for key, compiling it from
// read() on first use. Compiled modules are shared by all states until
// the configuration epoch changes (forgetModules).
func (r *Runtime) compileModule(key, name string, read func() ([]byte, error)) (*lua.FunctionProto, error) {
	r.modMu.Lock()
	proto, ok := r.modCache[key]
	r.modMu.Unlock()
	if ok {
		return proto, nil
	}
	src, err := read()
	if err != nil {
		return nil, err
	}
	proto, err = compileChunk(src, name)
	if err != nil {
		return nil, fmt.Errorf("%w", err)
	}
	r.modMu.Lock()
	r.modCache[key] = proto
	r.modMu.Unlock()
	return proto, nil
}
