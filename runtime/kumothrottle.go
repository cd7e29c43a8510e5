package runtime

import (
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/throttle"
)

// throttles are kumo.make_throttle's limiters, process-wide: throttles
// of the same name and spec share one GCRA bucket whichever Lua state
// made them (KumoMTA's kumo.make_throttle page). Redis-backed throttles
// are not offered: every throttle is local.
type throttles struct {
	mu sync.Mutex
	m  map[string]*throttle.Limiter
}

func (t *throttles) get(name string, spec throttle.Spec) *throttle.Limiter {
	key := name + "\x00" + spec.String()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]*throttle.Limiter)
	}
	l, ok := t.m[key]
	if !ok {
		l = throttle.NewLimiter(spec)
		t.m[key] = l
	}
	return l
}

// kumoMakeThrottle is kumo.make_throttle(NAME, SPEC).
func (st *state) kumoMakeThrottle(L *lua.LState) int {
	name := L.CheckString(1)
	spec, err := throttle.Parse(L.CheckString(2))
	if err != nil {
		L.RaiseError("kumo.make_throttle(%q): %s", name, err.Error())
	}
	if st.throttleMT == nil {
		st.throttleMT = st.newThrottleMT()
	}
	L.Push(&lua.LUserData{Value: st.rt.throttles.get(name, spec), Metatable: st.throttleMT})
	return 1
}

func (st *state) newThrottleMT() *lua.LTable {
	L := st.L
	mt := L.NewTable()
	methods := L.NewTable()
	mt.RawSetString("__index", methods)
	mt.RawSetString("__name", lua.LString("Throttle"))
	check := func(L *lua.LState) *throttle.Limiter {
		ud := L.CheckUserData(1)
		l, ok := ud.Value.(*throttle.Limiter)
		if !ok {
			L.ArgError(1, "Throttle expected (use throttle:method())")
		}
		return l
	}
	L.SetFuncs(methods, map[string]lua.LGFunction{
		"throttle": func(L *lua.LState) int {
			res := check(L).Allow()
			t := L.CreateTable(0, 5)
			t.RawSetString("throttled", lua.LBool(res.Throttled))
			t.RawSetString("limit", lua.LNumber(res.Limit))
			t.RawSetString("remaining", lua.LNumber(res.Remaining))
			t.RawSetString("reset_after", lua.LNumber(res.ResetAfter.Seconds()))
			if res.Throttled {
				t.RawSetString("retry_after", lua.LNumber(res.RetryAfter.Seconds()))
			}
			L.Push(t)
			return 1
		},
		"sleep_if_throttled": func(L *lua.LState) int {
			l := check(L)
			wait := l.ReserveAt(time.Now())
			if wait > 0 {
				st.sleepCtx(L, wait, "sleep_if_throttled")
			}
			L.Push(lua.LBool(wait > 0))
			return 1
		},
		"delay_message_if_throttled": func(L *lua.LState) int {
			l := check(L)
			ud, ok := L.Get(2).(*lua.LUserData)
			if !ok || ud.Metatable != st.msgMT {
				L.ArgError(2, "message expected")
			}
			msg, ok := ud.Value.(*message.Message)
			if !ok {
				L.RaiseError(staleHandle, "message")
			}
			res := l.Allow()
			if res.Throttled {
				msg.SetDue(time.Now().Add(res.RetryAfter))
			}
			L.Push(lua.LBool(res.Throttled))
			return 1
		},
	})
	return mt
}

// sleepCtx sleeps d or until the event's context ends (then raises).
func (st *state) sleepCtx(L *lua.LState, d time.Duration, what string) {
	ctx := st.callCtx()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		L.RaiseError("%s interrupted: %s", what, ctx.Err().Error())
	}
}
