package runtime

import (
	lua "github.com/yuin/gopher-lua"
)

// headerMethods are the msg:* header accessors, backed by the header
// helpers of internal/message.
func (st *state) headerMethods() map[string]lua.LGFunction {
	return map[string]lua.LGFunction{
		"prepend_header": func(L *lua.LState) int {
			m := st.checkMessage(L)
			m.PrependHeaderEncoded(L.CheckString(2), L.CheckString(3), L.OptBool(4, false))
			return 0
		},
		"append_header": func(L *lua.LState) int {
			m := st.checkMessage(L)
			m.AppendHeader(L.CheckString(2), L.CheckString(3), L.OptBool(4, false))
			return 0
		},
		"get_first_named_header_value": func(L *lua.LState) int {
			m := st.checkMessage(L)
			if v, ok := m.FirstHeader(L.CheckString(2)); ok {
				L.Push(lua.LString(v))
			} else {
				L.Push(lua.LNil)
			}
			return 1
		},
		"get_all_named_header_values": func(L *lua.LState) int {
			m := st.checkMessage(L)
			vals := m.AllHeaderValues(L.CheckString(2))
			t := L.CreateTable(len(vals), 0)
			for i, v := range vals {
				t.RawSetInt(i+1, lua.LString(v))
			}
			L.Push(t)
			return 1
		},
		"get_all_headers": func(L *lua.LState) int {
			m := st.checkMessage(L)
			hs := m.Headers()
			t := L.CreateTable(len(hs), 0)
			for i, h := range hs {
				pair := L.CreateTable(2, 0)
				pair.RawSetInt(1, lua.LString(h.Name))
				pair.RawSetInt(2, lua.LString(h.Value))
				t.RawSetInt(i+1, pair)
			}
			L.Push(t)
			return 1
		},
		"remove_all_named_headers": func(L *lua.LState) int {
			m := st.checkMessage(L)
			m.RemoveAllNamedHeaders(L.CheckString(2))
			return 0
		},
		"import_x_headers": func(L *lua.LState) int {
			m := st.checkMessage(L)
			m.ImportXHeaders(stringList(L, 2))
			return 0
		},
		"remove_x_headers": func(L *lua.LState) int {
			m := st.checkMessage(L)
			m.RemoveXHeaders(stringList(L, 2))
			return 0
		},
	}
}
