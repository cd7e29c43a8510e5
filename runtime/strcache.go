package runtime

import (
	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/message"
)

// strCache holds, per state, the Lua strings that the policy-extras
// builtins hand to Lua for every message (a tenant or campaign header, a
// recipient or From domain). Handing a Go string to Lua boxes it, one
// allocation each time; the same few values come back message after
// message, so each is boxed once per state. The maps stop growing at
// maxCachedStrings entries (a state is rebuilt after max_use events anyway).
type strCache struct {
	str        map[string]lua.LValue // a Go string as a Lua string (lstring)
	header     map[string]lua.LValue // a raw header value, decoded (headerLString)
	fromDomain map[string]lua.LValue // a raw From value: its domain, or nil (extrasFromDomain)
}

const (
	maxCachedStrings = 256
	maxCachedLen     = 256
)

// cacheLValue adds k to m unless m is full or k too long.
func cacheLValue(m map[string]lua.LValue, k string, v lua.LValue) map[string]lua.LValue {
	if len(k) > maxCachedLen || len(m) >= maxCachedStrings {
		return m
	}
	if m == nil {
		m = make(map[string]lua.LValue, 8)
	}
	m[k] = v
	return m
}

// lstring is s as a Lua value.
func (st *state) lstring(s string) lua.LValue {
	if v, ok := st.strs.str[s]; ok {
		return v
	}
	var v lua.LValue = lua.LString(s)
	st.strs.str = cacheLValue(st.strs.str, s, v)
	return v
}

// headerLString is m.FirstHeader(name) as a Lua string: the raw value is
// looked up without being copied, and decoded (unfolded, RFC 2047) only
// the first time it is seen.
func (st *state) headerLString(m *message.Message, name string) (lua.LValue, bool) {
	raw, ok := m.FirstHeaderRaw(name)
	if !ok {
		return lua.LNil, false
	}
	return st.headerValue(raw), true
}

// headerValue is a raw header value (message.FirstHeaderRaw) decoded, as
// a Lua string cached per state.
func (st *state) headerValue(raw []byte) lua.LValue {
	if v, ok := st.strs.header[string(raw)]; ok {
		return v
	}
	var v lua.LValue = lua.LString(message.DecodeHeaderValue(raw))
	st.strs.header = cacheLValue(st.strs.header, string(raw), v)
	return v
}
