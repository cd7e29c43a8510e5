package runtime

import (
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"strings"

	lua "github.com/yuin/gopher-lua"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"
)

type byteCodec interface {
	EncodeToString([]byte) string
	DecodeString(string) ([]byte, error)
}

type hexCodec struct{}

func (hexCodec) EncodeToString(b []byte) string { return hex.EncodeToString(b) }
func (hexCodec) DecodeString(s string) ([]byte, error) {
	return hex.DecodeString(s)
}

// openEncode builds kumo.encode (KumoMTA's kumo.encode pages).
func (st *state) openEncode() *lua.LTable {
	L := st.L
	t := L.NewTable()
	for name, c := range map[string]byteCodec{
		"base32":          base32.StdEncoding,
		"base32_nopad":    base32.StdEncoding.WithPadding(base32.NoPadding),
		"base32hex":       base32.HexEncoding,
		"base32hex_nopad": base32.HexEncoding.WithPadding(base32.NoPadding),
		"base64":          base64.StdEncoding,
		"base64_nopad":    base64.RawStdEncoding,
		"base64url":       base64.URLEncoding,
		"base64url_nopad": base64.RawURLEncoding,
		"hex":             hexCodec{},
	} {
		t.RawSetString(name+"_encode", L.NewFunction(func(L *lua.LState) int {
			L.Push(lua.LString(c.EncodeToString([]byte(L.CheckString(1)))))
			return 1
		}))
		t.RawSetString(name+"_decode", L.NewFunction(func(L *lua.LState) int {
			b, err := c.DecodeString(L.CheckString(1))
			if err != nil {
				L.RaiseError("kumo.encode.%s_decode: %s", name, err.Error())
			}
			L.Push(lua.LString(b))
			return 1
		}))
	}
	t.RawSetString("charset_encode", L.NewFunction(charsetFunc(true)))
	t.RawSetString("charset_decode", L.NewFunction(charsetFunc(false)))
	return t
}

// charsetFunc is charset_encode(CHARSET, UTF8, OPT_IGNORE_ERRORS) or
// charset_decode(CHARSET, BYTES, OPT_IGNORE_ERRORS); errors are ignored
// unless the third argument is false.
func charsetFunc(enc bool) lua.LGFunction {
	fn := "charset_decode"
	if enc {
		fn = "charset_encode"
	}
	return func(L *lua.LState) int {
		name := L.CheckString(1)
		in := L.CheckString(2)
		ignore := L.Get(3) != lua.LFalse
		cs, err := htmlindex.Get(strings.ToLower(name))
		if err != nil {
			L.RaiseError("kumo.encode.%s: unknown charset %q", fn, name)
		}
		var out string
		if enc {
			e := cs.NewEncoder()
			if ignore {
				e = encoding.ReplaceUnsupported(e)
			}
			out, err = e.String(in)
		} else {
			out, err = cs.NewDecoder().String(in)
			if err == nil && !ignore && strings.ContainsRune(out, '\uFFFD') {
				err = encoding.ErrInvalidUTF8
			}
		}
		if err != nil {
			L.RaiseError("kumo.encode.%s(%q): %s", fn, name, err.Error())
		}
		L.Push(lua.LString(out))
		return 1
	}
}
