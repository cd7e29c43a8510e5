package runtime

import (
	"regexp"

	lua "github.com/yuin/gopher-lua"
)

// openRegex builds kumo.regex (KumoMTA's docs/reference/regex pages):
// compile(PATTERN) returns a Regex with captures, is_match, find,
// find_all, replace, replace_all, replacen and split; escape(s) quotes
// metacharacters. Patterns use Go's RE2 syntax, which is Rust regex's
// (named groups (?P<n>) and (?<n>), $name and ${n} replacements); the
// fancy-regex extensions (look-around, backreferences) are refused at
// compile with Go's error.
func (st *state) openRegex() *lua.LTable {
	L := st.L
	t := L.NewTable()
	mt := L.NewTable()
	methods := L.NewTable()
	mt.RawSetString("__index", methods)
	mt.RawSetString("__name", lua.LString("Regex"))
	check := func(L *lua.LState) *regexp.Regexp {
		ud := L.CheckUserData(1)
		re, ok := ud.Value.(*regexp.Regexp)
		if !ok {
			L.ArgError(1, "Regex expected")
		}
		return re
	}
	strs := func(L *lua.LState, ss []string) int {
		out := L.CreateTable(len(ss), 0)
		for _, s := range ss {
			out.Append(lua.LString(s))
		}
		L.Push(out)
		return 1
	}
	L.SetFuncs(methods, map[string]lua.LGFunction{
		"is_match": func(L *lua.LState) int {
			L.Push(lua.LBool(check(L).MatchString(L.CheckString(2))))
			return 1
		},
		"find": func(L *lua.LState) int {
			re, h := check(L), L.CheckString(2)
			if loc := re.FindStringIndex(h); loc != nil {
				L.Push(lua.LString(h[loc[0]:loc[1]]))
			} else {
				L.Push(lua.LNil)
			}
			return 1
		},
		"find_all": func(L *lua.LState) int { return strs(L, check(L).FindAllString(L.CheckString(2), -1)) },
		"captures": func(L *lua.LState) int {
			re, h := check(L), L.CheckString(2)
			m := re.FindStringSubmatchIndex(h)
			if m == nil {
				L.Push(lua.LNil)
				return 1
			}
			out := L.NewTable()
			names := re.SubexpNames()
			for i := 0; i*2 < len(m); i++ {
				if m[2*i] < 0 {
					continue
				}
				v := lua.LString(h[m[2*i]:m[2*i+1]])
				out.RawSetInt(i, v)
				if names[i] != "" {
					out.RawSetString(names[i], v)
				}
			}
			L.Push(out)
			return 1
		},
		"replace":     func(L *lua.LState) int { return regexReplace(L, check(L), L.CheckString(2), 1, L.CheckString(3)) },
		"replace_all": func(L *lua.LState) int { return regexReplace(L, check(L), L.CheckString(2), 0, L.CheckString(3)) },
		"replacen": func(L *lua.LState) int {
			return regexReplace(L, check(L), L.CheckString(2), L.CheckInt(3), L.CheckString(4))
		},
		"split": func(L *lua.LState) int { return strs(L, check(L).Split(L.CheckString(2), -1)) },
	})
	L.SetFuncs(t, map[string]lua.LGFunction{
		"compile": func(L *lua.LState) int {
			re, err := regexp.Compile(L.CheckString(1))
			if err != nil {
				L.RaiseError("kumo.regex.compile: %s", err.Error())
			}
			L.Push(&lua.LUserData{Value: re, Metatable: mt})
			return 1
		},
		"escape": func(L *lua.LState) int {
			L.Push(lua.LString(regexp.QuoteMeta(L.CheckString(1))))
			return 1
		},
	})
	return t
}

// regexReplace replaces the first limit matches (all when limit is 0),
// expanding $n, $name and ${n} in repl.
func regexReplace(L *lua.LState, re *regexp.Regexp, text string, limit int, repl string) int {
	var out []byte
	last, n := 0, 0
	for _, m := range re.FindAllStringSubmatchIndex(text, -1) {
		if limit > 0 && n >= limit {
			break
		}
		out = append(out, text[last:m[0]]...)
		out = re.ExpandString(out, repl, text, m)
		last = m[1]
		n++
	}
	out = append(out, text[last:]...)
	L.Push(lua.LString(out))
	return 1
}
