package runtime

import (
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

const staleHandle = "%s object is no longer valid: it was kept beyond the event that received it"

// registerTypes creates the metatables of the userdata types, once per
// state.
func (st *state) registerTypes() {
	L := st.L

	st.msgMT = L.NewTable()
	msgMethods := L.NewTable()
	L.SetFuncs(msgMethods, st.messageMethods())
	st.msgMT.RawSetString("__index", msgMethods)
	st.msgMT.RawSetString("__name", lua.LString("Message"))
	// Protected, as mlua protects KumoMTA's userdata metatables:
	// getmetatable(msg) is false, so the methods cannot be replaced (the
	// userdata reuse in escape.go relies on it).
	st.msgMT.RawSetString("__metatable", lua.LFalse)
	st.msgMT.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		ud := L.CheckUserData(1)
		if m, ok := ud.Value.(*message.Message); ok {
			L.Push(lua.LString("Message(" + m.ID() + ")"))
		} else {
			L.Push(lua.LString("Message(stale)"))
		}
		return 1
	}))

	st.connMT = L.NewTable()
	connMethods := L.NewTable()
	L.SetFuncs(connMethods, st.connMethods())
	st.connMT.RawSetString("__index", connMethods)
	st.connMT.RawSetString("__name", lua.LString("ConnectionMeta"))
	st.connMT.RawSetString("__metatable", lua.LFalse)

	// the userdata handed to handlers that never keep them (escape.go)
	st.msgUD = &lua.LUserData{Metatable: st.msgMT}
	st.connUD = &lua.LUserData{Metatable: st.connMT}

	st.addrMT = L.NewTable()
	st.addrMT.RawSetString("__index", L.NewFunction(st.addrIndex))
	st.addrMT.RawSetString("__tostring", L.NewFunction(st.addrToString))
	st.addrMT.RawSetString("__eq", L.NewFunction(st.addrEq))
	st.addrMT.RawSetString("__name", lua.LString("EnvelopeAddress"))

	st.rejMT = L.NewTable()
	st.rejMT.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		ud := L.CheckUserData(1)
		if r, ok := ud.Value.(*smtpreply.Rejection); ok {
			L.Push(lua.LString(r.Error()))
			return 1
		}
		L.Push(lua.LString("rejection"))
		return 1
	}))

	st.registerTimeDelta()

	st.cfgMT = L.NewTable()
	st.cfgMT.RawSetString("__index", L.NewFunction(st.cfgIndex))
	st.cfgMT.RawSetString("__pairs", L.NewFunction(st.cfgPairs))
	st.cfgMT.RawSetString("__len", L.NewFunction(st.cfgLen))
	st.cfgMT.RawSetString("__tostring", L.NewFunction(st.cfgToString))
	st.cfgMT.RawSetString("__name", lua.LString("ConfigObject"))
}

// typeName names a userdata for error messages.
func typeName(ud *lua.LUserData) string {
	if mt, ok := ud.Metatable.(*lua.LTable); ok {
		if n, ok := mt.RawGetString("__name").(lua.LString); ok {
			return string(n)
		}
	}
	return "userdata"
}

// newMessage wraps m for one event; the handle is invalidated when the
// event ends.
func (st *state) newMessage(m *message.Message) *lua.LUserData {
	ud := &lua.LUserData{Value: m, Metatable: st.msgMT}
	st.live = append(st.live, ud)
	return ud
}

// newConnMeta wraps c for one event.
func (st *state) newConnMeta(c *message.ConnMeta) *lua.LUserData {
	ud := &lua.LUserData{Value: c, Metatable: st.connMT}
	st.live = append(st.live, ud)
	return ud
}

// newAddress returns an EnvelopeAddress userdata (a value; never stale).
func (st *state) newAddress(a message.Address) *lua.LUserData {
	p := new(message.Address)
	*p = a
	return &lua.LUserData{Value: p, Metatable: st.addrMT}
}

// newConfigObject wraps a decoded configuration object.
func (st *state) newConfigObject(v any) *lua.LUserData {
	return &lua.LUserData{Value: v, Metatable: st.cfgMT}
}

func (st *state) checkMessage(L *lua.LState) *message.Message {
	ud, ok := L.Get(1).(*lua.LUserData)
	if !ok || ud.Metatable != st.msgMT {
		L.ArgError(1, "message expected (use msg:method())")
	}
	m, ok := ud.Value.(*message.Message)
	if !ok {
		L.RaiseError(staleHandle, "message")
	}
	return m
}

func (st *state) checkConnMeta(L *lua.LState) *message.ConnMeta {
	ud, ok := L.Get(1).(*lua.LUserData)
	if !ok || ud.Metatable != st.connMT {
		L.ArgError(1, "connection metadata expected (use conn_meta:method())")
	}
	c, ok := ud.Value.(*message.ConnMeta)
	if !ok {
		L.RaiseError(staleHandle, "connection metadata")
	}
	return c
}

// toAddress reads argument n as an EnvelopeAddress userdata or a string
// to parse.
func (st *state) toAddress(L *lua.LState, n int) message.Address {
	return st.valueToAddress(L, L.Get(n), n)
}

func (st *state) valueToAddress(L *lua.LState, v lua.LValue, argn int) message.Address {
	switch x := v.(type) {
	case *lua.LUserData:
		if a, ok := x.Value.(*message.Address); ok && x.Metatable == st.addrMT {
			return *a
		}
	case lua.LString:
		a, err := message.ParseAddress(string(x))
		if err != nil {
			L.RaiseError("invalid address %q: %s", string(x), err.Error())
		}
		return a
	}
	L.ArgError(argn, "EnvelopeAddress or string expected, got "+v.Type().String())
	return message.Address{}
}

// addressList reads an address, string or array of either.
func (st *state) addressList(L *lua.LState, n int) []message.Address {
	v := L.Get(n)
	if t, ok := v.(*lua.LTable); ok {
		out := make([]message.Address, 0, t.Len())
		for i := 1; i <= t.Len(); i++ {
			out = append(out, st.valueToAddress(L, t.RawGetInt(i), n))
		}
		return out
	}
	return []message.Address{st.valueToAddress(L, v, n)}
}

func (st *state) addressArray(addrs []message.Address) *lua.LTable {
	t := st.L.CreateTable(len(addrs), 0)
	for i, a := range addrs {
		t.RawSetInt(i+1, st.newAddress(a))
	}
	return t
}

// addrIndex serves addr.user, addr.domain and addr.email.
func (st *state) addrIndex(L *lua.LState) int {
	ud := L.CheckUserData(1)
	a, ok := ud.Value.(*message.Address)
	if !ok {
		L.ArgError(1, "EnvelopeAddress expected")
	}
	switch L.CheckString(2) {
	case "user":
		L.Push(lua.LString(a.User))
	case "domain":
		L.Push(lua.LString(a.Domain))
	case "email":
		L.Push(lua.LString(a.String()))
	default:
		L.Push(lua.LNil)
	}
	return 1
}

func (st *state) addrToString(L *lua.LState) int {
	ud := L.CheckUserData(1)
	if a, ok := ud.Value.(*message.Address); ok {
		L.Push(lua.LString(a.String()))
		return 1
	}
	L.Push(lua.LString(""))
	return 1
}

// checkSelf returns the Go value of the userdata a method is called on
// (argument 1), raising "what" as an argument error when it is missing or
// of another type.
func checkSelf[T any](L *lua.LState, what string) T {
	v, ok := L.CheckUserData(1).Value.(T)
	if !ok {
		L.ArgError(1, what)
	}
	return v
}

func (st *state) addrEq(L *lua.LState) int {
	a, ok1 := L.CheckUserData(1).Value.(*message.Address)
	b, ok2 := L.CheckUserData(2).Value.(*message.Address)
	L.Push(lua.LBool(ok1 && ok2 && *a == *b))
	return 1
}

// messageMethods are the msg:* methods (KumoMTA docs: "Message Object";
// docs/compat.md lists each with kumogo's status).
func (st *state) messageMethods() map[string]lua.LGFunction {
	m := map[string]lua.LGFunction{
		"id": func(L *lua.LState) int {
			L.Push(lua.LString(st.checkMessage(L).ID()))
			return 1
		},
		"sender": func(L *lua.LState) int {
			L.Push(st.newAddress(st.checkMessage(L).Sender()))
			return 1
		},
		"set_sender": func(L *lua.LState) int {
			m := st.checkMessage(L)
			m.SetSender(st.toAddress(L, 2))
			return 0
		},
		"recipient": func(L *lua.LState) int {
			rs := st.checkMessage(L).Recipients()
			switch len(rs) {
			case 0:
				L.Push(lua.LNil)
			case 1:
				L.Push(st.newAddress(rs[0]))
			default:
				L.Push(st.addressArray(rs))
			}
			return 1
		},
		"recipient_list": func(L *lua.LState) int {
			L.Push(st.addressArray(st.checkMessage(L).Recipients()))
			return 1
		},
		"set_recipient": func(L *lua.LState) int {
			m := st.checkMessage(L)
			m.SetRecipients(st.addressList(L, 2))
			return 0
		},
		"get_meta": func(L *lua.LState) int {
			m := st.checkMessage(L)
			v, _ := m.Meta(L.CheckString(2))
			L.Push(st.fromGo(v))
			return 1
		},
		"set_meta": func(L *lua.LState) int {
			m := st.checkMessage(L)
			key := L.CheckString(2)
			v := L.Get(3)
			old, had := m.Meta(key)
			holdValue(L, key, v, old, had)
			// fast paths for the common scalar cases
			switch x := v.(type) {
			case lua.LString:
				m.SetMeta(key, st.boxString(string(x)))
				return 0
			case lua.LBool:
				m.SetMeta(key, bool(x))
				return 0
			}
			gv, err := st.toGo(v)
			if err != nil {
				L.RaiseError("set_meta %q: %s", key, err.Error())
			}
			m.SetMeta(key, gv)
			return 0
		},
		"get_data": func(L *lua.LState) int {
			data := st.checkMessage(L).Data()
			L.ChargeMemory(len(data)) // a copy per call (limits.go)
			L.Push(lua.LString(data))
			return 1
		},
		"set_data": func(L *lua.LState) int {
			m := st.checkMessage(L)
			data := L.CheckString(2)
			if grow := len(data) - len(m.Data()); grow > 0 {
				L.HoldMemory(grow) // the host's copy (limits.go)
			}
			m.SetData([]byte(data))
			return 0
		},
		"dkim_sign": st.dkimSign,
		"queue_name": func(L *lua.LState) int {
			L.Push(lua.LString(st.checkMessage(L).QueueName()))
			return 1
		},
		"set_force_sync": func(L *lua.LState) int {
			st.checkMessage(L)
			return 0
		},
	}
	for k, v := range st.headerMethods() {
		m[k] = v
	}
	for k, v := range st.schedulingMethods() {
		m[k] = v
	}
	for k, v := range st.authMethods() {
		m[k] = v
	}
	for k, v := range st.reportMethods() {
		m[k] = v
	}
	return m
}

// Boxed strings are cached per state up to these sizes (boxString).
const (
	maxBoxedStrings = 256
	maxBoxedLen     = 64
)

// boxString returns s as an interface value for meta maps. Storing a
// string in an interface allocates its header; the short values a policy
// sets again and again (queue names, tenants, campaigns) are boxed once per
// state instead. Strings are immutable, so one boxed value can be shared
// by every message.
func (st *state) boxString(s string) any {
	if v, ok := st.boxed[s]; ok {
		return v
	}
	var v any = s
	if len(s) <= maxBoxedLen && len(st.boxed) < maxBoxedStrings {
		if st.boxed == nil {
			st.boxed = make(map[string]any, 16)
		}
		st.boxed[s] = v
	}
	return v
}

// connMethods are the conn_meta:* methods.
func (st *state) connMethods() map[string]lua.LGFunction {
	return map[string]lua.LGFunction{
		"get_meta":  st.connGetMeta,
		"set_meta":  st.connSetMeta,
		"auth_info": st.connAuthInfo,
	}
}

func (st *state) connGetMeta(L *lua.LState) int {
	c := st.checkConnMeta(L)
	v, _ := c.Get(L.CheckString(2))
	L.Push(st.fromGo(v))
	return 1
}

func (st *state) connSetMeta(L *lua.LState) int {
	c := st.checkConnMeta(L)
	key := L.CheckString(2)
	old, had := c.Get(key)
	holdValue(L, key, L.Get(3), old, had)
	v, err := st.toGo(L.Get(3))
	if err != nil {
		L.RaiseError("set_meta %q: %s", key, err.Error())
	}
	c.Set(key, v)
	return 0
}

// connAuthInfo returns the AuthInfo of an authenticated session, built
// from the authn_id/authz_id connection meta, or nil.
func (st *state) connAuthInfo(L *lua.LState) int {
	c := st.checkConnMeta(L)
	authn := c.GetString("authn_id")
	if authn == "" {
		L.Push(lua.LNil)
		return 1
	}
	info := L.CreateTable(0, 2)
	ids := L.CreateTable(2, 0)
	id := L.CreateTable(0, 2)
	id.RawSetString("identity", lua.LString(authn))
	id.RawSetString("context", lua.LString("SmtpAuthPlainAuthentication"))
	ids.RawSetInt(1, id)
	if authz := c.GetString("authz_id"); authz != "" && authz != authn {
		z := L.CreateTable(0, 2)
		z.RawSetString("identity", lua.LString(authz))
		z.RawSetString("context", lua.LString("SmtpAuthPlainAuthorization"))
		ids.RawSetInt(2, z)
	}
	info.RawSetString("identities", ids)
	info.RawSetString("groups", L.CreateTable(0, 0))
	L.Push(info)
	return 1
}

// stringList reads an optional array of strings argument (nil → nil).
func stringList(L *lua.LState, n int) []string {
	v := L.Get(n)
	if v == lua.LNil {
		return nil
	}
	t, ok := v.(*lua.LTable)
	if !ok {
		if s, ok := v.(lua.LString); ok {
			return []string{string(s)}
		}
		L.ArgError(n, "array of strings expected")
	}
	out := make([]string, 0, t.Len())
	for i := 1; i <= t.Len(); i++ {
		s, ok := t.RawGetInt(i).(lua.LString)
		if !ok {
			L.ArgError(n, "array of strings expected")
		}
		out = append(out, strings.Clone(string(s)))
	}
	return out
}
