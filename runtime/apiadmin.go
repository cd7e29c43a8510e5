package runtime

import (
	"context"
	"encoding/json"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/adminapi"
	"github.com/kumogo/kumogo/internal/event"
	"github.com/kumogo/kumogo/internal/message"
)

// QueueAdmin is the optional part of Host that serves kumo.api.admin.*:
// the scheduler's administration service, or an error while the spool is
// not started yet.
type QueueAdmin interface {
	QueueAdmin() (adminapi.Service, error)
}

// RebindMessage runs rebind_message(message, data) for a message an admin
// rebind selected; data is the request's data table.
func (r *Runtime) RebindMessage(ctx context.Context, msg *message.Message, data map[string]string) error {
	if !r.handlers[event.RebindMessage] {
		return nil
	}
	return r.dispatch(ctx, event.RebindMessage, func(st *state) []lua.LValue {
		t := st.L.CreateTable(0, len(data))
		for k, v := range data {
			t.RawSetString(k, lua.LString(v))
		}
		return []lua.LValue{st.newMessage(msg), t}
	}, nil)
}

// openAPIAdmin builds kumo.api.admin: bounce, suspend and
// suspend_ready_q, each with KumoMTA's create function (taking the table
// its HTTP endpoint takes and returning the new rule's id), list and
// delete(id) (true when the rule was in effect).
func (st *state) openAPIAdmin() *lua.LTable {
	L := st.L
	admin := L.NewTable()
	mod := func(name, create string, mk func(adminapi.Service, []byte) (string, error),
		list func(adminapi.Service) any, del func(adminapi.Service, string) (bool, error)) {
		t := L.NewTable()
		full := "kumo.api.admin." + name + "."
		t.RawSetString(create, L.NewFunction(func(L *lua.LState) int {
			svc := st.queueAdmin(L, full+create)
			req, err := st.toGo(L.CheckTable(1))
			if err != nil {
				L.RaiseError("%s%s: %s", full, create, err.Error())
			}
			b, _ := json.Marshal(req)
			id, err := mk(svc, b)
			if err != nil {
				L.RaiseError("%s%s: %s", full, create, err.Error())
			}
			L.Push(lua.LString(id))
			return 1
		}))
		t.RawSetString("list", L.NewFunction(func(L *lua.LState) int {
			svc := st.queueAdmin(L, full+"list")
			b, _ := json.Marshal(list(svc))
			var v any
			_ = json.Unmarshal(b, &v)
			L.Push(st.fromGo(v))
			return 1
		}))
		t.RawSetString("delete", L.NewFunction(func(L *lua.LState) int {
			svc := st.queueAdmin(L, full+"delete")
			ok, err := del(svc, L.CheckString(1))
			if err != nil {
				L.RaiseError("%sdelete: %s", full, err.Error())
			}
			L.Push(lua.LBool(ok))
			return 1
		}))
		admin.RawSetString(name, t)
	}
	ctx := func() context.Context { return st.callCtx() }
	mod("bounce", "bounce", func(s adminapi.Service, b []byte) (string, error) {
		var req adminapi.BounceV1Request
		if err := json.Unmarshal(b, &req); err != nil {
			return "", err
		}
		resp, err := s.Bounce(ctx(), req)
		return resp.ID, err
	}, func(s adminapi.Service) any { return s.ListBounces() }, adminapi.Service.CancelBounce)
	mod("suspend", "suspend", func(s adminapi.Service, b []byte) (string, error) {
		var req adminapi.SuspendV1Request
		if err := json.Unmarshal(b, &req); err != nil {
			return "", err
		}
		resp, err := s.Suspend(ctx(), req)
		return resp.ID, err
	}, func(s adminapi.Service) any { return s.ListSuspensions() }, adminapi.Service.CancelSuspension)
	mod("suspend_ready_q", "suspend", func(s adminapi.Service, b []byte) (string, error) {
		var req adminapi.SuspendReadyQueueV1Request
		if err := json.Unmarshal(b, &req); err != nil {
			return "", err
		}
		resp, err := s.SuspendReadyQueue(ctx(), req)
		return resp.ID, err
	}, func(s adminapi.Service) any { return s.ListReadyQueueSuspensions() }, adminapi.Service.CancelReadyQueueSuspension)
	return admin
}

// queueAdmin returns the host's administration service or raises.
func (st *state) queueAdmin(L *lua.LState, fn string) adminapi.Service {
	qa, ok := st.rt.opts.Host.(QueueAdmin)
	if !ok || qa == nil {
		L.RaiseError("%s: queue administration is not available here", fn)
		return nil
	}
	svc, err := qa.QueueAdmin()
	if err != nil {
		L.RaiseError("%s: %s", fn, err.Error())
		return nil
	}
	return svc
}
