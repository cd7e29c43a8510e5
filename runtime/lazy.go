package runtime

import (
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// lazyModules are kumo sub-modules built on first use in each state
// (kumo.<name> or require 'kumo.<name>'), so that the many states a busy
// daemon creates do not pay for modules their policy never touches.
var lazyModules = map[string]func(*state) *lua.LTable{
	"aaa":     (*state).openAAA,
	"digest":  (*state).openDigest,
	"encode":  (*state).openEncode,
	"uuid":    (*state).openUUID,
	"secrets": (*state).openSecrets,
	"string":  (*state).openString,
	"regex":   (*state).openRegex,
	"time":    (*state).openTime,
	"http":    (*state).openHTTP,
	"nats":    (*state).openNATS,
	"kafka":   (*state).openKafka,
	"amqp":    (*state).openAMQP,
}

// installLazyModules registers package.preload entries for the lazy
// modules; kumo's __index (stubLookup) builds them.
func (st *state) installLazyModules(kumo *lua.LTable) {
	L := st.L
	st.kumo = kumo
	pkg, ok := L.GetGlobal("package").(*lua.LTable)
	if !ok {
		return
	}
	pre, ok := pkg.RawGetString("preload").(*lua.LTable)
	if !ok {
		return
	}
	load := L.NewFunction(func(L *lua.LState) int {
		name := strings.TrimPrefix(L.CheckString(1), "kumo.")
		L.Push(L.GetField(st.kumo, name))
		return 1
	})
	for name := range lazyModules {
		if kumo.RawGetString(name) == lua.LNil {
			pre.RawSetString("kumo."+name, load)
		}
	}
}

// openLazy builds kumo.<name> if it is a lazy module not built yet.
func (st *state) openLazy(t *lua.LTable, name string) (*lua.LTable, bool) {
	if t != st.kumo {
		return nil, false
	}
	open, ok := lazyModules[name]
	if !ok {
		return nil, false
	}
	L := st.L
	m := open(st)
	t.RawSetString(name, m)
	loaded := L.GetField(L.Get(lua.RegistryIndex), "_LOADED").(*lua.LTable)
	loaded.RawSetString("kumo."+name, m)
	if names, ok := apiSets()["kumo."+name]; ok && L.GetMetatable(m) == lua.LNil {
		st.stubs[m] = apiStub{"kumo." + name + ".", names}
		L.SetMetatable(m, L.GetMetatable(t))
	}
	return m, true
}
