package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/smtpreply"
)

// VM sizing. The registry is the value stack; it grows in large steps up
// to a ceiling so that big table.concat/unpack calls work without paying
// for a large registry in every pooled state.
const (
	registrySize     = 2048
	registryMaxSize  = 1 << 20
	registryGrowStep = 1024
	callStackSize    = 120
)

// state is one Lua state with its Go-side caches. It is used by one
// goroutine at a time (borrowed from the pool for one event).
type state struct {
	rt      *Runtime
	L       *lua.LState
	created time.Time
	uses    int64
	epoch   uint64 // configuration epoch the state was made in

	// handlers and registrars are filled by kumo.on while the policy's top
	// level runs.
	handlers   map[string][]*lua.LFunction
	registrars map[string][][]string

	// per-call fields
	ctx        context.Context
	event      string // event being executed, "" at top level
	eventValue string // last value written to _KUMO_CURRENT_EVENT
	withCtx    bool
	began      time.Time        // when the event started (Options.EventLatency)
	params     int              // arguments the running handler can see (visibleParams)
	live       []*lua.LUserData // handles to invalidate when the event ends

	msgMT, addrMT, connMT, rejMT, cfgMT, tdMT *lua.LTable
	dkimMeta                                  *lua.LTable // DKIM signers (dkimMT), made on first use
	throttleMT                                *lua.LTable // kumo.make_throttle objects, made on first use
	timeMT                                    *lua.LTable // kumo.time Time objects, made on first use

	next lua.LValue // the original next, for __pairs iterators

	stubs map[*lua.LTable]apiStub // tables whose missing KumoMTA names fail by name (compatapi.go)
	kumo  *lua.LTable             // the kumo module, where lazy modules are built (lazy.go)

	boxed map[string]any // boxString's cache
	strs  strCache       // Lua strings of the policy-extras builtins (strcache.go)

	// reused event arguments (escape.go)
	handler       *lua.LFunction // the running handler (single)
	msgUD, connUD *lua.LUserData
	reuse         map[argKey]bool
}

// newState creates a sandboxed state and runs the compiled policy in it.
func (r *Runtime) newState() (*state, error) {
	r.loads.Add(1)
	L := lua.NewState(lua.Options{
		SkipOpenLibs:        true,
		CallStackSize:       callStackSize,
		RegistrySize:        registrySize,
		RegistryMaxSize:     registryMaxSize,
		RegistryGrowStep:    registryGrowStep,
		MinimizeStackMemory: true,
	})
	st := &state{
		rt:         r,
		L:          L,
		created:    time.Now(),
		epoch:      r.epochN.Load(),
		handlers:   make(map[string][]*lua.LFunction, 8),
		registrars: make(map[string][][]string, 8),
		ctx:        context.Background(),
	}
	if err := st.openLibs(); err != nil {
		L.Close()
		return nil, fmt.Errorf("runtime: opening libraries: %w", err)
	}
	st.registerTypes()
	kumo := st.openKumo()
	st.installAPIStubs(kumo)
	L.SetGlobal("kumo", kumo)
	if r.opts.Validating {
		L.SetGlobal("_VALIDATING_CONFIG", lua.LTrue)
	}
	st.openMemoryFuncs(kumo)
	L.Push(L.NewFunctionFromProto(r.policyProto()))
	err := st.protectedCall(0, 0)
	st.ctx = nil
	L.SetTop(0)
	if err != nil {
		L.Close()
		return nil, fmt.Errorf("runtime: loading policy: %w", err)
	}
	return st, nil
}

// openLibs opens Lua's whole standard library, as KumoMTA does: a policy
// is trusted configuration (io, os, dofile, loadfile, load, debug are all
// there; DESIGN.md bounds resources, not features), plus the Lua 5.3/5.4
// shims gopher-lua lacks.
func (st *state) openLibs() error {
	L := st.L
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.IoLibName, lua.OpenIo},
		{lua.OsLibName, lua.OpenOs},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
		{lua.DebugLibName, lua.OpenDebug},
		{lua.CoroutineLibName, lua.OpenCoroutine},
	} {
		L.Push(L.NewFunction(lib.fn))
		L.Push(lua.LString(lib.name))
		if err := L.PCall(1, 0, nil); err != nil {
			return fmt.Errorf("%s: %w", lib.name, err)
		}
	}
	g := L.G.Global
	g.RawSetString("_printregs", lua.LNil)
	g.RawSetString("print", L.NewFunction(st.luaPrint))
	// load takes a string or a reader function, a chunk name, a mode and
	// an environment, as in Lua 5.4 (gopher-lua's takes a function only).
	g.RawSetString("load", L.NewFunction(luaLoad))
	// os.tmpname creates the file, as C Lua's mkstemp-based one does
	// (KumoMTA's sink.lua passes it to configure_accounting_db_path).
	osT := L.GetGlobal("os").(*lua.LTable)
	osT.RawSetString("tmpname", L.NewFunction(osTmpname))

	// pairs honours __pairs (Lua 5.2+), which configuration objects use.
	st.next = g.RawGetString("next")
	rawPairs := g.RawGetString("pairs")
	g.RawSetString("pairs", L.NewFunction(func(L *lua.LState) int {
		v := L.CheckAny(1)
		fn := L.GetMetaField(v, "__pairs")
		if fn == lua.LNil {
			fn = rawPairs
		}
		L.Push(fn)
		L.Push(v)
		L.Call(1, 3)
		return 3
	}))

	loaded := L.GetField(L.Get(lua.RegistryIndex), "_LOADED").(*lua.LTable)

	// table: Lua 5.2+ helpers.
	tbl := L.GetGlobal("table").(*lua.LTable)
	tbl.RawSetString("unpack", g.RawGetString("unpack"))
	tbl.RawSetString("pack", L.NewFunction(tablePack))

	// string: rep charged to the state's memory limit (limits.go).
	str := L.GetGlobal("string").(*lua.LTable)
	str.RawSetString("rep", L.NewFunction(strRep))

	// math: Lua 5.3 integer helpers.
	m := L.GetGlobal("math").(*lua.LTable)
	m.RawSetString("type", L.NewFunction(mathType))
	m.RawSetString("tointeger", L.NewFunction(mathToInteger))
	m.RawSetString("maxinteger", lua.LNumber(1<<53))
	m.RawSetString("mininteger", lua.LNumber(-(1 << 53)))

	u := openUTF8(L)
	g.RawSetString("utf8", u)
	loaded.RawSetString("utf8", u)

	st.openPackage()
	return nil
}

// luaPrint sends print(...) to the log instead of stdout.
func (st *state) luaPrint(L *lua.LState) int {
	n := L.GetTop()
	parts := make([]string, n)
	for i := 1; i <= n; i++ {
		parts[i-1] = L.ToStringMeta(L.Get(i)).String()
	}
	st.rt.log.Info().Str("src", callerLocation(L)).Msg(strings.Join(parts, "\t"))
	return 0
}

// callerLocation is "file:line" of the Lua code calling the current Go
// function.
func callerLocation(L *lua.LState) string {
	return strings.TrimSuffix(L.Where(1), ":")
}

// begin prepares the state for running event under ctx.
func (st *state) begin(ctx context.Context, event string) {
	st.ctx = ctx
	st.event = event
	if st.rt.opts.EventLatency != nil {
		st.began = time.Now()
	}
	if st.eventValue != event {
		st.L.SetGlobal("_KUMO_CURRENT_EVENT", lua.LString(event))
		st.eventValue = event
	}
	if _, ok := ctx.Deadline(); ok {
		st.L.SetContext(ctx)
		st.withCtx = true
	}
}

// end finishes an event: invalidates the userdata handed to it and clears
// the stack.
func (st *state) end() {
	if st.withCtx {
		st.L.RemoveContext()
		st.withCtx = false
	}
	if f := st.rt.opts.EventLatency; f != nil && st.event != "" {
		f(st.event, time.Since(st.began))
	}
	for i, ud := range st.live {
		ud.Value = nil
		st.live[i] = nil
	}
	st.live = st.live[:0]
	st.event = ""
	st.ctx = nil
	st.handler = nil
	st.L.SetTop(0)
}

// pcall calls the function at stack position -(nargs+1) in protected mode
// and translates kumo.reject/kumo.disconnect into *smtpreply.Rejection.
func (st *state) pcall(nargs, nret int) error {
	err := st.protectedCall(nargs, nret)
	if err == nil {
		return nil
	}
	var apiErr *lua.ApiError
	if errors.As(err, &apiErr) && !st.L.MemoryLimitExceeded() {
		if ud, ok := apiErr.Object.(*lua.LUserData); ok {
			if rej, ok := ud.Value.(*smtpreply.Rejection); ok {
				return rej
			}
		}
	}
	return err
}

// callEvent runs every handler of a Multiple event until one returns a
// value, or the handler of a Single event. args are pushed for each call;
// the winning results are converted to Go values.
func (st *state) callEvent(ctx context.Context, event string, args []lua.LValue) ([]any, error) {
	fns := st.handlers[event]
	if len(fns) == 0 {
		return nil, nil
	}
	L := st.L
	st.begin(ctx, event)
	defer st.end()
	for _, fn := range fns {
		base := L.GetTop()
		L.Push(fn)
		for _, a := range args {
			L.Push(a)
		}
		if err := st.pcall(len(args), lua.MultRet); err != nil {
			return nil, err
		}
		n := L.GetTop() - base
		if n == 0 || (n == 1 && L.Get(-1) == lua.LNil) {
			L.SetTop(base)
			continue
		}
		out := make([]any, n)
		for j := 0; j < n; j++ {
			v, err := st.toGo(L.Get(base + 1 + j))
			if err != nil {
				return nil, fmt.Errorf("result %d of %s: %w", j+1, event, err)
			}
			out[j] = v
		}
		L.SetTop(base)
		return out, nil
	}
	return nil, nil
}

// Call runs event with Go arguments and returns its results as Go values
// (see toGo). Arguments may be *message.Message, *message.ConnMeta,
// message.Address or JSON-style values. Multiple events chain as in
// KumoMTA; an event without handlers returns nil, nil. kumo.reject becomes
// a *smtpreply.Rejection error.
func (r *Runtime) Call(ctx context.Context, event string, args ...any) ([]any, error) {
	if !r.handlers[event] {
		return nil, nil
	}
	st, err := r.get(ctx)
	if err != nil {
		return nil, err
	}
	largs := make([]lua.LValue, len(args))
	for i, a := range args {
		largs[i] = st.fromGoArg(a)
	}
	out, err := st.callEvent(ctx, event, largs)
	r.put(st, err)
	return out, wrapEventErr(event, err)
}

// wrapEventErr annotates a Lua failure with the event name; rejections
// are returned unchanged so that callers can use them directly.
func wrapEventErr(event string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*smtpreply.Rejection); ok {
		return err
	}
	return fmt.Errorf("lua event %s: %w", event, err)
}
