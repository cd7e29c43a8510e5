package runtime

import (
	"context"
	"fmt"
	"os"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/rs/zerolog"
	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/duration"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// openKumo builds the kumo module for this state and registers it in
// package.loaded.
func (st *state) openKumo() *lua.LTable {
	L := st.L
	k := L.NewTable()
	L.SetFuncs(k, map[string]lua.LGFunction{
		"on":                             st.kumoOn,
		"get_event_registrars":           st.kumoGetEventRegistrars,
		"reject":                         st.kumoReject,
		"disconnect":                     st.kumoDisconnect,
		"log_error":                      st.logFunc(zerolog.ErrorLevel),
		"log_warn":                       st.logFunc(zerolog.WarnLevel),
		"log_info":                       st.logFunc(zerolog.InfoLevel),
		"log_debug":                      st.logFunc(zerolog.DebugLevel),
		"sleep":                          st.kumoSleep,
		"validation_failed":              st.kumoValidationFailed,
		"traceback":                      st.kumoTraceback,
		"start_esmtp_listener":           st.kumoStartESMTPListener,
		"start_http_listener":            st.kumoStartHTTPListener,
		"define_spool":                   st.kumoDefineSpool,
		"configure_local_logs":           st.kumoConfigureLocalLogs,
		"configure_log_hook":             st.logHookFunc("configure_log_hook", false),
		"configure_log_disposition_hook": st.logHookFunc("configure_log_disposition_hook", true),
		"make_listener_domain":           st.kumoMakeListenerDomain,
		"make_queue_config":              st.constructor(func(v any) (any, error) { return config.DecodeQueueConfig(v) }),
		"make_egress_path":               st.constructor(func(v any) (any, error) { return config.DecodeEgressPath(v) }),
		"make_egress_source":             st.constructor(func(v any) (any, error) { return config.DecodeEgressSource(v) }),
		"make_egress_pool":               st.constructor(func(v any) (any, error) { return config.DecodeEgressPool(v) }),
		"available_parallelism":          availableParallelism,
		"memoize":                        st.kumoMemoize,
		"make_throttle":                  st.kumoMakeThrottle,
		"spawn_task":                     st.kumoSpawnTask,
		"make_message":                   st.kumoMakeMessage,
		"inject_message":                 st.kumoInjectMessage,

		"configure_accounting_db_path":  st.kumoConfigureAccountingDBPath,
		"configure_bounce_classifier":   st.kumoConfigureBounceClassifier,
		"set_max_lua_context_use_count": st.kumoSetMaxUse,
		"set_max_lua_context_age":       st.kumoSetMaxAge,
		"set_max_spare_lua_contexts":    st.kumoSetMaxSpare,
	})
	L.SetFuncs(k, st.invokeFuncs())
	k.RawSetString("configure_redis_throttles", L.NewFunction(st.kumoConfigureRedisThrottles))
	// Tuning knobs that change nothing in kumogo but must exist so that
	// KumoMTA policies load.
	for _, name := range []string{
		"set_smtpsrv_threads", "set_httpinject_threads", "set_readyq_threads",
		"set_qmaint_threads", "set_ready_qmaint_threads", "set_spoolin_threads",
		"set_logging_threads", "set_httpinject_recipient_rate_limit",
		"set_lruttl_cache_capacity", "set_memory_hard_limit", "set_memory_soft_limit",
		"set_memory_low_thresh", "suspend_delivery_when_spool_unhealthy",
		"set_lua_gc_on_put", "set_diagnostic_log_filter",
	} {
		k.RawSetString(name, L.NewFunction(noop))
	}
	for _, name := range []string{"get_memory_hard_limit", "get_memory_soft_limit", "get_memory_low_thresh"} {
		k.RawSetString(name, L.NewFunction(func(L *lua.LState) int { L.Push(lua.LNil); return 1 }))
	}
	k.RawSetString("version", lua.LString(st.rt.version))
	st.openEpoch(k)

	serde := L.NewTable()
	L.SetFuncs(serde, map[string]lua.LGFunction{
		"json_encode":        st.jsonEncodeFunc(false),
		"json_encode_pretty": st.jsonEncodeFunc(true),
		"json_parse":         st.kumoJSONParse,
		"json_load":          st.kumoJSONLoad,
	})
	k.RawSetString("serde", serde)
	for _, name := range []string{"json_encode", "json_encode_pretty", "json_parse", "json_load"} {
		k.RawSetString(name, serde.RawGetString(name))
	}
	st.openSerdeData(k, serde)
	k.RawSetString("domain_map", st.openDomainMap())
	k.RawSetString("cidr", st.openCIDR())
	k.RawSetString("shaping", st.openShaping())

	dns := st.openDNS()
	dns.RawSetString("configure_test_mta_sts", L.NewFunction(st.dnsConfigureTestMTASTS))
	dns.RawSetString("set_mta_sts_enabled", L.NewFunction(st.dnsSetMTASTSEnabled))
	k.RawSetString("dns", dns)
	dkimT := st.openDKIM()
	k.RawSetString("dkim", dkimT)
	k.RawSetString("api", st.openAPI())
	k.RawSetString("generate_rfc3464_message", L.NewFunction(st.kumoGenerateRFC3464))
	spfT, dmarcT := st.openSPF(), st.openDMARC()
	k.RawSetString("spf", spfT)
	k.RawSetString("dmarc", dmarcT)

	loaded := L.GetField(L.Get(lua.RegistryIndex), "_LOADED").(*lua.LTable)
	loaded.RawSetString("kumo.dns", dns)
	loaded.RawSetString("kumo.dkim", dkimT)
	loaded.RawSetString("kumo.spf", spfT)
	loaded.RawSetString("kumo.dmarc", dmarcT)
	loaded.RawSetString("kumogo.mail_auth", st.openMailAuthExtras())
	loaded.RawSetString("kumo", k)
	if h := st.rt.opts.TSA; h != nil {
		loaded.RawSetString("tsa", st.openTSA(h))
	}
	loaded.RawSetString("kumo.serde", serde)
	loaded.RawSetString("kumogo.extras_data", st.openExtrasData())
	return k
}

func noop(*lua.LState) int { return 0 }

func availableParallelism(L *lua.LState) int {
	L.Push(lua.LNumber(goruntime.NumCPU()))
	return 1
}

// kumoOn is kumo.on(event, fn).
func (st *state) kumoOn(L *lua.LState) int {
	event := L.CheckString(1)
	fn := L.CheckFunction(2)
	if st.event != "" && st.event != "main" {
		L.RaiseError("kumo.on(%q) is not allowed while the %s event is executing: register handlers at the top level of the policy", event, st.event)
	}
	stack := luaStack(L, 1)
	if !multipleEvents[event] && len(st.handlers[event]) > 0 {
		prev := "?"
		if regs := st.registrars[event]; len(regs) > 0 && len(regs[0]) > 0 {
			prev = regs[0][0]
		}
		L.RaiseError("%s event already has a handler defined at %s", event, prev)
	}
	st.handlers[event] = append(st.handlers[event], fn)
	st.registrars[event] = append(st.registrars[event], stack)
	return 0
}

// luaStack lists "src:line" for each Lua frame from level up.
func luaStack(L *lua.LState, level int) []string {
	var out []string
	for i := level; i < level+32; i++ {
		dbg, ok := L.GetStack(i)
		if !ok {
			break
		}
		if _, err := L.GetInfo("Sl", dbg, lua.LNil); err != nil {
			break
		}
		if dbg.What == "G" || dbg.CurrentLine < 0 {
			continue
		}
		out = append(out, fmt.Sprintf("%s:%d", dbg.Source, dbg.CurrentLine))
	}
	return out
}

// kumoGetEventRegistrars returns one list of "src:line" per registration.
func (st *state) kumoGetEventRegistrars(L *lua.LState) int {
	regs := st.registrars[L.CheckString(1)]
	t := L.CreateTable(len(regs), 0)
	for i, stack := range regs {
		t.RawSetInt(i+1, st.fromGo(stack))
	}
	L.Push(t)
	return 1
}

// kumoTraceback returns the call stack as an array of frame tables.
func (st *state) kumoTraceback(L *lua.LState) int {
	level := L.OptInt(1, 1)
	t := L.NewTable()
	for i := level; i < level+64; i++ {
		dbg, ok := L.GetStack(i)
		if !ok {
			break
		}
		if _, err := L.GetInfo("Sln", dbg, lua.LNil); err != nil {
			break
		}
		f := L.CreateTable(0, 5)
		f.RawSetString("event", lua.LString(st.event))
		f.RawSetString("name", lua.LString(dbg.Name))
		f.RawSetString("source", lua.LString(dbg.Source))
		f.RawSetString("short_src", lua.LString(dbg.Source))
		f.RawSetString("curr_line", lua.LNumber(dbg.CurrentLine))
		f.RawSetString("what", lua.LString(dbg.What))
		t.Append(f)
	}
	L.Push(t)
	return 1
}

// raiseRejection raises rej as a Lua error value.
func (st *state) raiseRejection(L *lua.LState, rej *smtpreply.Rejection) {
	L.Error(&lua.LUserData{Value: rej, Metatable: st.rejMT}, 0)
}

func checkCode(L *lua.LState) int {
	code := L.CheckInt(1)
	if code < 200 || code > 599 {
		L.ArgError(1, "SMTP status code must be between 200 and 599")
	}
	return code
}

// kumoReject is kumo.reject(code, message).
func (st *state) kumoReject(L *lua.LState) int {
	code := checkCode(L)
	msg := L.CheckString(2)
	st.raiseRejection(L, &smtpreply.Rejection{Code: code, Text: msg, Mode: smtpreply.If421})
	return 0
}

// kumoDisconnect is kumo.disconnect(code, message, mode?).
func (st *state) kumoDisconnect(L *lua.LState) int {
	code := checkCode(L)
	msg := L.CheckString(2)
	mode := smtpreply.ForceDisconnect
	switch m := L.OptString(3, "ForceDisconnect"); m {
	case "ForceDisconnect":
	case "FollowWith421":
		mode = smtpreply.FollowWith421
	case "If421":
		mode = smtpreply.If421
	default:
		L.ArgError(3, "unknown disconnect mode "+m+", expected ForceDisconnect, FollowWith421 or If421")
	}
	st.raiseRejection(L, &smtpreply.Rejection{Code: code, Text: msg, Mode: mode})
	return 0
}

// logFunc builds kumo.log_<level>(...).
func (st *state) logFunc(level zerolog.Level) lua.LGFunction {
	return func(L *lua.LState) int {
		ev := st.rt.log.WithLevel(level)
		if ev == nil {
			return 0
		}
		n := L.GetTop()
		parts := make([]string, n)
		for i := 1; i <= n; i++ {
			parts[i-1] = L.ToStringMeta(L.Get(i)).String()
		}
		ev.Str("target", "lua").Str("src", callerLocation(L)).Msg(strings.Join(parts, " "))
		return 0
	}
}

// kumoSleep is kumo.sleep(seconds); it ends early with an error when the
// event's context is done.
func (st *state) kumoSleep(L *lua.LState) int {
	d, err := duration.FromSeconds(float64(L.CheckNumber(1)))
	if err != nil {
		L.ArgError(1, err.Error())
	}
	ctx := st.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		L.RaiseError("kumo.sleep interrupted: %s", context.Cause(ctx).Error())
	}
	return 0
}

func (st *state) kumoValidationFailed(L *lua.LState) int {
	st.rt.validationFailed.Store(true)
	return 0
}

func (st *state) kumoSetMaxUse(L *lua.LState) int {
	n := L.CheckInt(1)
	if n < 1 {
		L.ArgError(1, "must be at least 1")
	}
	st.rt.maxUse.Store(int64(n))
	return 0
}

func (st *state) kumoSetMaxAge(L *lua.LState) int {
	d, err := duration.FromSeconds(float64(L.CheckNumber(1)))
	if err != nil || d <= 0 {
		L.ArgError(1, "must be a positive number of seconds")
	}
	st.rt.maxAge.Store(int64(d))
	return 0
}

func (st *state) kumoSetMaxSpare(L *lua.LState) int {
	n := L.CheckInt(1)
	if n < 0 {
		L.ArgError(1, "must not be negative")
	}
	st.rt.maxSpare.Store(int64(n))
	return 0
}

func (st *state) jsonEncodeFunc(pretty bool) lua.LGFunction {
	return func(L *lua.LState) int {
		v, err := st.toGo(L.CheckAny(1))
		if err != nil {
			L.RaiseError("json_encode: %s", err.Error())
		}
		v = configsAsMaps(v)
		s, err := jsonEncode(v, pretty)
		if err != nil {
			L.RaiseError("json_encode: %s", err.Error())
		}
		L.Push(lua.LString(s))
		return 1
	}
}

func (st *state) kumoJSONParse(L *lua.LState) int {
	v, err := jsonParse([]byte(L.CheckString(1)))
	if err != nil {
		L.RaiseError("json_parse: %s", err.Error())
	}
	L.Push(st.fromGo(v))
	return 1
}

func (st *state) kumoJSONLoad(L *lua.LState) int {
	p := L.CheckString(1)
	b, err := os.ReadFile(p)
	if err != nil {
		L.RaiseError("json_load: %s", err.Error())
	}
	v, err := jsonParse(b)
	if err != nil {
		L.RaiseError("json_load %s: %s", p, err.Error())
	}
	L.Push(st.fromGo(v))
	return 1
}

// tableArg converts argument 1 (a table) to a Go value for decoding.
func (st *state) tableArg(L *lua.LState) any {
	v, err := st.toGo(L.CheckAny(1))
	if err != nil {
		L.RaiseError("deserialize error: %s", err.Error())
	}
	return v
}

// host returns the Host to call, or nil when calls are no-ops.
func (st *state) host() Host {
	if st.rt.opts.Validating {
		return nil
	}
	return st.rt.opts.Host
}

func (st *state) callCtx() context.Context {
	if st.ctx != nil {
		return st.ctx
	}
	return context.Background()
}

func (st *state) kumoStartESMTPListener(L *lua.LState) int {
	l, err := config.DecodeESMTPListener(st.tableArg(L), st.rt.hostname)
	if err != nil {
		L.RaiseError("start_esmtp_listener: %s", err.Error())
	}
	if h := st.host(); h != nil {
		if err := h.StartESMTPListener(st.callCtx(), l); err != nil {
			L.RaiseError("start_esmtp_listener: %s", err.Error())
		}
	}
	return 0
}

func (st *state) kumoStartHTTPListener(L *lua.LState) int {
	l, err := config.DecodeHTTPListener(st.tableArg(L), st.rt.hostname)
	if err != nil {
		L.RaiseError("start_http_listener: %s", err.Error())
	}
	if h := st.host(); h != nil {
		if err := h.StartHTTPListener(st.callCtx(), l); err != nil {
			L.RaiseError("start_http_listener: %s", err.Error())
		}
	}
	return 0
}

func (st *state) kumoDefineSpool(L *lua.LState) int {
	s, err := config.DecodeSpool(st.tableArg(L))
	if err != nil {
		L.RaiseError("define_spool: %s", err.Error())
	}
	if h := st.host(); h != nil {
		if err := h.DefineSpool(st.callCtx(), s); err != nil {
			L.RaiseError("define_spool: %s", err.Error())
		}
	}
	return 0
}

func (st *state) kumoConfigureLocalLogs(L *lua.LState) int {
	l, err := config.DecodeLocalLogs(st.tableArg(L))
	if err != nil {
		L.RaiseError("configure_local_logs: %s", err.Error())
	}
	if h := st.host(); h != nil {
		if err := h.ConfigureLocalLogs(st.callCtx(), l); err != nil {
			L.RaiseError("configure_local_logs: %s", err.Error())
		}
	}
	return 0
}

func (st *state) kumoConfigureAccountingDBPath(L *lua.LState) int {
	p := L.CheckString(1)
	if h := st.host(); h != nil {
		if err := h.ConfigureAccountingDBPath(st.callCtx(), p); err != nil {
			L.RaiseError("configure_accounting_db_path: %s", err.Error())
		}
	}
	return 0
}

func (st *state) kumoMakeListenerDomain(L *lua.LState) int {
	d, err := config.DecodeListenerDomain(st.tableArg(L))
	if err != nil {
		L.RaiseError("%s", err.Error())
	}
	L.Push(st.newConfigObject(d))
	return 1
}

// constructor builds a kumo.make_* function: the table argument is
// decoded strictly and wrapped as a read-only configuration object.
func (st *state) constructor(decode func(any) (any, error)) lua.LGFunction {
	return func(L *lua.LState) int {
		v, err := decode(st.tableArg(L))
		if err != nil {
			L.RaiseError("%s", err.Error())
		}
		L.Push(st.newConfigObject(v))
		return 1
	}
}
