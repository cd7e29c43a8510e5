package runtime

import (
	"context"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/event"
	"github.com/kumogo/kumogo/internal/jinja"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
)

// Log hook events (KumoMTA's should_enqueue_log_record page, and
// configure_log_disposition_hook's log_disposition_<name>).
const (
	EvShouldEnqueueLogRecord = "should_enqueue_log_record"
	evLogDispositionPrefix   = "log_disposition_"
)

// LogHookHost is the optional part of Host that receives the hooks of
// kumo.configure_log_hook and kumo.configure_log_disposition_hook.
type LogHookHost interface {
	ConfigureLogHook(ctx context.Context, h *config.LogHook) error
	ConfigureLogDispositionHook(ctx context.Context, h *config.LogHook) error
}

// decodeLogHook decodes a configure_log_hook table strictly; disposition
// hooks take the same keys.
func decodeLogHook(v any) (*config.LogHook, error) {
	h := config.DefaultLogHook()
	o := config.NewObject(v, v, "struct LogHookParams", "name", "back_pressure", "meta", "headers", "per_record", "deferred_spool")
	o.Str("name", &h.Name)
	o.Int("back_pressure", &h.BackPressure)
	o.StrList("meta", &h.Meta)
	o.StrList("headers", &h.Headers)
	o.Bool("deferred_spool", &h.DeferredSpool)
	if _, ok := o.Get("per_record"); ok {
		var m map[string]any
		o.Map("per_record", &m)
		if o.Err() == nil {
			h.PerRecord = make(map[string]config.PerRecord, len(m))
			for _, k := range sortedKeys(m) {
				if k != logrecord.AnyName {
					if _, err := logrecord.ParseType(k); err != nil {
						o.Fail("per_record: unknown record type `" + k + "`")
						break
					}
				}
				rec := config.PerRecord{Enable: true}
				r := config.NewObject(m[k], o.Input(), "struct LogRecordParams", "suffix", "log_dir", "enable", "template", "segment_header")
				r.Str("suffix", &rec.Suffix)
				r.Str("log_dir", &rec.LogDir)
				r.Bool("enable", &rec.Enable)
				r.Str("template", &rec.Template)
				r.Str("segment_header", &rec.SegmentHeader)
				if r.Err() == nil && rec.Template != "" {
					// compiled here too so that --validate reports it
					if _, err := jinja.Compile(rec.Template); err != nil {
						r.Fail("per_record." + k + ".template: " + err.Error())
					}
				}
				if r.Err() != nil {
					o.Merge(r)
					break
				}
				h.PerRecord[k] = rec
			}
		}
	}
	if o.Err() == nil && h.Name == "" {
		o.Fail("missing field `name`")
	}
	if o.Err() == nil && h.BackPressure <= 0 {
		o.Fail("invalid value: back_pressure must be at least 1")
	}
	if o.Err() != nil {
		return nil, o.Err()
	}
	return &h, nil
}

// logHookFunc is kumo.configure_log_hook or
// kumo.configure_log_disposition_hook: the table is checked also when
// validating, so a bad hook fails --validate; a name used twice is an
// error.
func (st *state) logHookFunc(fname string, disposition bool) lua.LGFunction {
	return func(L *lua.LState) int {
		if st.event != event.Init && st.event != event.PreInit {
			L.RaiseError("%s must be called from the init (or pre_init) event", fname)
		}
		h, err := decodeLogHook(st.tableArg(L))
		if err != nil {
			L.RaiseError("%s: %s", fname, err.Error())
		}
		key := fname + "\x00" + h.Name
		if _, dup := st.rt.hookNames.LoadOrStore(key, true); dup {
			L.RaiseError("%s: a hook named %q is already configured", fname, h.Name)
		}
		if disposition && len(st.handlers[evLogDispositionPrefix+h.Name]) == 0 {
			L.RaiseError("%s: no handler for the %s%s event is defined (register it with kumo.on before init runs)", fname, evLogDispositionPrefix, h.Name)
		}
		host, ok := st.host().(LogHookHost)
		if !ok {
			return 0
		}
		if disposition {
			err = host.ConfigureLogDispositionHook(st.callCtx(), h)
		} else {
			err = host.ConfigureLogHook(st.callCtx(), h)
		}
		if err != nil {
			L.RaiseError("%s: %s", fname, err.Error())
		}
		return 0
	}
}

// ShouldEnqueueLogRecord runs should_enqueue_log_record(msg, hook_name), a
// Multiple event. Without a handler, or when no handler returns a value,
// the record is not queued (KumoMTA's should_enqueue_log_record page).
func (r *Runtime) ShouldEnqueueLogRecord(ctx context.Context, msg *message.Message, hookName string) (bool, error) {
	if !r.handlers[EvShouldEnqueueLogRecord] {
		return false, nil
	}
	ok := false
	err := r.dispatch(ctx, EvShouldEnqueueLogRecord, func(st *state) []lua.LValue {
		return []lua.LValue{st.newMessage(msg), lua.LString(hookName)}
	}, func(_ *state, res []lua.LValue) error {
		if len(res) > 0 {
			ok = lua.LVAsBool(res[0])
		}
		return nil
	})
	return ok, err
}

// LogDisposition runs log_disposition_<name>(msg, record) for a
// disposition hook; record is the JSON log record as a table.
func (r *Runtime) LogDisposition(ctx context.Context, name string, msg *message.Message, record map[string]any) error {
	event := evLogDispositionPrefix + name
	if !r.handlers[event] {
		return nil
	}
	return r.dispatch(ctx, event, func(st *state) []lua.LValue {
		return []lua.LValue{st.newMessage(msg), st.fromGo(record)}
	}, nil)
}

// HasLogHookHandler reports whether should_enqueue_log_record has a
// handler (a log hook without one queues nothing).
func (r *Runtime) HasLogHookHandler() bool { return r.handlers[EvShouldEnqueueLogRecord] }
