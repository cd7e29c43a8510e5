package runtime

import (
	"sync"

	lua "github.com/yuin/gopher-lua"
)

// Reusing the message and conn_meta userdata of an event.
//
// Every event used to wrap its message and connection metadata in new
// userdata, invalidated when the event ends, so that a handle a policy
// keeps (in a global, an upvalue, a table) reports "no longer valid"
// instead of showing a later message. Most handlers never keep them: they
// only call methods on them, msg:set_meta(...). For such a handler a state
// passes the same userdata every time (pointing at the current message, set
// back to nil when the event ends), which costs no allocation; any other
// handler still gets fresh ones.
//
// Whether a handler may keep a parameter is decided once per handler from
// its bytecode (argEscapes): the parameter's value is followed through the
// registers of the function, over every path, and the handler qualifies only
// if the value is used for nothing but being the receiver of a method call
// by a constant name (msg:name(...)) whose method is one of ours. Our
// methods read the handle during the call and never store it; the
// userdata's metatable is protected (__metatable = false, as in KumoMTA's
// mlua binding), so a policy cannot swap those methods for its own. There
// is no debug library, so nothing outside the function's registers can
// reach the value. Anything the analysis does not follow (passing the value
// to another function, storing it, returning it, capturing it in a closure,
// using it in an expression, a vararg handler) counts as keeping it.

// regSet is a set of Lua registers (0..255).
type regSet [4]uint64

func (s *regSet) has(r int) bool { return r < 256 && s[r>>6]&(1<<(r&63)) != 0 }

func (s *regSet) add(r int) {
	if r < 256 {
		s[r>>6] |= 1 << (r & 63)
	}
}

func (s *regSet) del(r int) {
	if r < 256 {
		s[r>>6] &^= 1 << (r & 63)
	}
}

// delRange removes lo..hi (inclusive).
func (s *regSet) delRange(lo, hi int) {
	for r := lo; r <= hi && r < 256; r++ {
		s.del(r)
	}
}

// anyIn reports whether one of lo..hi (inclusive) is in the set.
func (s *regSet) anyIn(lo, hi int) bool {
	for r := max(lo, 0); r <= hi && r < 256; r++ {
		if s.has(r) {
			return true
		}
	}
	return false
}

// flowState is what is known before an instruction: the registers that
// may hold the parameter's value (on some path) and the registers that
// hold one of our methods looked up on it (on every path).
type flowState struct {
	held, method regSet
}

func (f flowState) join(o flowState) flowState {
	for i := range f.held {
		f.held[i] |= o.held[i]
		f.method[i] &= o.method[i]
	}
	return f
}

// Instruction fields of gopher-lua's encoding: opcode in the top 6 bits,
// then A (8 bits), C (9 bits) and B (9 bits); Bx is B and C together.
func opOf(i uint32) int  { return int(i >> 26) }
func opA(i uint32) int   { return int(i>>18) & 0xff }
func opB(i uint32) int   { return int(i & 0x1ff) }
func opC(i uint32) int   { return int(i>>9) & 0x1ff }
func opBx(i uint32) int  { return int(i & 0x3ffff) }
func opSbx(i uint32) int { return opBx(i) - 0x3ffff>>1 }

// rkConst marks a B or C operand that names a constant, not a register.
const rkConst = 1 << 8

// argEscapes reports whether the Lua function p may let the value of its
// parameter param (0-based) outlive the call or reach code other than the
// methods named in methods (see the comment at the top of this file). It
// errs on the side of true.
func argEscapes(p *lua.FunctionProto, param int, methods map[string]bool) bool {
	if p == nil || p.IsVarArg != 0 || param >= int(p.NumParameters) || len(p.Code) == 0 {
		return true
	}
	n := len(p.Code)
	in := make([]flowState, n)
	seen := make([]bool, n)
	in[0].held.add(param)
	seen[0] = true
	work := []int{0}
	for len(work) > 0 {
		pc := work[len(work)-1]
		work = work[:len(work)-1]
		out := in[pc]
		next, escapes := flowStep(p, pc, &out, methods)
		if escapes {
			return true
		}
		for _, s := range next {
			if s < 0 || s >= n {
				return true // not code the compiler makes
			}
			if !seen[s] {
				in[s], seen[s] = out, true
				work = append(work, s)
			} else if j := in[s].join(out); j != in[s] {
				in[s] = j
				work = append(work, s)
			}
		}
	}
	return false
}

// flowStep applies the instruction at pc to f and returns its successors,
// or escapes = true when the instruction may let the value out.
func flowStep(p *lua.FunctionProto, pc int, f *flowState, methods map[string]bool) (next []int, escapes bool) {
	inst := p.Code[pc]
	a, b, c := opA(inst), opB(inst), opC(inst)
	held := func(r int) bool { return f.held.has(r) }
	heldRK := func(x int) bool { return x&rkConst == 0 && f.held.has(x) }
	write := func(r int) { f.held.del(r); f.method.del(r) }
	seq := []int{pc + 1}
	branch := []int{pc + 1, pc + 2}

	switch opOf(inst) {
	case lua.OP_MOVE:
		write(a)
		if held(b) {
			f.held.add(a)
		}
		return seq, false
	case lua.OP_MOVEN:
		// R(A) := R(B), then the next C instructions are moves done here
		moves := [][2]int{{a, b}}
		for i := 1; i <= c; i++ {
			if pc+i >= len(p.Code) {
				return nil, true
			}
			moves = append(moves, [2]int{opA(p.Code[pc+i]), opB(p.Code[pc+i])})
		}
		for _, m := range moves {
			h := held(m[1])
			write(m[0])
			if h {
				f.held.add(m[0])
			}
		}
		return []int{pc + 1 + c}, false
	case lua.OP_LOADK, lua.OP_GETUPVAL, lua.OP_GETGLOBAL, lua.OP_NEWTABLE, lua.OP_NOT:
		write(a)
		return seq, false
	case lua.OP_LOADBOOL:
		write(a)
		if c != 0 {
			return []int{pc + 2}, false
		}
		return seq, false
	case lua.OP_LOADNIL:
		for r := a; r <= b; r++ {
			write(r)
		}
		return seq, false
	case lua.OP_GETTABLE, lua.OP_GETTABLEKS:
		if held(b) || heldRK(c) {
			return nil, true
		}
		write(a)
		return seq, false
	case lua.OP_SETGLOBAL, lua.OP_SETUPVAL:
		return seq, held(a)
	case lua.OP_SETTABLE, lua.OP_SETTABLEKS:
		return seq, held(a) || heldRK(b) || heldRK(c)
	case lua.OP_SELF:
		// R(A+1) := R(B); R(A) := R(B)[RK(C)]
		if heldRK(c) {
			return nil, true
		}
		if !held(b) {
			write(a)
			write(a + 1)
			return seq, false
		}
		if c&rkConst == 0 || c&^rkConst >= len(p.Constants) {
			return nil, true
		}
		name, ok := p.Constants[c&^rkConst].(lua.LString)
		if !ok || !methods[string(name)] {
			return nil, true
		}
		write(a)
		f.method.add(a)
		write(a + 1)
		f.held.add(a + 1)
		return seq, false
	case lua.OP_ADD, lua.OP_SUB, lua.OP_MUL, lua.OP_DIV, lua.OP_MOD, lua.OP_POW:
		if heldRK(b) || heldRK(c) {
			return nil, true
		}
		write(a)
		return seq, false
	case lua.OP_UNM, lua.OP_LEN:
		if held(b) {
			return nil, true
		}
		write(a)
		return seq, false
	case lua.OP_CONCAT:
		if f.held.anyIn(b, c) {
			return nil, true
		}
		write(a)
		return seq, false
	case lua.OP_JMP:
		return []int{pc + 1 + opSbx(inst)}, false
	case lua.OP_EQ:
		// equality calls __eq only when both operands share it; the
		// userdata has none
		return branch, false
	case lua.OP_LT, lua.OP_LE:
		return branch, heldRK(b) || heldRK(c)
	case lua.OP_TEST:
		return branch, false
	case lua.OP_TESTSET:
		h := held(a) || held(b)
		write(a)
		if h {
			f.held.add(a)
		}
		return branch, false
	case lua.OP_CALL, lua.OP_TAILCALL:
		// R(A)(R(A+1) ... R(A+B-1)); B == 0: up to the top
		if held(a) {
			return nil, true
		}
		last := a + b - 1
		if b == 0 {
			last = 255
		}
		if f.held.anyIn(a+1, last) {
			// only as the receiver of one of our methods
			if !f.method.has(a) || !held(a+1) || f.held.anyIn(a+2, last) {
				return nil, true
			}
		}
		if c == 0 {
			for r := a; r < 256; r++ {
				write(r)
			}
		} else {
			for r := a; r <= a+c-2; r++ {
				write(r)
			}
		}
		return seq, false
	case lua.OP_RETURN:
		last := a + b - 2
		if b == 0 {
			last = 255
		}
		return nil, f.held.anyIn(a, last)
	case lua.OP_FORPREP:
		return []int{pc + 1 + opSbx(inst)}, f.held.anyIn(a, a+2)
	case lua.OP_FORLOOP:
		if f.held.anyIn(a, a+2) {
			return nil, true
		}
		write(a)
		write(a + 3)
		return []int{pc + 1 + opSbx(inst), pc + 1}, false
	case lua.OP_TFORLOOP:
		if f.held.anyIn(a, a+2) {
			return nil, true
		}
		for r := a + 2; r <= a+2+c; r++ {
			write(r)
		}
		return branch, false
	case lua.OP_SETLIST:
		last := a + b
		if b == 0 {
			last = 255
		}
		if f.held.anyIn(a, last) {
			return nil, true
		}
		if c == 0 {
			return []int{pc + 2}, false // the next word is C
		}
		return seq, false
	case lua.OP_CLOSE, lua.OP_NOP:
		return seq, false
	case lua.OP_CLOSURE:
		bx := opBx(inst)
		if bx >= len(p.FunctionPrototypes) {
			return nil, true
		}
		nup := int(p.FunctionPrototypes[bx].NumUpvalues)
		for i := 1; i <= nup; i++ {
			if pc+i >= len(p.Code) {
				return nil, true
			}
			up := p.Code[pc+i]
			if opOf(up) == lua.OP_MOVE && held(opB(up)) {
				return nil, true // captured by the closure
			}
		}
		write(a)
		return []int{pc + 1 + nup}, false
	case lua.OP_VARARG:
		if b == 0 {
			for r := a; r < 256; r++ {
				write(r)
			}
		} else {
			for r := a; r <= a+b-2; r++ {
				write(r)
			}
		}
		return seq, false
	}
	return nil, true
}

// Kinds of reusable arguments.
const (
	msgArg = iota
	connArg
)

type argKey struct {
	proto       *lua.FunctionProto
	param, kind int
}

// argMethods are the method names of each kind of argument.
var argMethods = sync.OnceValue(func() [2]map[string]bool {
	var out [2]map[string]bool
	st := &state{}
	for i, fns := range [2]map[string]lua.LGFunction{st.messageMethods(), st.connMethods()} {
		out[i] = make(map[string]bool, len(fns))
		for name := range fns {
			out[i][name] = true
		}
	}
	return out
})

// reusable reports whether the running handler's parameter param (0-based)
// can be given the state's reused userdata of kind: the handler never keeps
// it (argEscapes, computed once per handler and state).
func (st *state) reusable(param, kind int) bool {
	fn := st.handler
	if fn == nil || fn.IsG || fn.Proto == nil {
		return false
	}
	key := argKey{fn.Proto, param, kind}
	ok, known := st.reuse[key]
	if !known {
		ok = !argEscapes(fn.Proto, param, argMethods()[kind])
		if st.reuse == nil {
			st.reuse = make(map[argKey]bool, 4)
		}
		st.reuse[key] = ok
	}
	return ok
}
