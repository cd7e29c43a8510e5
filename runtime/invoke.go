package runtime

import (
	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/event"
	"github.com/kumogo/kumogo/internal/message"
)

// invokeFuncs are KumoMTA's introspection helpers (KumoMTA docs:
// "kumo.invoke_get_queue_config" and its siblings): they run the
// configuration events in the calling state, with the same defaults as
// the typed Runtime methods, and return the configuration object.
func (st *state) invokeFuncs() map[string]lua.LGFunction {
	return map[string]lua.LGFunction{
		"invoke_get_queue_config":       st.invokeGetQueueConfig,
		"invoke_get_egress_path_config": st.invokeGetEgressPathConfig,
		"invoke_get_egress_source":      st.invokeGetEgressSource,
		"invoke_get_egress_pool":        st.invokeGetEgressPool,
	}
}

// invokeChain calls event's handlers with args (chaining like dispatch)
// and returns the first value returned, or nil. Errors propagate.
func (st *state) invokeChain(L *lua.LState, event string, args ...lua.LValue) (lua.LValue, bool) {
	fns := st.handlers[event]
	for _, fn := range fns {
		base := L.GetTop()
		L.Push(fn)
		for _, a := range args {
			L.Push(a)
		}
		L.Call(len(args), lua.MultRet)
		n := L.GetTop() - base
		v := lua.LValue(lua.LNil)
		if n > 0 {
			v = L.Get(base + 1)
		}
		L.SetTop(base)
		if n == 0 || (n == 1 && v == lua.LNil) {
			continue
		}
		return v, true
	}
	return lua.LNil, len(fns) > 0
}

// checkConfigResult raises unless v is a *T configuration object.
func checkConfigResult[T any](L *lua.LState, event, constructor string, v lua.LValue) {
	if _, err := configResult[T](event, constructor, []lua.LValue{v}); err != nil {
		L.RaiseError("%s", err.Error())
	}
}

// invokeGetQueueConfig is kumo.invoke_get_queue_config(queue_name).
func (st *state) invokeGetQueueConfig(L *lua.LState) int {
	p := message.ParseQueueName(L.CheckString(1))
	opt := func(s string, ok bool) lua.LValue {
		if !ok {
			return lua.LNil
		}
		return lua.LString(s)
	}
	v, _ := st.invokeChain(L, event.GetQueueConfig, lua.LString(p.Domain), opt(p.Tenant, p.HasTenant), opt(p.Campaign, p.HasCampaign), opt(p.RoutingDomain, p.HasRoutingDomain))
	if v == lua.LNil {
		c := config.DefaultQueueConfig()
		L.Push(st.newConfigObject(&c))
		return 1
	}
	checkConfigResult[config.QueueConfig](L, event.GetQueueConfig, "make_queue_config", v)
	L.Push(v)
	return 1
}

// invokeGetEgressPathConfig is kumo.invoke_get_egress_path_config(
// routing_domain, source, site_name).
func (st *state) invokeGetEgressPathConfig(L *lua.LState) int {
	rd, src, site := L.CheckString(1), L.CheckString(2), L.CheckString(3)
	v, defined := st.invokeChain(L, event.GetEgressPathConfig, lua.LString(rd), lua.LString(src), lua.LString(site))
	if !defined {
		p := config.DefaultEgressPath()
		L.Push(st.newConfigObject(&p))
		return 1
	}
	if v == lua.LNil {
		L.RaiseError("%s did not return a value for routing_domain=%q source=%q site=%q", event.GetEgressPathConfig, rd, src, site)
	}
	checkConfigResult[config.EgressPath](L, event.GetEgressPathConfig, "make_egress_path", v)
	L.Push(v)
	return 1
}

// invokeGetEgressSource is kumo.invoke_get_egress_source(name).
func (st *state) invokeGetEgressSource(L *lua.LState) int {
	return invokeNamed(st, L, event.GetEgressSource, "source", "make_egress_source", config.UnspecifiedSource)
}

// invokeGetEgressPool is kumo.invoke_get_egress_pool(name).
func (st *state) invokeGetEgressPool(L *lua.LState) int {
	return invokeNamed(st, L, event.GetEgressPool, "pool", "make_egress_pool", config.UnspecifiedPool)
}

// invokeNamed runs the handler of a by-name config event (egress source or
// pool) and pushes its config object; "unspecified" needs no handler.
func invokeNamed[T any](st *state, L *lua.LState, event, what, maker string, unspecified func() T) int {
	name := L.CheckString(1)
	if name == "unspecified" {
		c := unspecified()
		L.Push(st.newConfigObject(&c))
		return 1
	}
	v, defined := st.invokeChain(L, event, lua.LString(name))
	if !defined {
		L.RaiseError("egress %s %q: no %s event handler is defined", what, name, event)
	}
	if v == lua.LNil {
		L.RaiseError("%s did not return a value for %s %q", event, what, name)
	}
	checkConfigResult[T](L, event, maker, v)
	L.Push(v)
	return 1
}
