package lua

// kumogo addition (see KUMOGO-PATCHES.md): a per-state memory budget and
// deadline checks inside long-running Go builtins.
//
// gopher-lua allocates through Go, which has no per-object accounting, so
// the budget works like a garbage collector's pacer. Every place that
// makes a Lua state grow (string building, table growth, new threads,
// registry growth) charges an estimate of the bytes it allocates. When the
// charges since the last look pass a trigger, the budget measures what the
// state really holds by walking everything reachable from it (registry,
// globals, stacks, upvalues); garbage is not counted, so a handler that
// builds and drops many strings is not punished for it. If the live size
// plus the allocation being made exceeds the limit, the allocation raises
// a Lua error instead, and the budget stays tripped: every later charge
// raises too, so a handler cannot catch the error with pcall and go on.
//
// Go-side temporaries of a builtin (the match list of gsub, for instance)
// are invisible to the walk; they are "held" for the duration of the call
// and added to the measured size.

import (
	"io"
	"math"
	"strings"
	"unsafe"

	"github.com/yuin/gopher-lua/pm"
)

// Estimated sizes, in bytes, of the Go objects behind Lua values.
const (
	memValueSlot  = 16   // an LValue (interface) in an array or registry
	memTableEntry = 112  // a new hash key: map entry, keys slot, k2i entry
	memMapEntry   = 48   // one entry of a Go map
	memTableBase  = 96   // an LTable
	memStringHdr  = 16   // a string header
	memFuncBase   = 64   // an LFunction
	memUpvalue    = 48   // an Upvalue
	memUserData   = 48   // an LUserData
	memThreadBase = 4096 // an LState with its call stack (not registry)
	memMatch      = 64   // a pm.MatchData with its captures
	memPmLevel    = 320  // Go stack per level of pattern matcher recursion (~300 measured)
	memCompile    = 48   // parser and compiler memory per byte of Lua source
	// Strings at least this long are counted once however often they are
	// referenced; shorter ones are counted per reference.
	memDedupString = 64
	// deadlineEvery is how many steps a Go-side loop runs between two
	// looks at the context.
	deadlineEvery = 4096
)

const memUnlimited = math.MaxInt64

// memBudget is the memory budget of one Lua state and its coroutines (it
// hangs off the shared Global).
type memBudget struct {
	g       *Global
	limit   int64 // 0: not enforced
	used    int64 // live bytes at the last measure plus charges since
	trigger int64 // measure when used exceeds this
	held    int64 // Go-side temporaries of running builtins
	tripped bool
}

func newMemBudget(g *Global) *memBudget {
	return &memBudget{g: g, trigger: memUnlimited}
}

// SetMemoryLimit enforces a limit of n bytes on everything this state and
// its coroutines hold (n <= 0 disables it). The limit covers memory
// allocated by Lua code and by the standard library; Go functions
// registered by the host allocate outside it unless they call
// ChargeMemory. Once an allocation was refused the state stays marked
// (MemoryLimitExceeded) and refuses every allocation while a limit is
// set: such a state is meant to be closed.
func (ls *LState) SetMemoryLimit(n int64) {
	m := ls.G.mem
	if n <= 0 {
		m.limit, m.trigger = 0, memUnlimited
		return
	}
	m.limit = n
	m.trigger = n
	if m.used > n || m.tripped {
		m.trigger = -1 // measure (or refuse) at the next charge
	}
}

// MemoryLimit returns the limit set by SetMemoryLimit (0: none).
func (ls *LState) MemoryLimit() int64 { return ls.G.mem.limit }

// MemoryLimitExceeded reports whether an allocation was ever refused (the
// mark is never cleared), even if the script caught the error.
func (ls *LState) MemoryLimitExceeded() bool { return ls.G.mem.tripped }

// MemoryInUse walks the state and returns an estimate of the bytes it
// holds (the same measure the limit is checked against).
func (ls *LState) MemoryInUse() int64 {
	return newMemWalker().walkGlobal(ls.G) + ls.G.mem.held
}

// ChargeMemory tells the budget that a host function is about to allocate
// n bytes on behalf of the script (for example a string it returns). It
// raises a Lua error when that would exceed the limit.
func (ls *LState) ChargeMemory(n int) { ls.G.mem.charge(int64(n)) }

// HoldMemory is ChargeMemory for memory the host keeps on the script's
// behalf where the walk cannot see it (message metadata, for example):
// it counts as live until the host lowers HeldMemory again.
func (ls *LState) HoldMemory(n int) { ls.G.mem.hold(int64(n)) }

// HeldMemory returns the bytes currently held (HoldMemory and the
// temporaries of running builtins).
func (ls *LState) HeldMemory() int64 { return ls.G.mem.held }

// SetHeldMemory restores HeldMemory to a value it had before, at the end
// of the call that held the memory.
func (ls *LState) SetHeldMemory(n int64) { ls.G.mem.held = n }

func (m *memBudget) charge(n int64) {
	m.used += n
	if m.used > m.trigger {
		m.overTrigger(n)
	}
}

// hold charges n bytes of Go-side temporaries that the walk cannot see;
// the caller gives them back by restoring held to its earlier value.
func (m *memBudget) hold(n int64) {
	m.charge(n) // counts n as pending, so before it is added to held
	m.held += n
}

func (m *memBudget) overTrigger(pending int64) {
	if m.limit <= 0 {
		m.trigger = memUnlimited
		return
	}
	if !m.tripped {
		live := newMemWalker().walkGlobal(m.g) + m.held
		if live+pending <= m.limit {
			m.used = live + pending
			m.trigger = max(m.limit, m.used+m.limit/8)
			return
		}
		m.tripped = true
		m.trigger = -1 // every later charge comes here
	}
	L := m.g.CurrentThread
	if L == nil {
		L = m.g.MainThread
	}
	L.RaiseError("not enough memory: the Lua state would exceed its limit of %d bytes", m.limit)
}

// memWalker measures what a state holds.
type memWalker struct {
	seen  map[unsafe.Pointer]struct{}
	todo  []LValue
	total int64
}

func newMemWalker() *memWalker {
	return &memWalker{seen: make(map[unsafe.Pointer]struct{}, 256)}
}

func (w *memWalker) first(p unsafe.Pointer) bool {
	if _, ok := w.seen[p]; ok {
		return false
	}
	w.seen[p] = struct{}{}
	return true
}

func (w *memWalker) walkGlobal(g *Global) int64 {
	w.push(g.Registry)
	w.push(g.Global)
	if g.MainThread != nil {
		w.push(g.MainThread)
	}
	if g.CurrentThread != nil {
		w.push(g.CurrentThread)
	}
	for _, mt := range g.builtinMts {
		w.push(mt)
	}
	for len(w.todo) > 0 {
		v := w.todo[len(w.todo)-1]
		w.todo = w.todo[:len(w.todo)-1]
		w.visit(v)
	}
	return w.total
}

func (w *memWalker) push(v LValue) {
	switch v := v.(type) {
	case nil, LNumber, LBool, *LNilType:
	case LString:
		w.str(string(v))
	default:
		w.todo = append(w.todo, v)
	}
}

func (w *memWalker) str(s string) {
	if len(s) >= memDedupString && !w.first(unsafe.Pointer(unsafe.StringData(s))) {
		return
	}
	w.total += int64(len(s)) + memStringHdr
}

func (w *memWalker) visit(v LValue) {
	switch v := v.(type) {
	case *LTable:
		if !w.first(unsafe.Pointer(v)) {
			return
		}
		w.total += memTableBase + int64(cap(v.array)+cap(v.keys))*memValueSlot +
			int64(len(v.strdict)+len(v.dict)+len(v.k2i))*memMapEntry
		w.push(v.Metatable)
		for _, e := range v.array {
			w.push(e)
		}
		for k, e := range v.strdict {
			w.str(k)
			w.push(e)
		}
		for k, e := range v.dict {
			w.push(k)
			w.push(e)
		}
	case *LFunction:
		if !w.first(unsafe.Pointer(v)) {
			return
		}
		w.total += memFuncBase + int64(len(v.Upvalues))*8
		if v.Env != nil {
			w.push(v.Env)
		}
		for _, uv := range v.Upvalues {
			if uv != nil && w.first(unsafe.Pointer(uv)) {
				w.total += memUpvalue
				w.push(uv.Value())
			}
		}
	case *LUserData:
		if !w.first(unsafe.Pointer(v)) {
			return
		}
		w.total += memUserData
		if v.Env != nil {
			w.push(v.Env)
		}
		w.push(v.Metatable)
		if md, ok := v.Value.(*strMatchData); ok {
			w.total += int64(len(md.matches)) * memMatch
		}
	case *LState:
		if !w.first(unsafe.Pointer(v)) {
			return
		}
		w.total += memThreadBase
		if v.Env != nil {
			w.push(v.Env)
		}
		if v.reg != nil {
			w.total += int64(cap(v.reg.array)) * memValueSlot
			top := min(v.reg.top, len(v.reg.array))
			for _, e := range v.reg.array[:top] {
				w.push(e)
			}
		}
		if v.stack != nil {
			for i := 0; i < v.stack.Sp(); i++ {
				if f := v.stack.At(i); f != nil && f.Fn != nil {
					w.push(f.Fn)
				}
			}
		}
	}
}

// compileReader holds memCompile bytes per byte of source read while a
// chunk is parsed and compiled (load, loadstring): the AST and the
// compiler's tables cost tens of times the source, out of the walk's
// sight.
type compileReader struct {
	r   io.Reader
	mem *memBudget
}

func (c *compileReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.mem.hold(int64(n) * memCompile)
	return n, err
}

// checkDeadline raises the context's error once the state's context is
// done. Builtins that loop in Go call it every deadlineEvery steps, so
// that an event past its deadline stops within milliseconds.
func (ls *LState) checkDeadline() {
	if ls.ctx == nil {
		return
	}
	select {
	case <-ls.ctx.Done():
		ls.RaiseError("%s", ls.ctx.Err().Error())
	default:
	}
}

// matchCheck returns the pm.Check for one pattern search: it watches the
// deadline and holds the Go stack of the matcher's recursion and the
// matches kept (the caller restores G.mem.held afterwards).
func (ls *LState) matchCheck() pm.Check {
	if ls.ctx == nil && ls.G.mem.limit <= 0 {
		return nil
	}
	var done <-chan struct{}
	if ls.ctx != nil {
		done = ls.ctx.Done()
	}
	var held int64
	return func(matches, depth int) {
		if n := int64(matches)*memMatch + int64(depth)*memPmLevel; n > held {
			ls.G.mem.hold(n - held)
			held = n
		}
		select {
		case <-done:
			ls.RaiseError("%s", ls.ctx.Err().Error())
		default:
		}
	}
}

// gsubReplace builds gsub's result in one allocation of the right size
// (upstream's strGsubDoReplace copies the whole string once per match,
// which is quadratic).
func gsubReplace(L *LState, str string, info []replaceInfo) string {
	size := len(str)
	for _, r := range info {
		size += len(r.String) - (r.Indicies[1] - r.Indicies[0])
	}
	L.G.mem.charge(int64(size))
	var b strings.Builder
	b.Grow(size)
	prev := 0
	for i, r := range info {
		if i%deadlineEvery == deadlineEvery-1 {
			L.checkDeadline()
		}
		b.WriteString(str[prev:r.Indicies[0]])
		b.WriteString(r.String)
		prev = r.Indicies[1]
	}
	b.WriteString(str[prev:])
	return b.String()
}

// gsubExpansionBound is an upper bound of the size of one expanded gsub
// replacement template: every %n can insert at most the whole match.
func gsubExpansionBound(repl string, start, end int) int64 {
	return int64(len(repl)) + int64(strings.Count(repl, "%"))*int64(end-start+24)
}

// repString is string.rep charged to the budget, built by doubling with a
// deadline check between doublings.
func repString(L *LState, s string, n int) string {
	if n <= 0 || len(s) == 0 {
		return ""
	}
	if int64(n) > math.MaxInt64/int64(len(s)) {
		L.RaiseError("not enough memory: string.rep result too large")
	}
	size := int64(len(s)) * int64(n)
	L.G.mem.charge(size)
	if size > math.MaxInt {
		L.RaiseError("not enough memory: string.rep result too large")
	}
	var b strings.Builder
	b.Grow(int(size))
	b.WriteString(s)
	for int64(b.Len()) < size {
		L.checkDeadline()
		chunk := b.String()
		if rest := size - int64(b.Len()); int64(len(chunk)) > rest {
			chunk = chunk[:rest]
		}
		b.WriteString(chunk)
	}
	return b.String()
}

// formatBound checks string.format's widths and precisions as Lua does
// (at most two digits each) and returns an upper bound of the result's
// size, so that the result is charged before fmt allocates it.
func formatBound(L *LState, format string, args []interface{}) int64 {
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		i++
		for i < len(format) && strings.IndexByte("-+ #0", format[i]) >= 0 {
			i++
		}
		digits := 0
		for i < len(format) && format[i] >= '0' && format[i] <= '9' {
			i++
			digits++
		}
		if i < len(format) && format[i] == '.' {
			i++
			prec := 0
			for i < len(format) && format[i] >= '0' && format[i] <= '9' {
				i++
				prec++
			}
			digits = max(digits, prec)
		}
		if digits > 2 {
			L.RaiseError("invalid format (width or precision too long)")
		}
		// Go's fmt would take a width from an argument ('*') or pick
		// arguments by index ('['); Lua has neither.
		if i < len(format) && (format[i] == '*' || format[i] == '[') {
			L.RaiseError("invalid option '%%%c' to 'format'", format[i])
		}
	}
	size := int64(len(format))
	per := int64(1)
	if strings.IndexByte(format, 'q') >= 0 {
		per = 4 // %q may escape every byte
	}
	for _, a := range args {
		size += 128
		if s, ok := a.(LString); ok {
			size += per * int64(len(s))
		}
	}
	return size
}

// checkedSorter is table.sort's sorter with a deadline check.
type checkedSorter struct {
	lValueArraySorter
	n int
}

func (s *checkedSorter) Less(i, j int) bool {
	s.n++
	if s.n%deadlineEvery == 0 {
		s.L.checkDeadline()
	}
	return s.lValueArraySorter.Less(i, j)
}
