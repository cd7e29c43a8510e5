package runtime

import (
	"context"
	"sync"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
)

// taskCtx is the context of spawned tasks: it ends when the runtime
// closes.
type taskCtx struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
}

func (t *taskCtx) get(r *Runtime) context.Context {
	t.once.Do(func() {
		t.ctx, t.cancel = context.WithCancel(context.Background())
		r.own(closerFunc(func() error { t.cancel(); return nil }))
	})
	return t.ctx
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// kumoSpawnTask is kumo.spawn_task{event_name=..., args=...}: the event
// runs on its own goroutine, in a Lua state of its own, with args as its
// one argument; an error is logged and ends the task (KumoMTA's
// kumo.spawn_task page). Under --validate nothing is spawned.
func (st *state) kumoSpawnTask(L *lua.LState) int {
	v := st.tableArg(L)
	o := config.NewObject(v, v, "struct TaskParams", "event_name", "args")
	var event string
	o.Str("event_name", &event)
	args, hasArgs := o.Get("args")
	if o.Err() == nil && event == "" {
		o.Fail("missing field `event_name`")
	}
	if o.Err() != nil {
		L.RaiseError("kumo.spawn_task: %s", o.Err().Error())
	}
	r := st.rt
	if r.opts.Validating {
		return 0
	}
	ctx := r.tasks.get(r)
	go func() {
		var err error
		if hasArgs {
			_, err = r.Call(ctx, event, args)
		} else {
			_, err = r.Call(ctx, event)
		}
		if err != nil && ctx.Err() == nil {
			r.log.Error().Err(err).Str("event", event).Msg("spawned task failed")
		}
	}()
	return 0
}

// kumoMakeMessage is kumo.make_message(SENDER, RECIPIENT, BODY): a message
// in memory only (KumoMTA's kumo.make_message page).
func (st *state) kumoMakeMessage(L *lua.LState) int {
	sender := st.valueToAddress(L, L.Get(1), 1)
	rcpt := st.valueToAddress(L, L.Get(2), 2)
	body := L.CheckString(3)
	st.rt.idsOnce.Do(func() { st.rt.ids = message.NewIDGenerator() })
	m := message.New(st.rt.ids, sender, []message.Address{rcpt}, []byte(body))
	L.Push(st.newMessage(m))
	return 1
}
