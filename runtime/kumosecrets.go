package runtime

import lua "github.com/yuin/gopher-lua"

// openSecrets builds kumo.secrets: load(KEYSOURCE) returns the secret's
// bytes from a file path, {key_data=...} or a vault table (KumoMTA's
// kumo.secrets.load page; vault is not served by kumogo yet).
func (st *state) openSecrets() *lua.LTable {
	L := st.L
	t := L.NewTable()
	t.RawSetString("load", L.NewFunction(func(L *lua.LState) int {
		ks := st.keySourceArg(L, 1, "kumo.secrets.load")
		b, err := ks.Read()
		if err != nil {
			L.RaiseError("kumo.secrets.load: %s", err.Error())
		}
		L.Push(lua.LString(b))
		return 1
	}))
	return t
}
