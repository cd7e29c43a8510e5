package runtime

import (
	"net/mail"
	"time"

	"github.com/lestrrat-go/strftime"
	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/duration"
)

// kumoTime is the value of a Time object (KumoMTA's kumo.time pages),
// always in UTC.
type kumoTime struct{ t time.Time }

// openTime builds kumo.time: now, from_unix_timestamp, parse_rfc3339,
// parse_rfc2822, with_ymd_hms, parse_duration, sleep and start_timer
// (whose done() returns the elapsed TimeDelta; kumogo has no
// user_lua_latency histogram).
func (st *state) openTime() *lua.LTable {
	L := st.L
	t := L.NewTable()
	L.SetFuncs(t, map[string]lua.LGFunction{
		"now": func(L *lua.LState) int { L.Push(st.newTime(time.Now())); return 1 },
		"from_unix_timestamp": func(L *lua.LState) int {
			secs := float64(L.CheckNumber(1))
			L.Push(st.newTime(time.Unix(0, int64(secs*1e9))))
			return 1
		},
		"parse_rfc3339": func(L *lua.LState) int {
			tm, err := time.Parse(time.RFC3339Nano, L.CheckString(1))
			if err != nil {
				L.RaiseError("kumo.time.parse_rfc3339: %s", err.Error())
			}
			L.Push(st.newTime(tm))
			return 1
		},
		"parse_rfc2822": func(L *lua.LState) int {
			tm, err := mail.ParseDate(L.CheckString(1))
			if err != nil {
				L.RaiseError("kumo.time.parse_rfc2822: %s", err.Error())
			}
			L.Push(st.newTime(tm))
			return 1
		},
		"with_ymd_hms": func(L *lua.LState) int {
			tm := time.Date(L.CheckInt(1), time.Month(L.CheckInt(2)), L.CheckInt(3), L.CheckInt(4), L.CheckInt(5), L.CheckInt(6), 0, time.UTC)
			if tm.Year() != L.CheckInt(1) || int(tm.Month()) != L.CheckInt(2) || tm.Day() != L.CheckInt(3) ||
				tm.Hour() != L.CheckInt(4) || tm.Minute() != L.CheckInt(5) || tm.Second() != L.CheckInt(6) {
				L.RaiseError("kumo.time.with_ymd_hms: invalid date or time")
			}
			L.Push(st.newTime(tm))
			return 1
		},
		"parse_duration": func(L *lua.LState) int {
			var d time.Duration
			var err error
			if n, ok := L.Get(1).(lua.LNumber); ok {
				d, err = duration.FromSeconds(float64(n))
			} else {
				d, err = duration.Parse(L.CheckString(1))
			}
			if err != nil {
				L.RaiseError("kumo.time.parse_duration: %s", err.Error())
			}
			L.Push(st.newTimeDelta(d))
			return 1
		},
		"sleep": st.kumoSleep,
		"start_timer": func(L *lua.LState) int {
			L.CheckString(1)
			start := time.Now()
			timer := L.NewTable()
			timer.RawSetString("done", L.NewFunction(func(L *lua.LState) int {
				L.Push(st.newTimeDelta(time.Since(start)))
				return 1
			}))
			L.Push(timer)
			return 1
		},
	})
	return t
}

func (st *state) newTime(t time.Time) *lua.LUserData {
	if st.timeMT == nil {
		st.timeMT = st.newTimeMT()
	}
	return &lua.LUserData{Value: kumoTime{t.UTC()}, Metatable: st.timeMT}
}

func checkTime(L *lua.LState, n int) (time.Time, bool) {
	if ud, ok := L.Get(n).(*lua.LUserData); ok {
		if kt, ok := ud.Value.(kumoTime); ok {
			return kt.t, true
		}
	}
	return time.Time{}, false
}

func (st *state) newTimeMT() *lua.LTable {
	L := st.L
	mt := L.NewTable()
	mt.RawSetString("__name", lua.LString("Time"))
	must := func(L *lua.LState, n int) time.Time {
		t, ok := checkTime(L, n)
		if !ok {
			L.ArgError(n, "Time expected")
		}
		return t
	}
	format := L.NewFunction(func(L *lua.LState) int {
		t := must(L, 1)
		s, err := strftime.Format(L.CheckString(2), t, strftime.WithMilliseconds('L'))
		if err != nil {
			L.RaiseError("Time:format: %s", err.Error())
		}
		L.Push(lua.LString(s))
		return 1
	})
	mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		t := must(L, 1)
		var v lua.LValue = lua.LNil
		switch L.CheckString(2) {
		case "year":
			v = lua.LNumber(t.Year())
		case "month":
			v = lua.LNumber(t.Month())
		case "day":
			v = lua.LNumber(t.Day())
		case "hour":
			v = lua.LNumber(t.Hour())
		case "minute":
			v = lua.LNumber(t.Minute())
		case "second":
			v = lua.LNumber(t.Second())
		case "unix_timestamp":
			v = lua.LNumber(t.Unix())
		case "unix_timestamp_millis":
			v = lua.LNumber(t.UnixMilli())
		case "rfc2822":
			v = lua.LString(t.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
		case "rfc3339":
			v = lua.LString(t.Format(time.RFC3339Nano))
		case "elapsed":
			v = st.newTimeDelta(time.Since(t))
		case "format":
			v = format
		}
		L.Push(v)
		return 1
	}))
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(must(L, 1).Format("2006-01-02 15:04:05.999999999 UTC")))
		return 1
	}))
	mt.RawSetString("__eq", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LBool(must(L, 1).Equal(must(L, 2))))
		return 1
	}))
	mt.RawSetString("__lt", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LBool(must(L, 1).Before(must(L, 2))))
		return 1
	}))
	mt.RawSetString("__add", L.NewFunction(func(L *lua.LState) int {
		L.Push(st.newTime(must(L, 1).Add(st.checkTimeDelta(L, 2))))
		return 1
	}))
	mt.RawSetString("__sub", L.NewFunction(func(L *lua.LState) int {
		t := must(L, 1)
		if t2, ok := checkTime(L, 2); ok {
			L.Push(st.newTimeDelta(t.Sub(t2)))
			return 1
		}
		L.Push(st.newTime(t.Add(-st.checkTimeDelta(L, 2))))
		return 1
	}))
	return mt
}
