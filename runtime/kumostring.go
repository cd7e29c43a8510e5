package runtime

import (
	"strings"
	"unicode"

	lua "github.com/yuin/gopher-lua"
	"golang.org/x/net/publicsuffix"
)

// openString builds kumo.string (KumoMTA's docs/reference/string pages).
// Patterns are plain strings, as in Rust's str methods, not Lua patterns.
func (st *state) openString() *lua.LTable {
	L := st.L
	t := L.NewTable()
	list := func(L *lua.LState, parts []string) int {
		out := L.CreateTable(len(parts), 0)
		for _, p := range parts {
			out.Append(lua.LString(p))
		}
		L.Push(out)
		return 1
	}
	str := func(f func(string) string) lua.LGFunction {
		return func(L *lua.LState) int { L.Push(lua.LString(f(L.CheckString(1)))); return 1 }
	}
	L.SetFuncs(t, map[string]lua.LGFunction{
		"split": func(L *lua.LState) int { return list(L, strings.Split(L.CheckString(1), L.CheckString(2))) },
		"splitn": func(L *lua.LState) int {
			return list(L, strings.SplitN(L.CheckString(1), L.CheckString(3), L.CheckInt(2)))
		},
		"rsplit": func(L *lua.LState) int {
			return list(L, reversed(strings.Split(L.CheckString(1), L.CheckString(2))))
		},
		"rsplitn":          func(L *lua.LState) int { return list(L, rsplitn(L.CheckString(1), L.CheckInt(2), L.CheckString(3))) },
		"split_whitespace": func(L *lua.LState) int { return list(L, strings.Fields(L.CheckString(1))) },
		"split_ascii_whitespace": func(L *lua.LState) int {
			return list(L, strings.FieldsFunc(L.CheckString(1), func(r rune) bool { return r < 0x80 && unicode.IsSpace(r) }))
		},
		"trim":       str(strings.TrimSpace),
		"trim_start": str(func(s string) string { return strings.TrimLeftFunc(s, unicode.IsSpace) }),
		"trim_end":   str(func(s string) string { return strings.TrimRightFunc(s, unicode.IsSpace) }),
		"starts_with": func(L *lua.LState) int {
			L.Push(lua.LBool(strings.HasPrefix(L.CheckString(1), L.CheckString(2))))
			return 1
		},
		"ends_with": func(L *lua.LState) int {
			L.Push(lua.LBool(strings.HasSuffix(L.CheckString(1), L.CheckString(2))))
			return 1
		},
		"replace": func(L *lua.LState) int {
			L.Push(lua.LString(strings.ReplaceAll(L.CheckString(1), L.CheckString(2), L.CheckString(3))))
			return 1
		},
		"replacen": func(L *lua.LState) int {
			L.Push(lua.LString(strings.Replace(L.CheckString(1), L.CheckString(2), L.CheckString(3), L.CheckInt(4))))
			return 1
		},
		"psl_domain": func(L *lua.LState) int {
			d, err := publicsuffix.EffectiveTLDPlusOne(strings.ToLower(L.CheckString(1)))
			if err != nil {
				L.RaiseError("kumo.string.psl_domain: %s", err.Error())
			}
			L.Push(lua.LString(d))
			return 1
		},
		"psl_suffix": func(L *lua.LState) int {
			s, _ := publicsuffix.PublicSuffix(strings.ToLower(L.CheckString(1)))
			L.Push(lua.LString(s))
			return 1
		},
		"wrap": func(L *lua.LState) int {
			L.Push(lua.LString(wrapText(L.CheckString(1), L.OptInt(2, 75), L.OptInt(3, 900))))
			return 1
		},
	})
	return t
}

func reversed(s []string) []string {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
	return s
}

// rsplitn splits from the end into at most n parts, last part first.
func rsplitn(s string, n int, sep string) []string {
	var out []string
	for n > 1 {
		i := strings.LastIndex(s, sep)
		if i < 0 {
			break
		}
		out = append(out, s[i+len(sep):])
		s = s[:i]
		n--
	}
	if n > 0 {
		out = append(out, s)
	}
	return out
}

// wrapText breaks text at white space to keep lines under soft, and
// words longer than hard every hard bytes; breaks are "\r\n\t" and
// trailing white space is trimmed.
func wrapText(text string, soft, hard int) string {
	if soft < 1 {
		soft = 1
	}
	if hard < soft {
		hard = soft
	}
	var b strings.Builder
	line := 0
	for i, w := range strings.Fields(text) {
		for len(w) > hard {
			if line > 0 {
				b.WriteString("\r\n\t")
			}
			b.WriteString(w[:hard])
			w = w[hard:]
			line = hard
		}
		switch {
		case i == 0 && line == 0:
		case line+1+len(w) > soft:
			b.WriteString("\r\n\t")
			line = 0
		default:
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	return strings.TrimRight(b.String(), " \t\r\n")
}
