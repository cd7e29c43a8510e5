package runtime

import (
	"github.com/google/uuid"
	lua "github.com/yuin/gopher-lua"
)

// openUUID builds kumo.uuid (KumoMTA's kumo.uuid pages): new_v1, new_v4,
// new_v6, new_v7 and parse return a Uuid object with the fields bytes,
// hyphenated, simple, braced and urn; tostring gives the hyphenated form.
func (st *state) openUUID() *lua.LTable {
	L := st.L
	t := L.NewTable()
	for name, gen := range map[string]func() (uuid.UUID, error){
		"new_v1": uuid.NewUUID, "new_v4": uuid.NewRandom, "new_v6": uuid.NewV6, "new_v7": uuid.NewV7,
	} {
		t.RawSetString(name, L.NewFunction(func(L *lua.LState) int {
			u, err := gen()
			if err != nil {
				L.RaiseError("kumo.uuid.%s: %s", name, err.Error())
			}
			L.Push(st.uuidObject(u))
			return 1
		}))
	}
	t.RawSetString("parse", L.NewFunction(func(L *lua.LState) int {
		u, err := uuid.Parse(L.CheckString(1))
		if err != nil {
			L.RaiseError("kumo.uuid.parse: %s", err.Error())
		}
		L.Push(st.uuidObject(u))
		return 1
	}))
	return t
}

func (st *state) uuidObject(u uuid.UUID) *lua.LTable {
	L := st.L
	s := u.String()
	t := L.CreateTable(0, 5)
	t.RawSetString("bytes", lua.LString(u[:]))
	t.RawSetString("hyphenated", lua.LString(s))
	simple := make([]byte, 0, 32)
	for i := 0; i < len(s); i++ {
		if s[i] != '-' {
			simple = append(simple, s[i])
		}
	}
	t.RawSetString("simple", lua.LString(simple))
	t.RawSetString("braced", lua.LString("{"+s+"}"))
	t.RawSetString("urn", lua.LString(u.URN()))
	mt := L.CreateTable(0, 1)
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(s))
		return 1
	}))
	L.SetMetatable(t, mt)
	return t
}
