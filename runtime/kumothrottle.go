package runtime

import (
	"fmt"
	"sort"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/duration"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/sharedlimit"
	"github.com/kumogo/kumogo/internal/throttle"
)

// namedThrottle is the value behind a kumo.make_throttle object: the
// bucket itself lives in the runtime's sharedlimit.Store, so throttles of
// the same name share one GCRA bucket whichever Lua state made them, and
// every node shares it after kumo.configure_redis_throttles (KumoMTA's
// kumo.make_throttle page).
type namedThrottle struct {
	name string
	spec throttle.Spec
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
	L.Push(&lua.LUserData{Value: &namedThrottle{name: name, spec: spec}, Metatable: st.throttleMT})
	return 1
}

func (st *state) newThrottleMT() *lua.LTable {
	L := st.L
	mt := L.NewTable()
	methods := L.NewTable()
	mt.RawSetString("__index", methods)
	mt.RawSetString("__name", lua.LString("Throttle"))
	check := func(L *lua.LState) *namedThrottle {
		ud := L.CheckUserData(1)
		l, ok := ud.Value.(*namedThrottle)
		if !ok {
			L.ArgError(1, "Throttle expected (use throttle:method())")
		}
		return l
	}
	L.SetFuncs(methods, map[string]lua.LGFunction{
		"throttle": func(L *lua.LState) int {
			th := check(L)
			res := st.rt.limits.Throttle(st.callCtx(), th.name, th.spec)
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
			th := check(L)
			ctx := st.callCtx()
			waited, ok := st.rt.limits.Wait(ctx, th.name, th.spec)
			if !ok {
				L.RaiseError("sleep_if_throttled interrupted: %s", ctx.Err().Error())
			}
			L.Push(lua.LBool(waited))
			return 1
		},
		"delay_message_if_throttled": func(L *lua.LState) int {
			th := check(L)
			ud, ok := L.Get(2).(*lua.LUserData)
			if !ok || ud.Metatable != st.msgMT {
				L.ArgError(2, "message expected")
			}
			msg, ok := ud.Value.(*message.Message)
			if !ok {
				L.RaiseError(staleHandle, "message")
			}
			res := st.rt.limits.Throttle(st.callCtx(), th.name, th.spec)
			if res.Throttled {
				msg.SetDue(time.Now().Add(res.RetryAfter))
			}
			L.Push(lua.LBool(res.Throttled))
			return 1
		},
	})
	return mt
}

// storeCloser closes a sharedlimit.Store that the runtime made itself
// (Options.Limits unset) with the runtime.
type storeCloser struct{ s *sharedlimit.Store }

func (c storeCloser) Close() error { c.s.Close(); return nil }

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

// redisParams are the keys of KumoMTA's redis.open page, which
// kumo.configure_redis_throttles takes.
var redisParams = []string{"node", "pool_size", "read_from_replicas", "username", "password",
	"connect_timeout", "wait_timeout", "response_timeout", "recycle_timeout", "cluster"}

// decodeRedisParams decodes a redis.open parameter table.
func decodeRedisParams(m map[string]any) (sharedlimit.RedisConfig, error) {
	var c sharedlimit.RedisConfig
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	known := map[string]bool{}
	for _, k := range redisParams {
		known[k] = true
	}
	dur := func(k string, v any) (time.Duration, error) {
		switch x := v.(type) {
		case string:
			return duration.Parse(x)
		case int64:
			return time.Duration(x) * time.Second, nil
		case float64:
			return time.Duration(x * float64(time.Second)), nil
		}
		return 0, fmt.Errorf("%s: invalid type: %v, expected a duration", k, v)
	}
	for _, k := range keys {
		v := m[k]
		var err error
		switch k {
		case "node":
			switch x := v.(type) {
			case string:
				c.Nodes = []string{x}
			case []any:
				for _, n := range x {
					s, ok := n.(string)
					if !ok {
						return c, fmt.Errorf("node: invalid type: %v, expected a string", n)
					}
					c.Nodes = append(c.Nodes, s)
				}
			default:
				return c, fmt.Errorf("node: invalid type: %v, expected a string or a list of strings", v)
			}
		case "pool_size":
			n, ok := v.(int64)
			if !ok || n < 0 {
				return c, fmt.Errorf("pool_size: invalid type: %v, expected a non-negative integer", v)
			}
			c.PoolSize = int(n)
		case "read_from_replicas", "cluster":
			b, ok := v.(bool)
			if !ok {
				return c, fmt.Errorf("%s: invalid type: %v, expected a boolean", k, v)
			}
			if k == "cluster" {
				c.Cluster = b
			} else {
				c.ReadFromReplicas = b
			}
		case "username", "password":
			s, ok := v.(string)
			if !ok {
				return c, fmt.Errorf("%s: invalid type: %v, expected a string", k, v)
			}
			if k == "username" {
				c.Username = s
			} else {
				c.Password = s
			}
		case "connect_timeout":
			c.ConnectTimeout, err = dur(k, v)
		case "wait_timeout":
			c.WaitTimeout, err = dur(k, v)
		case "response_timeout":
			c.ResponseTimeout, err = dur(k, v)
		case "recycle_timeout":
			_, err = dur(k, v) // go-redis checks pooled connections itself
		default:
			return c, fmt.Errorf("unknown field `%s`, expected one of `node`, `pool_size`, `read_from_replicas`, `username`, `password`, `connect_timeout`, `wait_timeout`, `response_timeout`, `recycle_timeout`, `cluster`", k)
		}
		if err != nil {
			return c, err
		}
	}
	if len(c.Nodes) == 0 {
		return c, fmt.Errorf("missing field `node`")
	}
	return c, nil
}

// kumoConfigureRedisThrottles is kumo.configure_redis_throttles(PARAMS):
// throttles and connection limits are shared through Redis from now on
// (not while validating).
func (st *state) kumoConfigureRedisThrottles(L *lua.LState) int {
	m, ok := st.tableArg(L).(map[string]any)
	if !ok {
		L.RaiseError("configure_redis_throttles: expected a table of parameters")
	}
	cfg, err := decodeRedisParams(m)
	if err != nil {
		L.RaiseError("configure_redis_throttles: %s", err.Error())
	}
	if st.rt.opts.Validating {
		return 0
	}
	if err := st.rt.limits.ConfigureRedis(st.callCtx(), cfg); err != nil {
		L.RaiseError("%s", err.Error())
	}
	return 0
}
