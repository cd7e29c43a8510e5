package runtime

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"hash/crc32"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
)

// openDigest builds kumo.digest (KumoMTA's kumo.digest pages): each
// function digests its arguments (strings as bytes, anything else as its
// JSON text) and returns a BinaryResult.
func (st *state) openDigest() *lua.LTable {
	L := st.L
	t := L.NewTable()
	for name, h := range map[string]func() hash.Hash{
		"sha1": sha1.New, "sha224": sha256.New224, "sha256": sha256.New, "sha384": sha512.New384,
		"sha512": sha512.New, "sha512_256": sha512.New512_256,
		"sha3_256": func() hash.Hash { return sha3.New256() }, "sha3_384": func() hash.Hash { return sha3.New384() },
		"sha3_512": func() hash.Hash { return sha3.New512() },
		"crc32":    func() hash.Hash { return crc32.NewIEEE() },
	} {
		t.RawSetString(name, L.NewFunction(st.digestFunc(name, h)))
	}
	for name, h := range map[string]func() hash.Hash{
		"hmac_sha1": sha1.New, "hmac_sha224": sha256.New224, "hmac_sha256": sha256.New,
		"hmac_sha384": sha512.New384, "hmac_sha512": sha512.New,
	} {
		t.RawSetString(name, L.NewFunction(st.hmacFunc(name, h)))
	}
	return t
}

func (st *state) digestFunc(name string, h func() hash.Hash) lua.LGFunction {
	return func(L *lua.LState) int {
		d := h()
		for i := 1; i <= L.GetTop(); i++ {
			d.Write(st.digestBytes(L, i, name))
		}
		L.Push(st.binaryResult(d.Sum(nil)))
		return 1
	}
}

func (st *state) hmacFunc(name string, h func() hash.Hash) lua.LGFunction {
	return func(L *lua.LState) int {
		ks := st.keySourceArg(L, 1, "kumo.digest."+name)
		key, err := ks.Read()
		if err != nil {
			L.RaiseError("kumo.digest.%s: key: %s", name, err.Error())
		}
		m := hmac.New(h, key)
		m.Write([]byte(L.CheckString(2)))
		L.Push(st.binaryResult(m.Sum(nil)))
		return 1
	}
}

// digestBytes is argument i as digest input: a string's bytes, or the
// JSON text of any other value.
func (st *state) digestBytes(L *lua.LState, i int, fn string) []byte {
	if s, ok := L.Get(i).(lua.LString); ok {
		return []byte(s)
	}
	v, err := st.toGo(L.Get(i))
	if err == nil {
		var s string
		if s, err = jsonEncode(configsAsMaps(v), false); err == nil {
			return []byte(s)
		}
	}
	L.ArgError(i, "kumo.digest."+fn+": "+err.Error())
	return nil
}

// keySourceArg decodes argument i as a KeySource (a path, {key_data=...}
// or a vault table).
func (st *state) keySourceArg(L *lua.LState, i int, fn string) config.KeySource {
	v, err := st.toGo(L.CheckAny(i))
	if err != nil {
		L.ArgError(i, err.Error())
	}
	in := map[string]any{"key": v}
	o := config.NewObject(in, v, "KeySource", "key")
	var ks config.KeySource
	o.KeySource("key", &ks)
	if o.Err() != nil {
		L.RaiseError("%s: %s", fn, o.Err().Error())
	}
	return ks
}

// binaryResult is KumoMTA's BinaryResult: the bytes and their common
// encodings as fields; tostring gives the hex form.
func (st *state) binaryResult(b []byte) *lua.LTable {
	L := st.L
	t := L.CreateTable(0, 10)
	h := hex.EncodeToString(b)
	for k, v := range map[string]string{
		"bytes": string(b), "hex": h,
		"base32":          base32.StdEncoding.EncodeToString(b),
		"base32_nopad":    base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b),
		"base32hex":       base32.HexEncoding.EncodeToString(b),
		"base32hex_nopad": base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(b),
		"base64":          base64.StdEncoding.EncodeToString(b),
		"base64_nopad":    base64.RawStdEncoding.EncodeToString(b),
		"base64url":       base64.URLEncoding.EncodeToString(b),
		"base64url_nopad": base64.RawURLEncoding.EncodeToString(b),
	} {
		t.RawSetString(k, lua.LString(v))
	}
	mt := L.CreateTable(0, 1)
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(h))
		return 1
	}))
	L.SetMetatable(t, mt)
	return t
}
