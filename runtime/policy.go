package runtime

import (
	"context"
	"errors"
	"fmt"
	"math"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/event"
	"github.com/kumogo/kumogo/internal/message"
)

// single borrows a state and starts event on it with its (single)
// handler pushed. The caller pushes the arguments, calls st.pcall and
// finishes with r.finish.
func (r *Runtime) single(ctx context.Context, event string) (*state, error) {
	st, err := r.get(ctx)
	if err != nil {
		return nil, err
	}
	fns := st.handlers[event]
	if len(fns) == 0 {
		// Cannot happen: every state runs the same policy.
		r.put(st, nil)
		return nil, fmt.Errorf("runtime: no handler for %s in this state", event)
	}
	st.begin(ctx, event)
	st.L.Push(fns[0])
	st.handler, st.params = fns[0], visibleParams(fns[0])
	return st, nil
}

// visibleParams is the number of arguments fn can reach: the named
// parameters of a Lua function without "...". The VM drops (and clears)
// the others on entry and there is no debug library, so an argument past
// them is never seen and need not be built: it is passed as nil.
func visibleParams(fn *lua.LFunction) int {
	if fn.IsG || fn.Proto == nil || fn.Proto.IsVarArg != 0 {
		return math.MaxInt
	}
	return int(fn.Proto.NumParameters)
}

// pushConnMeta pushes cm as argument n (1-based) of the running handler:
// the state's reused userdata when the handler cannot keep it.
func (st *state) pushConnMeta(n int, cm *message.ConnMeta) {
	switch {
	case n > st.params:
		st.L.Push(lua.LNil)
	case st.connUD.Value == nil && st.reusable(n-1, connArg):
		st.connUD.Value = cm
		st.live = append(st.live, st.connUD)
		st.L.Push(st.connUD)
	default:
		st.L.Push(st.newConnMeta(cm))
	}
}

// pushMessage pushes msg as argument n (1-based) of the running handler:
// the state's reused userdata when the handler cannot keep it.
func (st *state) pushMessage(n int, msg *message.Message) {
	switch {
	case n > st.params:
		st.L.Push(lua.LNil)
	case st.msgUD.Value == nil && st.reusable(n-1, msgArg):
		st.msgUD.Value = msg
		st.live = append(st.live, st.msgUD)
		st.L.Push(st.msgUD)
	default:
		st.L.Push(st.newMessage(msg))
	}
}

// finish ends the event and returns the state to the pool.
func (r *Runtime) finish(st *state, event string, err error) error {
	st.end()
	r.put(st, err)
	return wrapEventErr(event, err)
}

// ConnectionAccepted runs smtp_server_connection_accepted(conn_meta).
func (r *Runtime) ConnectionAccepted(ctx context.Context, cm *message.ConnMeta) error {
	return r.connOnly(ctx, event.ConnectionAccepted, cm)
}

func (r *Runtime) connOnly(ctx context.Context, event string, cm *message.ConnMeta) error {
	if !r.handlers[event] {
		return nil
	}
	st, err := r.single(ctx, event)
	if err != nil {
		return err
	}
	st.pushConnMeta(1, cm)
	return r.finish(st, event, st.pcall(1, 0))
}

// Ehlo runs smtp_server_ehlo(domain, conn_meta[, extensions]); HELO
// (exts == nil) passes only two arguments. A nil result keeps the default
// extension list.
func (r *Runtime) Ehlo(ctx context.Context, domain string, cm *message.ConnMeta, exts []string) ([]string, error) {
	if !r.handlers[event.Ehlo] {
		return nil, nil
	}
	st, err := r.single(ctx, event.Ehlo)
	if err != nil {
		return nil, err
	}
	L := st.L
	L.Push(lua.LString(domain))
	st.pushConnMeta(2, cm)
	nargs := 2
	if exts != nil {
		L.Push(st.fromGo(exts))
		nargs = 3
	}
	var out []string
	err = st.pcall(nargs, 1)
	if err == nil {
		switch v := L.Get(-1).(type) {
		case *lua.LNilType:
		case *lua.LTable:
			out = make([]string, 0, v.Len())
			for i := 1; i <= v.Len(); i++ {
				s, ok := v.RawGetInt(i).(lua.LString)
				if !ok {
					err = errors.New("smtp_server_ehlo must return nil or an array of strings")
					break
				}
				out = append(out, string(s))
			}
		default:
			err = fmt.Errorf("smtp_server_ehlo must return nil or an array of strings, got %s", v.Type())
		}
	}
	if err != nil {
		out = nil
	}
	return out, r.finish(st, event.Ehlo, err)
}

// AuthPlain runs smtp_server_auth_plain(authz, authc, password,
// conn_meta). The handler returns a boolean or an AuthInfo table (which
// counts as success).
func (r *Runtime) AuthPlain(ctx context.Context, authz, authc, password string, cm *message.ConnMeta) (bool, error) {
	if !r.handlers[event.AuthPlain] {
		return false, nil
	}
	st, err := r.single(ctx, event.AuthPlain)
	if err != nil {
		return false, err
	}
	L := st.L
	L.Push(lua.LString(authz))
	L.Push(lua.LString(authc))
	L.Push(lua.LString(password))
	st.pushConnMeta(4, cm)
	ok := false
	err = st.pcall(4, 1)
	if err == nil {
		switch v := L.Get(-1).(type) {
		case lua.LBool:
			ok = bool(v)
		case *lua.LTable:
			ok = true
		case *lua.LNilType:
		default:
			err = fmt.Errorf("smtp_server_auth_plain must return a boolean or an AuthInfo table, got %s", v.Type())
		}
	}
	return ok && err == nil, r.finish(st, event.AuthPlain, err)
}

// MailFrom runs smtp_server_mail_from(sender, conn_meta).
func (r *Runtime) MailFrom(ctx context.Context, sender message.Address, cm *message.ConnMeta) error {
	return r.addrEvent(ctx, event.MailFrom, sender, cm)
}

// RcptTo runs smtp_server_rcpt_to(recipient, conn_meta).
func (r *Runtime) RcptTo(ctx context.Context, rcpt message.Address, cm *message.ConnMeta) error {
	return r.addrEvent(ctx, event.RcptTo, rcpt, cm)
}

func (r *Runtime) addrEvent(ctx context.Context, event string, a message.Address, cm *message.ConnMeta) error {
	if !r.handlers[event] {
		return nil
	}
	st, err := r.single(ctx, event)
	if err != nil {
		return err
	}
	if st.params < 1 {
		st.L.Push(lua.LNil)
	} else {
		st.L.Push(st.newAddress(a))
	}
	st.pushConnMeta(2, cm)
	return r.finish(st, event, st.pcall(2, 0))
}

// ListenerDomain runs get_listener_domain(domain, listener, conn_meta).
// The handler returns kumo.make_listener_domain{...} (a plain table is
// decoded the same way) or nil.
func (r *Runtime) ListenerDomain(ctx context.Context, domain, listener string, cm *message.ConnMeta) (*config.ListenerDomain, error) {
	if !r.handlers[event.ListenerDomain] {
		return nil, nil
	}
	st, err := r.single(ctx, event.ListenerDomain)
	if err != nil {
		return nil, err
	}
	L := st.L
	L.Push(lua.LString(domain))
	L.Push(lua.LString(listener))
	st.pushConnMeta(3, cm)
	var out *config.ListenerDomain
	err = st.pcall(3, 1)
	if err == nil {
		switch v := L.Get(-1).(type) {
		case *lua.LNilType:
		case *lua.LUserData:
			d, ok := v.Value.(*config.ListenerDomain)
			if !ok {
				err = fmt.Errorf("get_listener_domain must return kumo.make_listener_domain{...} or nil, got %s", typeName(v))
			}
			out = d
		case *lua.LTable:
			var gv any
			if gv, err = st.toGo(v); err == nil {
				out, err = config.DecodeListenerDomain(gv)
			}
		default:
			err = fmt.Errorf("get_listener_domain must return kumo.make_listener_domain{...} or nil, got %s", v.Type())
		}
	}
	if err != nil {
		out = nil
	}
	return out, r.finish(st, event.ListenerDomain, err)
}

// Data runs smtp_server_data(message, conn_meta).
func (r *Runtime) Data(ctx context.Context, msg *message.Message, cm *message.ConnMeta) error {
	return r.msgEvent(ctx, event.Data, msg, cm)
}

// MessageReceived runs smtp_server_message_received(message, conn_meta).
func (r *Runtime) MessageReceived(ctx context.Context, msg *message.Message, cm *message.ConnMeta) error {
	return r.msgEvent(ctx, event.MessageReceived, msg, cm)
}

func (r *Runtime) msgEvent(ctx context.Context, event string, msg *message.Message, cm *message.ConnMeta) error {
	if !r.handlers[event] {
		return nil
	}
	st, err := r.single(ctx, event)
	if err != nil {
		return err
	}
	st.pushMessage(1, msg)
	st.pushConnMeta(2, cm)
	return r.finish(st, event, st.pcall(2, 0))
}

// SplitTransaction runs smtp_server_split_transaction(message,
// conn_meta): an array of arrays of addresses, or nil for the listener's
// batch_handling.
func (r *Runtime) SplitTransaction(ctx context.Context, msg *message.Message, cm *message.ConnMeta) ([][]message.Address, error) {
	if !r.handlers[event.SplitTransaction] {
		return nil, nil
	}
	st, err := r.single(ctx, event.SplitTransaction)
	if err != nil {
		return nil, err
	}
	L := st.L
	st.pushMessage(1, msg)
	st.pushConnMeta(2, cm)
	var out [][]message.Address
	err = st.pcall(2, 1)
	if err == nil {
		out, err = st.splitResult(L.Get(-1))
	}
	return out, r.finish(st, event.SplitTransaction, err)
}

func (st *state) splitResult(v lua.LValue) ([][]message.Address, error) {
	const want = "smtp_server_split_transaction must return nil or an array of arrays of addresses"
	if v == lua.LNil {
		return nil, nil
	}
	outer, ok := v.(*lua.LTable)
	if !ok {
		return nil, fmt.Errorf("%s, got %s", want, v.Type())
	}
	out := make([][]message.Address, 0, outer.Len())
	for i := 1; i <= outer.Len(); i++ {
		inner, ok := outer.RawGetInt(i).(*lua.LTable)
		if !ok {
			return nil, fmt.Errorf("%s: batch %d is a %s", want, i, outer.RawGetInt(i).Type())
		}
		batch := make([]message.Address, 0, inner.Len())
		for j := 1; j <= inner.Len(); j++ {
			switch a := inner.RawGetInt(j).(type) {
			case *lua.LUserData:
				p, ok := a.Value.(*message.Address)
				if !ok {
					return nil, fmt.Errorf("%s: batch %d item %d is a %s", want, i, j, typeName(a))
				}
				batch = append(batch, *p)
			case lua.LString:
				addr, err := message.ParseAddress(string(a))
				if err != nil {
					return nil, fmt.Errorf("smtp_server_split_transaction: batch %d item %d %q: %w", i, j, string(a), err)
				}
				batch = append(batch, addr)
			default:
				return nil, fmt.Errorf("%s: batch %d item %d is a %s", want, i, j, a.Type())
			}
		}
		out = append(out, batch)
	}
	return out, nil
}

// RewriteResponse runs smtp_server_rewrite_response(status, text,
// command_or_nil, conn_meta), which returns status_or_nil, text_or_nil.
// The returned code and text are the originals where the handler returned
// nil (or failed).
func (r *Runtime) RewriteResponse(ctx context.Context, code int, text, command string, cm *message.ConnMeta) (int, string, error) {
	if !r.handlers[event.RewriteResponse] {
		return code, text, nil
	}
	st, err := r.single(ctx, event.RewriteResponse)
	if err != nil {
		return code, text, err
	}
	L := st.L
	L.Push(lua.LNumber(code))
	L.Push(lua.LString(text))
	if command == "" {
		L.Push(lua.LNil)
	} else {
		L.Push(lua.LString(command))
	}
	st.pushConnMeta(4, cm)
	newCode, newText := code, text
	err = st.pcall(4, 2)
	if err == nil {
		switch v := L.Get(-2).(type) {
		case *lua.LNilType:
		case lua.LNumber:
			if !isInteger(v) || v < 100 || v > 599 {
				err = fmt.Errorf("smtp_server_rewrite_response returned an invalid status %v", v)
			} else {
				newCode = int(v)
			}
		default:
			err = fmt.Errorf("smtp_server_rewrite_response must return a status number or nil, got %s", v.Type())
		}
		switch v := L.Get(-1).(type) {
		case *lua.LNilType:
		case lua.LString:
			newText = string(v)
		default:
			if err == nil {
				err = fmt.Errorf("smtp_server_rewrite_response must return a text string or nil, got %s", v.Type())
			}
		}
	}
	if err != nil {
		newCode, newText = code, text
	}
	return newCode, newText, r.finish(st, event.RewriteResponse, err)
}
