package runtime

import (
	"fmt"
	"net/mail"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/message"
)

// headerMethods are the msg:* header accessors, backed by the header
// helpers of internal/message.
func (st *state) headerMethods() map[string]lua.LGFunction {
	return map[string]lua.LGFunction{
		"get_address_header": func(L *lua.LState) int {
			L.Push(st.addressHeader(L, L.CheckString(2)))
			return 1
		},
		"from_header": func(L *lua.LState) int {
			L.Push(st.addressHeader(L, "From"))
			return 1
		},
		"to_header": func(L *lua.LState) int {
			L.Push(st.addressHeader(L, "To"))
			return 1
		},
		// check_fix_conformance(checks, fixes [, settings]) returns nil, or
		// "Message has conformance issues: ..." naming the issues among
		// checks that remain after fixing those in fixes.
		"check_fix_conformance": func(L *lua.LState) int {
			m := st.checkMessage(L)
			checks, err := message.ParseConformance(L.CheckString(2))
			if err != nil {
				L.ArgError(2, err.Error())
			}
			fixes, err := message.ParseConformance(L.OptString(3, ""))
			if err != nil {
				L.ArgError(3, err.Error())
			}
			if fixes != 0 {
				m.FixConformance(fixes, time.Now(), st.rt.hostname)
			}
			if issues := m.CheckConformance() & checks; issues != 0 {
				L.Push(lua.LString("Message has conformance issues: " + issues.String()))
			} else {
				L.Push(lua.LNil)
			}
			return 1
		},
		"prepend_header": func(L *lua.LState) int {
			m := st.checkMessage(L)
			holdValue(L, L.CheckString(2), L.Get(3), nil, false)
			m.PrependHeaderEncoded(L.CheckString(2), L.CheckString(3), L.OptBool(4, false))
			return 0
		},
		"append_header": func(L *lua.LState) int {
			m := st.checkMessage(L)
			holdValue(L, L.CheckString(2), L.Get(3), nil, false)
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
		// import_headers{ 'X-Name' | {name=, match=, transform=, target=, remove=}, ... }
		"import_headers": func(L *lua.LState) int {
			m := st.checkMessage(L)
			t := L.CheckTable(2)
			var specs []message.HeaderImport
			var bad error
			t.ForEach(func(_, v lua.LValue) {
				switch x := v.(type) {
				case lua.LString:
					specs = append(specs, message.HeaderImport{Name: string(x)})
				case *lua.LTable:
					sp := message.HeaderImport{
						Name:      lua.LVAsString(x.RawGetString("name")),
						Match:     lua.LVAsString(x.RawGetString("match")),
						Transform: lua.LVAsString(x.RawGetString("transform")),
						Target:    lua.LVAsString(x.RawGetString("target")),
						Remove:    lua.LVAsBool(x.RawGetString("remove")),
					}
					if sp.Name == "" && bad == nil {
						bad = fmt.Errorf("import_headers: an entry has no name")
					}
					specs = append(specs, sp)
				default:
					if bad == nil {
						bad = fmt.Errorf("import_headers: entries are header names or tables, not %s", v.Type())
					}
				}
			})
			if bad == nil {
				bad = m.ImportHeaders(specs)
			}
			if bad != nil {
				L.RaiseError("%s", bad.Error())
			}
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

// addressHeader parses the first header called name of the message as an
// address list. It returns nil when the header is missing or is not an
// address list, else a table for the first mailbox (name, email, user,
// domain) whose list field holds every mailbox of the header.
func (st *state) addressHeader(L *lua.LState, name string) lua.LValue {
	v, ok := st.checkMessage(L).FirstHeader(name)
	if !ok {
		return lua.LNil
	}
	addrs, err := mail.ParseAddressList(v)
	if err != nil || len(addrs) == 0 {
		return lua.LNil
	}
	list := L.CreateTable(len(addrs), 0)
	for i, a := range addrs {
		t := L.CreateTable(0, 4)
		if a.Name != "" {
			t.RawSetString("name", lua.LString(a.Name))
		}
		t.RawSetString("email", lua.LString(a.Address))
		user, domain := a.Address, ""
		if at := strings.LastIndexByte(a.Address, '@'); at >= 0 {
			user, domain = a.Address[:at], a.Address[at+1:]
		}
		t.RawSetString("user", lua.LString(user))
		t.RawSetString("domain", lua.LString(domain))
		list.RawSetInt(i+1, t)
	}
	first := list.RawGetInt(1).(*lua.LTable)
	first.RawSetString("list", list)
	return first
}
