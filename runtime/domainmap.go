package runtime

import (
	"sort"
	"strings"
	"sync"

	lua "github.com/yuin/gopher-lua"
)

// luaObject is a Go value that has its own Lua representation, so that it
// survives a round trip through Go values (toGo, then fromGo in another
// state, as a process-wide cache does).
type luaObject interface {
	toLua(st *state) lua.LValue
}

// domainMap is kumo.domain_map (KumoMTA's kumo.domain_map/new page): a
// dictionary keyed by domain name where "*.example.com" matches every
// name below example.com (but not example.com itself), an exact entry wins
// over a wildcard and the closest wildcard wins over broader ones. Names
// are compared case-insensitively, without a trailing dot. Values are
// stored as Go values, so a map may be shared between Lua states.
type domainMap struct {
	mu    sync.RWMutex
	exact map[string]any
	wild  map[string]any // "*.example.com" is stored as "example.com"
}

func newDomainMap() *domainMap {
	return &domainMap{exact: map[string]any{}, wild: map[string]any{}}
}

func normDomain(s string) string {
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

// set stores v under key (nil deletes).
func (m *domainMap) set(key string, v any) {
	key = normDomain(key)
	target := m.exact
	if rest, ok := strings.CutPrefix(key, "*."); ok {
		key, target = rest, m.wild
	}
	m.mu.Lock()
	if v == nil {
		delete(target, key)
	} else {
		target[key] = v
	}
	m.mu.Unlock()
}

// get resolves name: the exact entry, else the closest wildcard.
func (m *domainMap) get(name string) (any, bool) {
	name = normDomain(name)
	m.mu.RLock()
	defer m.mu.RUnlock()
	if v, ok := m.exact[name]; ok {
		return v, true
	}
	if len(m.wild) == 0 {
		return nil, false
	}
	for rest := name; ; {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			return nil, false
		}
		rest = rest[i+1:]
		if v, ok := m.wild[rest]; ok {
			return v, true
		}
	}
}

// keys lists the entries as written (wildcards with their "*." prefix),
// sorted.
func (m *domainMap) keys() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.exact)+len(m.wild))
	for k := range m.exact {
		out = append(out, k)
	}
	for k := range m.wild {
		out = append(out, "*."+k)
	}
	sort.Strings(out)
	return out
}

func (m *domainMap) toLua(st *state) lua.LValue {
	return &lua.LUserData{Value: m, Metatable: st.domainMapMT()}
}

// openDomainMap builds the kumo.domain_map module.
func (st *state) openDomainMap() *lua.LTable {
	t := st.L.NewTable()
	t.RawSetString("new", st.L.NewFunction(st.domainMapNew))
	return t
}

// domainMapNew is kumo.domain_map.new([table]).
func (st *state) domainMapNew(L *lua.LState) int {
	m := newDomainMap()
	if L.GetTop() >= 1 && L.Get(1) != lua.LNil {
		seed := L.CheckTable(1)
		var err error
		seed.ForEach(func(k, v lua.LValue) {
			if err != nil {
				return
			}
			ks, ok := k.(lua.LString)
			if !ok {
				L.ArgError(1, "domain map keys must be strings, got a "+k.Type().String())
			}
			var gv any
			gv, err = st.toGo(v)
			m.set(string(ks), gv)
		})
		if err != nil {
			L.RaiseError("kumo.domain_map.new: %s", err.Error())
		}
	}
	L.Push(m.toLua(st))
	return 1
}

// domainMapMT returns the metatable of domain map userdata.
func (st *state) domainMapMT() *lua.LTable {
	L := st.L
	mt := L.NewTypeMetatable("kumo.domain_map")
	if mt.RawGetString("__index") != lua.LNil {
		return mt
	}
	check := func(L *lua.LState) *domainMap { return checkSelf[*domainMap](L, "domain map expected") }
	mt.RawSetString("__name", lua.LString("DomainMap"))
	mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		m := check(L)
		v, ok := m.get(L.CheckString(2))
		if !ok {
			L.Push(lua.LNil)
			return 1
		}
		L.Push(st.fromGo(v))
		return 1
	}))
	mt.RawSetString("__newindex", L.NewFunction(func(L *lua.LState) int {
		m := check(L)
		key := L.CheckString(2)
		v, err := st.toGo(L.Get(3))
		if err != nil {
			L.RaiseError("domain map: %s", err.Error())
		}
		m.set(key, v)
		return 0
	}))
	mt.RawSetString("__len", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LNumber(len(check(L).keys())))
		return 1
	}))
	mt.RawSetString("__pairs", L.NewFunction(func(L *lua.LState) int {
		m := check(L)
		keys := m.keys()
		i := 0
		L.Push(L.NewFunction(func(L *lua.LState) int {
			for i < len(keys) {
				k := keys[i]
				i++
				m.mu.RLock()
				v, ok := m.exact[k]
				if rest, wild := strings.CutPrefix(k, "*."); wild {
					v, ok = m.wild[rest]
				}
				m.mu.RUnlock()
				if ok {
					L.Push(lua.LString(k))
					L.Push(st.fromGo(v))
					return 2
				}
			}
			return 0
		}))
		return 1
	}))
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString("DomainMap(" + strings.Join(check(L).keys(), ", ") + ")"))
		return 1
	}))
	return mt
}
