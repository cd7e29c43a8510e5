package runtime

import (
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// TestHeaderLString: the cached header values are FirstHeader's, decoded
// (folded and RFC 2047 values included), on the first and later lookups,
// and a missing header is reported as missing.
func TestHeaderLString(t *testing.T) {
	r := newRuntime(t, sinkPolicy)
	st, err := r.newState()
	if err != nil {
		t.Fatal(err)
	}
	defer st.L.Close()
	m := testMessage(t, "X-A: plain\r\nX-B: =?utf-8?q?J=C3=B6rg?=\r\nX-C: one\r\n two\r\n\r\nbody\r\n", "r@example.com")
	for round := 0; round < 2; round++ {
		for _, name := range []string{"X-A", "x-b", "X-C"} {
			want, _ := m.FirstHeader(name)
			got, ok := st.headerLString(m, name)
			if !ok || got != lua.LString(want) {
				t.Errorf("round %d %s: %v %v, want %q", round, name, got, ok, want)
			}
		}
		if v, ok := st.headerLString(m, "X-Missing"); ok || v != lua.LNil {
			t.Errorf("missing header: %v %v", v, ok)
		}
	}
	if st.lstring("d.example") != lua.LString("d.example") || st.lstring("d.example") != st.strs.str["d.example"] {
		t.Error("lstring")
	}
}
