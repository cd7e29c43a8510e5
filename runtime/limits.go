package runtime

import (
	"fmt"
	"math"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// DefaultLuaMemoryLimit is the memory limit of one Lua state when
// Options.LuaMemoryLimit is zero. KumoMTA has no such limit (its Lua
// states share the process's memory); kumogo bounds each state so that
// one runaway handler fails its own event instead of taking the daemon
// down. 256 MiB is far above what a policy holds (a pooled state of the
// bundled policies holds well under 1 MiB) and leaves room for handlers
// that rewrite a large message body a few times.
const DefaultLuaMemoryLimit = 256 << 20

// memoryLimit returns the per-state limit in bytes from the options
// (0: none).
func memoryLimit(opt int64) int64 {
	switch {
	case opt == 0:
		return DefaultLuaMemoryLimit
	case opt < 0:
		return 0
	}
	return opt
}

// protectedCall is L.PCall with the state's memory limit enforced for its
// duration. The limit is off outside policy code so that the host's own
// conversions (building event arguments, reading results) never raise
// outside a protected call. The fork of gopher-lua in third_party charges
// string building, table growth and new coroutines to the state and
// raises "not enough memory" past the limit; once that happened every
// later allocation raises too, so a handler cannot catch the error with
// pcall and carry on, and the call fails even if the handler returned
// normally. Such a state is never pooled again (put).
func (st *state) protectedCall(nargs, nret int) error {
	L := st.L
	prev, held := L.MemoryLimit(), L.HeldMemory()
	L.SetMemoryLimit(st.rt.memLimit)
	err := L.PCall(nargs, nret, nil)
	L.SetMemoryLimit(prev)
	L.SetHeldMemory(held)
	if L.MemoryLimitExceeded() {
		// The handler may have caught the memory error and returned, or
		// raised something else (even kumo.reject): the event fails for
		// lack of memory all the same.
		if err != nil && strings.Contains(err.Error(), "not enough memory") {
			return err
		}
		return fmt.Errorf("not enough memory: the Lua state exceeded its limit of %d bytes", st.rt.memLimit)
	}
	return err
}

// holdValue holds, for the rest of the event, what the host is about to
// keep of v under key (a metadata value, a header): Go copies that the
// walk of the Lua state cannot see, so that a loop of set_meta or
// append_header calls cannot grow the host's memory past the state's
// limit. old is the value v replaces, if had.
func holdValue(L *lua.LState, key string, v lua.LValue, old any, had bool) {
	n := 0
	switch x := v.(type) {
	case lua.LString:
		n = len(x)
	case *lua.LTable:
		n = 64 * (x.Len() + 1)
	}
	if had {
		if s, ok := old.(string); ok {
			n -= len(s)
		}
	} else {
		n += len(key) + 64
	}
	if n > 0 {
		L.HoldMemory(n)
	}
}

// strRep is Lua 5.2's string.rep(s, n [, sep]). A result larger than the
// state's memory limit is refused outright; otherwise it is charged to the
// limit before it is built, and it is built by doubling, with a look at
// the event's deadline between doublings.
func strRep(L *lua.LState) int {
	s := L.CheckString(1)
	n := L.CheckInt(2)
	sep := L.OptString(3, "")
	if n <= 0 || len(s)+len(sep) == 0 {
		L.Push(lua.LString(""))
		return 1
	}
	unit := int64(len(s) + len(sep))
	if int64(n) > math.MaxInt32*int64(64)/unit {
		L.RaiseError("not enough memory: string.rep result too large")
	}
	body := unit * int64(n-1) // n-1 times s..sep, then s
	size := body + int64(len(s))
	if limit := L.MemoryLimit(); limit > 0 && size > limit {
		// Refused before anything is allocated, so the state is not
		// marked as out of memory and a pcall can go on.
		L.RaiseError("not enough memory: string.rep: resulting string too large (%d bytes, limit %d)", size, limit)
	}
	L.ChargeMemory(int(size))
	var b strings.Builder
	b.Grow(int(body) + len(s))
	if body > 0 {
		b.WriteString(s)
		b.WriteString(sep)
		for int64(b.Len()) < body {
			if ctx := L.Context(); ctx != nil && ctx.Err() != nil {
				L.RaiseError("%s", ctx.Err().Error())
			}
			chunk := b.String()
			if rest := body - int64(b.Len()); int64(len(chunk)) > rest {
				chunk = chunk[:rest]
			}
			b.WriteString(chunk)
		}
	}
	b.WriteString(s)
	L.Push(lua.LString(b.String()))
	return 1
}

// MemoryHost is implemented by a Host that guards the process's memory.
// When the Host has it, kumo.set_memory_soft_limit and
// kumo.set_memory_hard_limit (and their getters) are served by it, as in
// KumoMTA (docs: "Memory Management"); otherwise they are accepted and do
// nothing.
type MemoryHost interface {
	// SetMemorySoftLimit sets the usage above which load is shed.
	SetMemorySoftLimit(n int64)
	// SetMemoryHardLimit sets the memory available to the process.
	SetMemoryHardLimit(n int64)
	// MemorySoftLimit and MemoryHardLimit return the limits in force
	// (0: none).
	MemorySoftLimit() int64
	MemoryHardLimit() int64
}

// openMemoryFuncs replaces the no-op memory limit functions of the kumo
// module with ones served by the Host.
func (st *state) openMemoryFuncs(kumo *lua.LTable) {
	mh, ok := st.rt.opts.Host.(MemoryHost)
	if !ok || st.rt.opts.Validating {
		return
	}
	L := st.L
	set := func(name string, fn func(int64)) {
		kumo.RawSetString(name, L.NewFunction(func(L *lua.LState) int {
			n := L.CheckNumber(1)
			if n <= 0 {
				L.ArgError(1, "the limit must be a positive number of bytes")
			}
			fn(int64(n))
			return 0
		}))
	}
	get := func(name string, fn func() int64) {
		kumo.RawSetString(name, L.NewFunction(func(L *lua.LState) int {
			if n := fn(); n > 0 {
				L.Push(lua.LNumber(n))
			} else {
				L.Push(lua.LNil)
			}
			return 1
		}))
	}
	set("set_memory_soft_limit", mh.SetMemorySoftLimit)
	set("set_memory_hard_limit", mh.SetMemoryHardLimit)
	get("get_memory_soft_limit", mh.MemorySoftLimit)
	get("get_memory_hard_limit", mh.MemoryHardLimit)
}

// ReleaseSpare closes the Lua states waiting in the pool (the process is
// short of memory); events create new ones as they need them.
func (r *Runtime) ReleaseSpare() int {
	n := 0
	for {
		select {
		case st := <-r.pool:
			r.discard(st)
			n++
		default:
			return n
		}
	}
}
