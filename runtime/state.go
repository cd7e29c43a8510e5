package runtime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
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

	next lua.LValue // the original next, for __pairs iterators

	boxed map[string]any // boxString's cache

	// reused event arguments (escape.go)
	handler       *lua.LFunction // the running handler (single)
	msgUD, connUD *lua.LUserData
	reuse         map[argKey]bool
}

// newState creates a sandboxed state and runs the compiled policy in it.
func (r *Runtime) newState() (*state, error) {
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
	L.SetGlobal("kumo", kumo)
	if r.opts.Validating {
		L.SetGlobal("_VALIDATING_CONFIG", lua.LTrue)
	}
	L.Push(L.NewFunctionFromProto(r.proto))
	err := L.PCall(0, 0, nil)
	st.ctx = nil
	L.SetTop(0)
	if err != nil {
		L.Close()
		return nil, fmt.Errorf("runtime: loading policy: %w", err)
	}
	return st, nil
}

// openLibs opens the allow-listed standard libraries and shims.
func (st *state) openLibs() error {
	L := st.L
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
		{lua.CoroutineLibName, lua.OpenCoroutine},
		{lua.OsLibName, lua.OpenOs},
	} {
		L.Push(L.NewFunction(lib.fn))
		L.Push(lua.LString(lib.name))
		if err := L.PCall(1, 0, nil); err != nil {
			return fmt.Errorf("%s: %w", lib.name, err)
		}
	}
	g := L.G.Global
	for _, name := range []string{"dofile", "loadfile", "collectgarbage", "_printregs"} {
		g.RawSetString(name, lua.LNil)
	}
	g.RawSetString("print", L.NewFunction(st.luaPrint))

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

	// os: only the harmless functions of the full library just opened.
	full := L.GetGlobal("os").(*lua.LTable)
	safe := L.CreateTable(0, 5)
	for _, name := range []string{"getenv", "time", "date", "clock", "difftime"} {
		safe.RawSetString(name, full.RawGetString(name))
	}
	g.RawSetString("os", safe)
	loaded.RawSetString("os", safe)

	// table: Lua 5.2+ helpers.
	tbl := L.GetGlobal("table").(*lua.LTable)
	tbl.RawSetString("unpack", g.RawGetString("unpack"))
	tbl.RawSetString("pack", L.NewFunction(tablePack))

	// string: bounded rep, no dump.
	str := L.GetGlobal("string").(*lua.LTable)
	str.RawSetString("rep", L.NewFunction(strRep))
	str.RawSetString("dump", lua.LNil)

	// math: Lua 5.3 integer helpers.
	m := L.GetGlobal("math").(*lua.LTable)
	m.RawSetString("type", L.NewFunction(mathType))
	m.RawSetString("tointeger", L.NewFunction(mathToInteger))
	m.RawSetString("maxinteger", lua.LNumber(1<<53))
	m.RawSetString("mininteger", lua.LNumber(-(1 << 53)))

	u := openUTF8(L)
	g.RawSetString("utf8", u)
	loaded.RawSetString("utf8", u)

	// package: our own search (bundled modules, then the policy directory).
	pkg := L.GetGlobal("package").(*lua.LTable)
	pkg.RawSetString("loadlib", lua.LNil)
	pkg.RawSetString("cpath", lua.LString(""))
	if st.rt.policyDir != "" {
		pkg.RawSetString("path", lua.LString(filepath.Join(st.rt.policyDir, "?.lua")+";"+filepath.Join(st.rt.policyDir, "?", "init.lua")))
	} else {
		pkg.RawSetString("path", lua.LString(""))
	}
	loaders := L.GetField(L.Get(lua.RegistryIndex), "_LOADERS").(*lua.LTable)
	preload := loaders.RawGetInt(1)
	nl := L.CreateTable(2, 0)
	nl.RawSetInt(1, preload)
	nl.RawSetInt(2, L.NewFunction(st.loadModule))
	L.SetField(L.Get(lua.RegistryIndex), "_LOADERS", nl)
	pkg.RawSetString("loaders", nl)
	return nil
}

// loadModule is the require searcher for bundled modules and files next
// to the policy. It returns the loader function or a "not found" string.
func (st *state) loadModule(L *lua.LState) int {
	name := L.CheckString(1)
	rel := strings.ReplaceAll(name, ".", "/")
	var tried []string
	if fsys := st.rt.opts.Modules; fsys != nil {
		for _, p := range []string{rel + ".lua", path.Join(rel, "init.lua")} {
			if !fs.ValidPath(p) {
				continue
			}
			proto, err := st.rt.compileModule("fs:"+p, p, func() ([]byte, error) { return fs.ReadFile(fsys, p) })
			if err == nil {
				L.Push(L.NewFunctionFromProto(proto))
				return 1
			}
			if !errors.Is(err, fs.ErrNotExist) {
				L.RaiseError("error loading module '%s': %s", name, err.Error())
			}
			tried = append(tried, "bundled module '"+p+"'")
		}
	}
	if dir := st.rt.policyDir; dir != "" && !strings.Contains(rel, "..") {
		for _, p := range []string{filepath.Join(dir, filepath.FromSlash(rel)+".lua"), filepath.Join(dir, filepath.FromSlash(rel), "init.lua")} {
			proto, err := st.rt.compileModule("dir:"+p, p, func() ([]byte, error) { return os.ReadFile(p) })
			if err == nil {
				L.Push(L.NewFunctionFromProto(proto))
				return 1
			}
			if !errors.Is(err, fs.ErrNotExist) {
				L.RaiseError("error loading module '%s': %s", name, err.Error())
			}
			tried = append(tried, "no file '"+p+"'")
		}
	}
	if len(tried) == 0 {
		tried = append(tried, "no module search path")
	}
	L.Push(lua.LString(strings.Join(tried, "\n\t")))
	return 1
}

// compileModule returns the compiled module for key, compiling it from
// read() on first use. Compiled modules are shared by all states.
func (r *Runtime) compileModule(key, name string, read func() ([]byte, error)) (*lua.FunctionProto, error) {
	r.modMu.Lock()
	proto, ok := r.modCache[key]
	r.modMu.Unlock()
	if ok {
		return proto, nil
	}
	src, err := read()
	if err != nil {
		return nil, err
	}
	proto, err = compileChunk(src, name)
	if err != nil {
		return nil, err
	}
	r.modMu.Lock()
	r.modCache[key] = proto
	r.modMu.Unlock()
	return proto, nil
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
	err := st.L.PCall(nargs, nret, nil)
	if err == nil {
		return nil
	}
	var apiErr *lua.ApiError
	if errors.As(err, &apiErr) {
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
