package runtime

import (
	"context"
	"encoding/json"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/message"
)

// Injector is what kumo.api.inject.inject_v1 needs from the host: the
// request of KumoMTA's inject API as JSON in, its response as a JSON
// object out. The daemon's Host implements it once its spool runs.
type Injector interface {
	InjectV1(ctx context.Context, request []byte) ([]byte, error)
}

// openAPI builds kumo.api: kumo.api.inject.inject_v1(request) takes the
// table KumoMTA's POST /api/inject/v1 takes and returns the same response
// table (success_count, fail_count, failed_recipients, errors).
func (st *state) openAPI() *lua.LTable {
	L := st.L
	api := L.NewTable()
	inject := L.NewTable()
	inject.RawSetString("inject_v1", L.NewFunction(st.apiInjectV1))
	api.RawSetString("inject", inject)
	api.RawSetString("admin", st.openAPIAdmin())
	return api
}

func (st *state) apiInjectV1(L *lua.LState) int {
	inj, ok := st.rt.opts.Host.(Injector)
	if !ok || inj == nil {
		L.RaiseError("kumo.api.inject.inject_v1: injection is not available here")
		return 0
	}
	req, err := st.toGo(L.CheckTable(1))
	if err != nil {
		L.RaiseError("kumo.api.inject.inject_v1: %s", err.Error())
		return 0
	}
	body, err := json.Marshal(req)
	if err != nil {
		L.RaiseError("kumo.api.inject.inject_v1: %s", err.Error())
		return 0
	}
	out, err := inj.InjectV1(st.callCtx(), body)
	if err != nil {
		L.RaiseError("kumo.api.inject.inject_v1: %s", err.Error())
		return 0
	}
	var resp any
	if err := json.Unmarshal(out, &resp); err != nil {
		L.RaiseError("kumo.api.inject.inject_v1: response: %s", err.Error())
		return 0
	}
	L.Push(st.fromGo(resp))
	return 1
}

// MessageInjector is what kumo.inject_message needs from the host: it
// spools, logs and queues a message the policy made with
// kumo.make_message (KumoMTA's kumo.inject_message page).
type MessageInjector interface {
	InjectMessage(ctx context.Context, msg *message.Message) error
}

// kumoInjectMessage is kumo.inject_message(MSG): once it returns, the
// message belongs to the queue; a failure raises an error the policy can
// trap with pcall.
func (st *state) kumoInjectMessage(L *lua.LState) int {
	msg := st.checkMessage(L)
	inj, ok := st.rt.opts.Host.(MessageInjector)
	if !ok || inj == nil {
		L.RaiseError("kumo.inject_message: injection is not available here")
		return 0
	}
	if err := inj.InjectMessage(st.callCtx(), msg); err != nil {
		L.RaiseError("kumo.inject_message: %s", err.Error())
	}
	return 0
}
