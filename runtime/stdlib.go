package runtime

import (
	"os"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// luaLoad is Lua 5.4's load(chunk [, chunkname [, mode [, env]]]): chunk
// is a string or a function returning pieces; mode "b" (binary only) is
// refused since this VM has no binary chunks; env replaces the chunk's
// environment.
func luaLoad(L *lua.LState) int {
	var src string
	chunkname := "=(load)"
	switch c := L.CheckAny(1).(type) {
	case lua.LString:
		src = string(c)
		chunkname = string(c)
	case *lua.LFunction:
		var b strings.Builder
		for {
			L.Push(c)
			L.Call(0, 1)
			piece := L.Get(-1)
			L.Pop(1)
			if piece == lua.LNil {
				break
			}
			s, ok := piece.(lua.LString)
			if !ok {
				L.Push(lua.LNil)
				L.Push(lua.LString("reader function must return a string"))
				return 2
			}
			if s == "" {
				break
			}
			b.WriteString(string(s))
		}
		src = b.String()
	default:
		L.ArgError(1, "string or function expected")
	}
	if L.GetTop() >= 2 && L.Get(2) != lua.LNil {
		chunkname = L.CheckString(2)
	}
	if mode := L.OptString(3, "bt"); !strings.Contains(mode, "t") {
		L.Push(lua.LNil)
		L.Push(lua.LString("attempt to load a text chunk (mode is '" + mode + "')"))
		return 2
	}
	fn, err := L.Load(strings.NewReader(src), chunkname)
	if err != nil {
		L.Push(lua.LNil)
		L.Push(lua.LString(err.Error()))
		return 2
	}
	if L.GetTop() >= 4 {
		if env, ok := L.Get(4).(*lua.LTable); ok {
			fn.Env = env
		}
	}
	L.Push(fn)
	return 1
}

// osTmpname is os.tmpname(): it creates the file and returns its name,
// as C Lua's mkstemp-based implementation does, so that the name cannot
// be taken by another process before the policy uses it (KumoMTA's
// sink.lua passes it to kumo.configure_accounting_db_path).
func osTmpname(L *lua.LState) int {
	f, err := os.CreateTemp("", "lua_")
	if err != nil {
		L.RaiseError("unable to generate a unique filename: %s", err.Error())
	}
	f.Close()
	L.Push(lua.LString(f.Name()))
	return 1
}
