package runtime

import (
	"time"

	"github.com/kumogo/kumogo/internal/duration"
	lua "github.com/yuin/gopher-lua"
)

// timeDelta is the value of a TimeDelta object (KumoMTA's kumo.time
// interval type), passed for example as the delay of requeue_message.
type timeDelta struct{ d time.Duration }

// registerTimeDelta creates the TimeDelta metatable.
func (st *state) registerTimeDelta() {
	L := st.L
	mt := L.NewTable()
	mt.RawSetString("__name", lua.LString("TimeDelta"))
	mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		d := st.checkTimeDelta(L, 1)
		switch L.CheckString(2) {
		case "seconds":
			L.Push(lua.LNumber(d.Seconds()))
		case "milliseconds":
			L.Push(lua.LNumber(d.Milliseconds()))
		case "microseconds":
			L.Push(lua.LNumber(d.Microseconds()))
		case "nanoseconds":
			L.Push(lua.LNumber(d.Nanoseconds()))
		case "human":
			L.Push(lua.LString(formatSignedDuration(d)))
		default:
			L.Push(lua.LNil)
		}
		return 1
	}))
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString(formatSignedDuration(st.checkTimeDelta(L, 1))))
		return 1
	}))
	mt.RawSetString("__eq", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LBool(st.checkTimeDelta(L, 1) == st.checkTimeDelta(L, 2)))
		return 1
	}))
	mt.RawSetString("__add", L.NewFunction(func(L *lua.LState) int {
		L.Push(st.newTimeDelta(st.checkTimeDelta(L, 1) + st.checkTimeDelta(L, 2)))
		return 1
	}))
	mt.RawSetString("__sub", L.NewFunction(func(L *lua.LState) int {
		L.Push(st.newTimeDelta(st.checkTimeDelta(L, 1) - st.checkTimeDelta(L, 2)))
		return 1
	}))
	st.tdMT = mt
}

// newTimeDelta wraps d as a TimeDelta object.
func (st *state) newTimeDelta(d time.Duration) *lua.LUserData {
	return &lua.LUserData{Value: timeDelta{d}, Metatable: st.tdMT}
}

func (st *state) checkTimeDelta(L *lua.LState, n int) time.Duration {
	if ud, ok := L.Get(n).(*lua.LUserData); ok {
		if td, ok := ud.Value.(timeDelta); ok {
			return td.d
		}
	}
	L.ArgError(n, "TimeDelta expected")
	return 0
}

// formatSignedDuration is formatDuration with a leading '-' for negative
// intervals.
func formatSignedDuration(d time.Duration) string {
	if d < 0 {
		return "-" + duration.Format(-d)
	}
	return duration.Format(d)
}
