package runtime

import (
	"context"
	"errors"
	"fmt"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// LuaConnection is one session of the custom_lua delivery protocol
// (KumoMTA's make_queue_config protocol page): the constructor event
// returned a connection object whose send(message) (or
// send_batch(messages)) delivers and whose optional close() ends the
// session. As in KumoMTA the session keeps one Lua state for its whole
// life, so upvalues of the object (an HTTP client, counters) persist
// between sends. The state is made for the session rather than borrowed
// from the event pool, so that long-lived sessions never starve SMTP
// events of states. A LuaConnection is used by one goroutine at a time.
type LuaConnection struct {
	r           *Runtime
	st          *state
	obj         lua.LValue
	constructor string
	broken      bool
}

// OpenLuaConnection runs the constructor event (domain, tenant, campaign;
// nil pointers are passed as nil) in a Lua state of its own (a new one,
// or the spare of a closed session: luaconnstates.go) and keeps the
// returned connection object.
func (r *Runtime) OpenLuaConnection(ctx context.Context, constructor, domain string, tenant, campaign *string) (*LuaConnection, error) {
	if !r.handlers[constructor] {
		return nil, fmt.Errorf("custom_lua constructor %q: no handler is registered for that event (kumo.on(%q, function(domain, tenant, campaign) ... end))", constructor, constructor)
	}
	if r.closed.Load() {
		return nil, errors.New("runtime: closed")
	}
	st, err := r.sessionState()
	if err != nil {
		return nil, err
	}
	c := &LuaConnection{r: r, st: st, constructor: constructor}
	err = c.call(ctx, func(L *lua.LState) (int, error) {
		fns := st.handlers[constructor]
		L.Push(fns[0])
		L.Push(lua.LString(domain))
		L.Push(optArg(tenant))
		L.Push(optArg(campaign))
		if err := st.pcall(3, 1); err != nil {
			return 0, err
		}
		c.obj = L.Get(-1)
		switch c.obj.(type) {
		case *lua.LTable, *lua.LUserData:
		default:
			return 0, fmt.Errorf("%s must return a connection object (a table with a send method), got %s", constructor, c.obj.Type())
		}
		return 0, nil
	})
	if err != nil {
		r.releaseSessionState(st)
		return nil, wrapEventErr(constructor, err)
	}
	return c, nil
}

// call runs fn between begin and end on the session's state.
func (c *LuaConnection) call(ctx context.Context, fn func(L *lua.LState) (int, error)) error {
	st := c.st
	st.begin(ctx, c.constructor)
	_, err := fn(st.L)
	st.end()
	if err != nil {
		var rej *smtpreply.Rejection
		if !errors.As(err, &rej) {
			c.broken = true
		}
	}
	return err
}

// method looks up a method of the connection object.
func (c *LuaConnection) method(name string) lua.LValue {
	return c.st.L.GetField(c.obj, name)
}

// Usable reports whether the session may be used again: a Lua error other
// than kumo.reject ends it (KumoMTA closes the connection and retries the
// messages), as does a memory-limited state.
func (c *LuaConnection) Usable() bool {
	return !c.broken && !c.st.L.MemoryLimitExceeded()
}

// Send calls conn:send(msg). The returned string is the disposition of a
// delivery; a kumo.reject comes back as a *smtpreply.Rejection.
func (c *LuaConnection) Send(ctx context.Context, msg *message.Message) (string, error) {
	var out string
	err := c.call(ctx, func(L *lua.LState) (int, error) {
		fn := c.method("send")
		if fn.Type() != lua.LTFunction {
			return 0, fmt.Errorf("the connection object of %s has no send method", c.constructor)
		}
		L.Push(fn)
		L.Push(c.obj)
		L.Push(c.st.newMessage(msg))
		if err := c.st.pcall(2, 1); err != nil {
			return 0, err
		}
		out = dispositionString(L.Get(-1))
		return 0, nil
	})
	return out, err
}

// SendBatch calls conn:send_batch(msgs) with an array of messages. A
// string result is the disposition of every message; an array gives one
// result per message: a string (delivered with that disposition), or a
// table {code=N, message=TEXT} (a failure classified as a kumo.reject of
// that code would be; this per-message form is kumogo's). kumo.reject
// raised by send_batch applies to the whole batch.
//
// It returns one disposition and one error per message (the error of a
// message is a *smtpreply.Rejection); err is the failure of the whole call.
func (c *LuaConnection) SendBatch(ctx context.Context, msgs []*message.Message) (dispositions []string, errs []error, err error) {
	dispositions, errs = make([]string, len(msgs)), make([]error, len(msgs))
	err = c.call(ctx, func(L *lua.LState) (int, error) {
		fn := c.method("send_batch")
		if fn.Type() != lua.LTFunction {
			return 0, fmt.Errorf("the connection object of %s has no send_batch method (batch_size > 1 needs one)", c.constructor)
		}
		arr := L.CreateTable(len(msgs), 0)
		for _, m := range msgs {
			arr.Append(c.st.newMessage(m))
		}
		L.Push(fn)
		L.Push(c.obj)
		L.Push(arr)
		if err := c.st.pcall(2, 1); err != nil {
			return 0, err
		}
		res := L.Get(-1)
		t, ok := res.(*lua.LTable)
		if !ok {
			d := dispositionString(res)
			for i := range dispositions {
				dispositions[i] = d
			}
			return 0, nil
		}
		for i := range dispositions {
			dispositions[i], errs[i] = batchEntry(t.RawGetInt(i + 1))
		}
		return 0, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return dispositions, errs, nil
}

// batchEntry reads one per-message result of send_batch.
func batchEntry(v lua.LValue) (string, error) {
	t, ok := v.(*lua.LTable)
	if !ok {
		return dispositionString(v), nil
	}
	code, _ := t.RawGetString("code").(lua.LNumber)
	text := lua.LVAsString(t.RawGetString("message"))
	if code == 0 {
		code = 400
	}
	return "", &smtpreply.Rejection{Code: int(code), Text: text}
}

// dispositionString renders a send result for the Delivery record.
func dispositionString(v lua.LValue) string {
	if v == lua.LNil {
		return ""
	}
	return lua.LVAsString(v)
}

// Close calls the object's close method, when it has one, and frees the
// session's state.
func (c *LuaConnection) Close(ctx context.Context) error {
	if c.st == nil {
		return nil
	}
	var err error
	if c.obj != nil && !c.st.L.MemoryLimitExceeded() {
		if fn := c.method("close"); fn.Type() == lua.LTFunction {
			err = c.call(ctx, func(L *lua.LState) (int, error) {
				L.Push(fn)
				L.Push(c.obj)
				return 0, c.st.pcall(1, 0)
			})
		}
	}
	c.r.releaseSessionState(c.st)
	c.st, c.obj = nil, nil
	if err != nil {
		return wrapEventErr(c.constructor, err)
	}
	return nil
}
