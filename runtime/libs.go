package runtime

import (
	"math"
	"strings"
	"unicode/utf8"

	lua "github.com/yuin/gopher-lua"
)

// tablePack is Lua 5.2's table.pack(...).
func tablePack(L *lua.LState) int {
	n := L.GetTop()
	t := L.CreateTable(n, 1)
	for i := 1; i <= n; i++ {
		t.RawSetInt(i, L.Get(i))
	}
	t.RawSetString("n", lua.LNumber(n))
	L.Push(t)
	return 1
}

// isInteger reports whether n holds an integral value in int64 range.
func isInteger(n lua.LNumber) bool {
	f := float64(n)
	return f == math.Trunc(f) && f >= -9.223372036854775808e18 && f < 9.223372036854775808e18
}

// mathType is Lua 5.3's math.type: "integer" for integral numbers (this
// VM has only floats, so integral values count as integers), "float"
// otherwise, nil for non-numbers.
func mathType(L *lua.LState) int {
	L.CheckAny(1)
	n, ok := L.Get(1).(lua.LNumber)
	switch {
	case !ok:
		L.Push(lua.LNil)
	case isInteger(n):
		L.Push(lua.LString("integer"))
	default:
		L.Push(lua.LString("float"))
	}
	return 1
}

// mathToInteger is Lua 5.3's math.tointeger.
func mathToInteger(L *lua.LState) int {
	n, ok := L.Get(1).(lua.LNumber)
	if ok && isInteger(n) {
		L.Push(n)
	} else {
		L.Push(lua.LNil)
	}
	return 1
}

// openUTF8 builds the Lua 5.3 utf8 library.
func openUTF8(L *lua.LState) *lua.LTable {
	t := L.CreateTable(0, 6)
	t.RawSetString("charpattern", lua.LString("[\x00-\x7F\xC2-\xFD][\x80-\xBF]*"))
	L.SetFuncs(t, map[string]lua.LGFunction{
		"char":      utf8Char,
		"codepoint": utf8Codepoint,
		"len":       utf8Len,
		"offset":    utf8Offset,
		"codes":     utf8Codes,
	})
	return t
}

// bytePos converts a Lua string position (1-based, negative from the end)
// to a 1-based position.
func bytePos(pos, n int) int {
	if pos >= 0 {
		return pos
	}
	if -pos > n {
		return 0
	}
	return n + pos + 1
}

func utf8Char(L *lua.LState) int {
	n := L.GetTop()
	var b strings.Builder
	for i := 1; i <= n; i++ {
		c := L.CheckInt(i)
		if c < 0 || c > 0x7FFFFFFF {
			L.ArgError(i, "value out of range")
		}
		if c > utf8.MaxRune || (c >= 0xD800 && c <= 0xDFFF) {
			// Lua 5.4 encodes these too; UTF-8 in Go cannot, so they are
			// rejected.
			L.ArgError(i, "value out of range")
		}
		b.WriteRune(rune(c))
	}
	L.Push(lua.LString(b.String()))
	return 1
}

func utf8Codepoint(L *lua.LState) int {
	s := L.CheckString(1)
	i := bytePos(L.OptInt(2, 1), len(s))
	j := bytePos(L.OptInt(3, i), len(s))
	if i < 1 {
		L.ArgError(2, "out of bounds")
	}
	if j > len(s) {
		L.ArgError(3, "out of bounds")
	}
	n := 0
	for p := i - 1; p < j; {
		r, size := utf8.DecodeRuneInString(s[p:])
		if r == utf8.RuneError && size <= 1 {
			L.RaiseError("invalid UTF-8 code")
		}
		L.Push(lua.LNumber(r))
		n++
		p += size
	}
	return n
}

func utf8Len(L *lua.LState) int {
	s := L.CheckString(1)
	i := bytePos(L.OptInt(2, 1), len(s))
	j := bytePos(L.OptInt(3, -1), len(s))
	if i < 1 || i > len(s)+1 {
		L.ArgError(2, "initial position out of bounds")
	}
	if j > len(s) {
		L.ArgError(3, "final position out of bounds")
	}
	count := 0
	for p := i - 1; p < j; {
		r, size := utf8.DecodeRuneInString(s[p:])
		if r == utf8.RuneError && size <= 1 {
			L.Push(lua.LNil)
			L.Push(lua.LNumber(p + 1))
			return 2
		}
		p += size
		count++
	}
	L.Push(lua.LNumber(count))
	return 1
}

func isCont(b byte) bool { return b&0xC0 == 0x80 }

// utf8Offset is utf8.offset(s, n [, i]): the byte position where the n-th
// character (counting from position i) starts.
func utf8Offset(L *lua.LState) int {
	s := L.CheckString(1)
	n := L.CheckInt(2)
	def := 1
	if n < 0 {
		def = len(s) + 1
	}
	i := bytePos(L.OptInt(3, def), len(s))
	if i < 1 || i > len(s)+1 {
		L.ArgError(3, "position out of bounds")
	}
	p := i - 1 // 0-based
	if n == 0 {
		for p > 0 && p < len(s) && isCont(s[p]) {
			p--
		}
		L.Push(lua.LNumber(p + 1))
		return 1
	}
	if p < len(s) && isCont(s[p]) {
		L.RaiseError("initial position is a continuation byte")
	}
	if n < 0 {
		for n < 0 && p > 0 {
			p--
			for p > 0 && isCont(s[p]) {
				p--
			}
			n++
		}
	} else {
		n--
		for n > 0 && p < len(s) {
			p++
			for p < len(s) && isCont(s[p]) {
				p++
			}
			n--
		}
	}
	if n != 0 {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LNumber(p + 1))
	return 1
}

// utf8Codes returns an iterator over (position, codepoint) pairs.
func utf8Codes(L *lua.LState) int {
	s := L.CheckString(1)
	L.Push(L.NewFunction(func(L *lua.LState) int {
		p := int(L.CheckNumber(2)) // previous position, 1-based; 0 at start
		i := p - 1
		if i < 0 {
			i = 0
		} else if i < len(s) {
			_, size := utf8.DecodeRuneInString(s[i:])
			i += size
		}
		if i >= len(s) {
			return 0
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 {
			L.RaiseError("invalid UTF-8 code")
		}
		L.Push(lua.LNumber(i + 1))
		L.Push(lua.LNumber(r))
		return 2
	}))
	L.Push(lua.LString(s))
	L.Push(lua.LNumber(0))
	return 3
}
