package runtime

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"

	lua "github.com/yuin/gopher-lua"
)

// calledEvents are the KumoMTA events kumogo fires, with a note where
// kumogo's behaviour differs. Events of KumoMTA's other daemons are in
// otherDaemonEvents. TestCalledEventsAreFired checks every name here
// against the code that fires it.
var calledEvents = map[string]string{
	"pre_init": "", "init": "", "validate_config": "",
	"get_listener_domain": "", "get_queue_config": "", "get_egress_path_config": "",
	"get_egress_pool": "", "get_egress_source": "", "requeue_message": "",
	"shutdown_logging": "", "smtp_client_rewrite_delivery_status": "",
	"smtp_server_auth_plain": "", "smtp_server_connection_accepted": "",
	"smtp_server_data": "", "smtp_server_ehlo": "", "smtp_server_mail_from": "",
	"smtp_server_message_deferred_inject": "", "smtp_server_message_received": "",
	"smtp_server_rcpt_to": "", "smtp_server_rewrite_response": "",
	"smtp_server_split_transaction": "", "spool_message_enumerated": "",
	"throttle_insert_ready_queue": "", "rebind_message": "", "should_enqueue_log_record": "",
	"http_server_validate_auth_basic": "", "http_server_validate_auth_bearer": "", "http_message_generated": "",
	"tsa_init": "fired by `kumogo tsa` (KumoMTA's tsa-daemon)", "tsa_load_shaping_data": "fired by `kumogo tsa`",
}

// otherDaemonEvents belong to KumoMTA's proxy-server (the tsa-daemon's
// events are fired by `kumogo tsa`).
var otherDaemonEvents = map[string]bool{
	"proxy_init": true, "proxy_server_auth_rfc1929": true,
}

// noEffectFunctions are accepted so that KumoMTA policies load, but
// change nothing in kumogo (thread counts and tuning of KumoMTA's own
// runtime).
var noEffectFunctions = map[string]bool{
	"kumo.set_smtpsrv_threads": true, "kumo.set_httpinject_threads": true, "kumo.set_readyq_threads": true,
	"kumo.set_qmaint_threads": true, "kumo.set_ready_qmaint_threads": true, "kumo.set_spoolin_threads": true,
	"kumo.set_logging_threads": true, "kumo.set_httpinject_recipient_rate_limit": true,
	"kumo.set_lruttl_cache_capacity": true, "kumo.set_memory_hard_limit": true, "kumo.set_memory_soft_limit": true,
	"kumo.set_memory_low_thresh": true, "kumo.suspend_delivery_when_spool_unhealthy": true,
	"kumo.set_lua_gc_on_put": true, "kumo.set_diagnostic_log_filter": true,
	"kumo.get_memory_hard_limit": true, "kumo.get_memory_soft_limit": true, "kumo.get_memory_low_thresh": true,
	"kumo.dkim.set_signing_threads": true,
}

// notProvided is the error text for a KumoMTA function kumogo lacks.
func notProvided(full string) string {
	return full + " is not provided by kumogo (a KumoMTA function; see docs/compat.md)"
}

// apiSets is KumoMTA's function names by module, as sets, computed once
// (immutable data shared by all states).
var apiSets = sync.OnceValue(func() map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for mod, names := range apiFunctions() {
		set := make(map[string]bool, len(names))
		for _, n := range names {
			set[n] = true
		}
		out[mod] = set
	}
	return out
})

// apiStub is where a table's missing KumoMTA names are looked up: the
// prefix of their full names and the names.
type apiStub struct {
	prefix string
	names  map[string]bool
}

// installAPIStubs makes every KumoMTA function that kumogo does not
// register fail by its full name when called, instead of "attempt to call
// a non-function object": kumo and each of its module tables (made empty
// where kumogo has none, and registered in package.loaded) share a
// metatable whose __index knows KumoMTA's names; other names stay nil.
// Message and connection metadata methods are treated the same way.
func (st *state) installAPIStubs(kumo *lua.LTable) {
	L := st.L
	loaded := L.GetField(L.Get(lua.RegistryIndex), "_LOADED").(*lua.LTable)
	sets := apiSets()
	st.stubs = make(map[*lua.LTable]apiStub, len(sets)+2)
	mt := L.CreateTable(0, 1)
	mt.RawSetString("__index", L.NewFunction(st.stubLookup))
	install := func(t *lua.LTable, prefix string, names map[string]bool) {
		if L.GetMetatable(t) != lua.LNil {
			return // a module with its own metatable keeps it
		}
		st.stubs[t] = apiStub{prefix, names}
		L.SetMetatable(t, mt)
	}
	st.installLazyModules(kumo)
	for mod, names := range sets {
		if _, lazy := lazyModules[strings.TrimPrefix(mod, "kumo.")]; lazy && kumo.RawGetString(mod[5:]) == lua.LNil {
			continue // built with its stubs on first use (lazy.go)
		}
		t := kumo
		if mod != "kumo" {
			t = moduleTable(L, kumo, strings.TrimPrefix(mod, "kumo."))
			if loaded.RawGetString(mod) == lua.LNil {
				loaded.RawSetString(mod, t)
			}
		}
		install(t, mod+".", names)
	}
	if idx, ok := st.msgMT.RawGetString("__index").(*lua.LTable); ok {
		install(idx, "Message:", messageMethodSet())
	}
	if idx, ok := st.connMT.RawGetString("__index").(*lua.LTable); ok {
		install(idx, "ConnectionMeta:", connMethodSet())
	}
}

var (
	messageMethodSet = sync.OnceValue(func() map[string]bool { return nameSet(kumoAPIMessageMethods) })
	connMethodSet    = sync.OnceValue(func() map[string]bool { return nameSet(kumoAPIConnMethods) })
)

func nameSet(names []string) map[string]bool {
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	return out
}

// stubLookup is the shared __index: a KumoMTA name gives a function that
// raises "<full name> is not provided by kumogo", anything else nil.
func (st *state) stubLookup(L *lua.LState) int {
	t, _ := L.Get(1).(*lua.LTable)
	k, ok := L.Get(2).(lua.LString)
	if ok {
		if m, built := st.openLazy(t, string(k)); built {
			L.Push(m)
			return 1
		}
	}
	stub, known := st.stubs[t]
	if !ok || !known || !stub.names[string(k)] {
		L.Push(lua.LNil)
		return 1
	}
	full := stub.prefix + string(k)
	L.Push(L.NewFunction(func(L *lua.LState) int {
		L.RaiseError("%s", notProvided(full))
		return 0
	}))
	return 1
}

// moduleTable returns kumo.a.b..., creating empty tables on the way.
func moduleTable(L *lua.LState, kumo *lua.LTable, dotted string) *lua.LTable {
	t := kumo
	for _, part := range strings.Split(dotted, ".") {
		next, ok := t.RawGetString(part).(*lua.LTable)
		if !ok {
			next = L.CreateTable(0, 0) // most stay empty: no preallocation
			t.RawSetString(part, next)
		}
		t = next
	}
	return t
}

func apiKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// APIStatus is kumogo's status of one KumoMTA name.
type APIStatus struct {
	Kind   string // "function", "event", "method"
	Name   string // full name: kumo.dns.lookup_mx, Message:set_meta, init
	Status string // "provided", "no effect", "not provided", "other daemon"
}

// APIReport lists every KumoMTA function, event and method named in
// KumoMTA's reference documentation with kumogo's status, read from the
// tables a fresh Lua state registers (so the report cannot drift from the
// runtime). modules are the bundled helper modules.
func APIReport(modules fs.FS) ([]APIStatus, error) {
	r, err := New(Options{PolicyPath: "api.lua", Source: []byte(""), Validating: true, Modules: modules,
		ModulePrefixes: []string{}, Getenv: func(string) string { return "" }})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	st, err := r.get(context.Background())
	if err != nil {
		return nil, err
	}
	defer r.put(st, nil)
	L := st.L
	kumo := L.GetGlobal("kumo").(*lua.LTable)
	var out []APIStatus
	funcs := apiFunctions()
	for _, mod := range apiKeys(funcs) {
		t := kumo
		if mod != "kumo" {
			if m, ok := L.GetField(kumo, strings.TrimPrefix(mod, "kumo.")).(*lua.LTable); ok && !strings.Contains(mod[5:], ".") {
				t = m // builds a lazy module
			} else {
				t = moduleTable(L, kumo, strings.TrimPrefix(mod, "kumo."))
			}
		}
		for _, n := range funcs[mod] {
			full := mod + "." + n
			s := "not provided"
			switch {
			case noEffectFunctions[full]:
				s = "no effect"
			case t.RawGetString(n) != lua.LNil:
				s = "provided"
			}
			out = append(out, APIStatus{"function", full, s})
		}
	}
	for _, ev := range kumoAPIEvents {
		s := "not fired"
		if _, ok := calledEvents[ev]; ok {
			s = "provided"
		} else if otherDaemonEvents[ev] {
			s = "other daemon"
		}
		out = append(out, APIStatus{"event", ev, s})
	}
	methods := func(prefix string, mt *lua.LTable, names []string) {
		idx, _ := mt.RawGetString("__index").(*lua.LTable)
		for _, n := range names {
			s := "not provided"
			if idx != nil && idx.RawGetString(n) != lua.LNil {
				s = "provided"
			}
			out = append(out, APIStatus{"method", prefix + n, s})
		}
	}
	methods("Message:", st.msgMT, kumoAPIMessageMethods)
	methods("ConnectionMeta:", st.connMT, kumoAPIConnMethods)
	for _, typ := range apiKeys(kumoAPIObjectMethods) {
		for _, n := range kumoAPIObjectMethods[typ] {
			out = append(out, APIStatus{"method", typ + ":" + n, "not provided"})
		}
	}
	for _, n := range kumoAPIAddressFields {
		out = append(out, APIStatus{"method", "EnvelopeAddress." + n, "provided"})
	}
	return out, nil
}

// CompatMarkdown renders an APIReport as docs/compat.md.
func CompatMarkdown(rep []APIStatus) string {
	var b strings.Builder
	b.WriteString("# KumoMTA API compatibility\n\n")
	b.WriteString("Generated by `kumogo --dump-api` from kumogo's own Lua registry; do not edit.\n")
	b.WriteString("Names are those of KumoMTA's reference documentation. A function marked\n")
	b.WriteString("*not provided* fails when called with its full name and \"not provided by kumogo\";\n")
	b.WriteString("*no effect* is accepted and changes nothing in kumogo; an event marked *not fired*\n")
	b.WriteString("may have a handler but kumogo never calls it.\n")
	counts := map[string]map[string]int{}
	for _, s := range rep {
		if counts[s.Kind] == nil {
			counts[s.Kind] = map[string]int{}
		}
		counts[s.Kind][s.Status]++
	}
	b.WriteString("\n| kind | " + "status | count |\n|---|---|---|\n")
	for _, k := range []string{"function", "event", "method"} {
		for _, s := range apiKeys(counts[k]) {
			fmt.Fprintf(&b, "| %s | %s | %d |\n", k, s, counts[k][s])
		}
	}
	section := ""
	for _, s := range rep {
		sec := s.Kind
		if sec == "function" {
			sec = s.Name[:strings.LastIndexByte(s.Name, '.')]
		}
		if sec != section {
			section = sec
			title := "`" + sec + "`"
			switch sec {
			case "event":
				title = "Events"
			case "method":
				title = "Methods"
			}
			fmt.Fprintf(&b, "\n## %s\n\n| name | status |\n|---|---|\n", title)
		}
		fmt.Fprintf(&b, "| `%s` | %s |\n", s.Name, s.Status)
	}
	return b.String()
}

// warnUnfiredEvents logs each KumoMTA event the policy handles that
// kumogo never fires, so that a handler that silently never runs is
// seen at --validate and at start.
func (r *Runtime) warnUnfiredEvents() {
	for _, ev := range kumoAPIEvents {
		if _, fired := calledEvents[ev]; r.handlers[ev] && !fired {
			r.log.Warn().Str("event", ev).Msg("the policy handles " + ev + ", which kumogo never fires (docs/compat.md)")
		}
	}
}
