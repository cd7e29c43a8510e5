package runtime

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// hostilePolicy has one event per hostile pattern (the argument picks
// it) plus 'count', which reports how many events the state it runs on
// has served, so that a test can tell a fresh state from a reused one.
const hostilePolicy = `
local hostile = {
  concat = function() local s = 'x' while true do s = s .. s end end,
  concat3 = function() local s = 'x' while true do s = s .. s .. s end end,
  closures = function() local t = {} local i = 0 while true do i = i + 1 local j = i t[i] = function() return j end end end,
  rep = function() return #string.rep('x', 1e10) end,
  rep_sep = function() return #string.rep('x', 1e9, 'yy') end,
  rep_table = function() local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1e6) end end,
  array = function() local t = {} local i = 0 while true do i = i + 1 t[i] = i end end,
  hash = function() local t = {} local i = 0 while true do i = i + 1 t['k' .. i] = true end end,
  sparse = function() local t = {} for i = 1, 1e9 do t = {} t[6e7] = i end end,
  keys_deleted = function() local t = {} local i = 0 while true do i = i + 1 t[i + 0.5] = 1 t[i + 0.5] = nil end end,
  tables = function() local t = {} while true do t[#t + 1] = {1, 2, 3, 4, 5, 6, 7, 8} end end,
  coroutines = function() local t = {} while true do t[#t + 1] = coroutine.create(function() end) end end,
  gsub = function() local s = string.rep('x', 4e6) local t = {} for i = 1, 1e9 do t[i] = s:gsub('x', 'yy') end end,
  gsub_expand = function() local s = string.rep('x', 2e5) return #s:gsub('.+', string.rep('%0', 400)) end,
  pattern_stack = function() local s = string.rep('x', 9e5) return s:find('.+$') end,
  gmatch = function() local s = string.rep('x', 4e6) local t = {} for i = 1, 1e9 do t[i] = s:gmatch('') end end,
  format = function() local s = string.rep('x', 4e6) local t = {} for i = 1, 1e9 do t[i] = string.format('%s%s', s, s) end end,
  upper = function() local s = string.rep('x', 4e6) local t = {} for i = 1, 1e9 do t[i] = s:upper() end end,
  concat_table = function() local p = {} for i = 1, 100 do p[i] = string.rep('x', 1e6) end local t = {} for i = 1, 1e9 do t[i] = table.concat(p) end end,
  get_data = function(msg) local t = {} for i = 1, 1e9 do t[i] = msg:get_data() end end,
  load = function() return loadstring(string.rep('x = 1 ', 2e6)) end,
  swallow = function()
    pcall(function() local s = 'x' while true do s = s .. s end end)
    return 'caught'
  end,
  swallow_reject = function()
    pcall(function() local s = 'x' while true do s = s .. s end end)
    kumo.reject(250, 'pretend all is well')
  end,
}
local served = 0
kumo.on('t', function(what, msg)
  if what == 'count' then served = served + 1 return served end
  return hostile[what](msg)
end)
`

func TestMemoryLimitHostile(t *testing.T) {
	const limit = 32 << 20
	r := newRuntime(t, hostilePolicy, func(o *Options) {
		o.MaxStates = 1
		o.LuaMemoryLimit = limit
	})
	big := testMessage(t, "Subject: x\r\n\r\n"+strings.Repeat("body line\r\n", 100_000), "a@example.com")
	for _, what := range []string{
		"concat", "concat3", "closures", "rep", "rep_sep", "rep_table", "array", "hash", "sparse",
		"keys_deleted", "tables", "coroutines", "gsub", "gsub_expand", "gmatch", "format",
		"upper", "concat_table", "get_data", "swallow", "swallow_reject", "pattern_stack", "load",
	} {
		t.Run(what, func(t *testing.T) {
			before := run(t, r, "count")[0].(int64)
			if out := run(t, r, "count"); out[0] != before+1 {
				t.Fatalf("count = %v, want %d (the same state)", out[0], before+1)
			}
			start := time.Now()
			out, err := r.Call(context.Background(), "t", what, big)
			if err == nil || !strings.Contains(err.Error(), "not enough memory") {
				t.Fatalf("%s: out=%v err=%v, want a not enough memory error", what, out, err)
			}
			t.Logf("%s: %v after %v", what, err, time.Since(start).Round(time.Millisecond))
			// the state that ran out was discarded: the next event gets a
			// fresh one, and works
			if out := run(t, r, "count"); out[0] != int64(1) {
				t.Fatalf("after %s: count = %v, want 1 (the state was not discarded)", what, out[0])
			}
		})
	}
}

// TestMemoryLimitDefault runs the doubling bomb under the default limit
// (256 MiB): it must fail the event, not the process.
func TestMemoryLimitDefault(t *testing.T) {
	r := newRuntime(t, hostilePolicy)
	if r.memLimit != DefaultLuaMemoryLimit {
		t.Fatalf("memLimit = %d", r.memLimit)
	}
	_, err := r.Call(context.Background(), "t", "concat")
	if err == nil || !strings.Contains(err.Error(), "not enough memory") || !strings.Contains(err.Error(), "268435456") {
		t.Fatalf("err = %v", err)
	}
}

// TestMemoryLimitGarbageIsFree: a handler that allocates far more than
// the limit in total, but never holds much at once, is not stopped.
func TestMemoryLimitGarbageIsFree(t *testing.T) {
	r := newRuntime(t, `
kumo.on('t', function()
  local n = 0
  local keep = {}
  for i = 1, 200 do
    local s = string.rep('x', 1e6) .. i            -- 1 MB of garbage per round
    local u = s:gsub('x', 'y', 1000):upper()
    local t = {}
    for j = 1, 2000 do t[j] = j end
    n = n + #u + #t
    keep[i % 4] = u                                -- a few MB live
  end
  return n
end)`, func(o *Options) { o.LuaMemoryLimit = 16 << 20 })
	out := run(t, r)
	if out[0] != int64(200*2000+200*1000000+(9+90*2+101*3)) {
		t.Fatalf("out = %v", out)
	}
}

// TestMemoryLimitTopLevel: a policy whose top level runs out of memory
// fails to load instead of killing the process.
func TestMemoryLimitTopLevel(t *testing.T) {
	_, err := newRuntimeErr(t, `local s = 'x' while true do s = s .. s end`, func(o *Options) { o.LuaMemoryLimit = 8 << 20 })
	if err == nil || !strings.Contains(err.Error(), "not enough memory") {
		t.Fatalf("err = %v", err)
	}
}

// TestMemoryLimitDisabled: a negative limit turns it off.
func TestMemoryLimitDisabled(t *testing.T) {
	r := newRuntime(t, `kumo.on('t', function() return #string.rep('x', 40e6) end)`, func(o *Options) { o.LuaMemoryLimit = -1 })
	if out := run(t, r); out[0] != int64(40e6) {
		t.Fatalf("out = %v", out)
	}
}

// cpuPolicy holds handlers that run long inside Go builtins (and one
// that runs long in the VM).
const cpuPolicy = `
local s = string.rep('a', 20000)
local cpu = {
  find = function() return s:find('.-.-.-.-b') end,
  match = function() return s:match('(.-)(.-)(.-)b') end,
  gsub = function() return s:gsub('.-.-.-b', 'x') end,
  gmatch = function() for x in s:gmatch('.-.-.-b') do end end,
  sort = function()
    local t = {}
    for i = 1, 1e6 do t[i] = (i * 7919) % 1000003 end
    while true do table.sort(t) table.sort(t, function(a, b) return a > b end) end
  end,
  rep = function() while true do local x = string.rep('ab', 1e7, ',') end end,
  loop = function() while true do end end,
}
kumo.on('t', function(what) return cpu[what]() end)
`

// TestDeadlineInBuiltins: an event whose handler is stuck in a builtin
// (pattern matching, sort, rep) or in a loop stops within 100 ms of its
// deadline.
func TestDeadlineInBuiltins(t *testing.T) {
	r := newRuntime(t, cpuPolicy)
	for _, what := range []string{"find", "match", "gsub", "gmatch", "sort", "rep", "loop"} {
		t.Run(what, func(t *testing.T) {
			// A builtin that ignores the deadline runs on for seconds; one
			// that honours it stops within milliseconds, but on a loaded
			// machine the goroutine may wait for a core past the margin,
			// so a late stop is tried again (three tries).
			var over time.Duration
			for try := 0; try < 3; try++ {
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				deadline, _ := ctx.Deadline()
				_, err := r.Call(ctx, "t", what)
				over = time.Since(deadline)
				cancel()
				if err == nil || !strings.Contains(err.Error(), context.DeadlineExceeded.Error()) {
					t.Fatalf("err = %v, want %v", err, context.DeadlineExceeded)
				}
				if over <= 100*time.Millisecond {
					break
				}
			}
			if over > 100*time.Millisecond {
				t.Fatalf("%s returned %v after its deadline", what, over)
			}
			t.Logf("%s: stopped %v after the deadline", what, over.Round(time.Millisecond))
		})
	}
}

// TestGsubLinear: gsub with many matches is linear (upstream gopher-lua
// copied the whole string once per match: a million matches on a 1 MB
// string took hours; linear, it takes well under a second, so a minute
// leaves room for the race detector on a loaded machine).
func TestGsubLinear(t *testing.T) {
	r := newRuntime(t, `kumo.on('t', function() local s, n = string.rep('ab', 5e5):gsub('a', '%0c') return #s, n end)`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := r.Call(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if out[0] != int64(1.5e6) || out[1] != int64(5e5) {
		t.Fatalf("out = %v", out)
	}
}

// TestFormatWidth: string.format rejects widths Lua rejects, which Go's
// fmt would otherwise turn into gigabytes.
func TestFormatWidth(t *testing.T) {
	r := newRuntime(t, `
kumo.on('t', function(f, a, b)
  local ok, err = pcall(string.format, f, a, b)
  return ok, err
end)`)
	for _, f := range []string{"%999999999d", "%.999999999f", "%*d", "%-*d", "%[2]d"} {
		out := run(t, r, f, int64(1e9), int64(1))
		if out[0] != false || !strings.Contains(out[1].(string), "invalid") {
			t.Errorf("%s: out = %v", f, out)
		}
	}
	out := run(t, r, "%5.2f|%-3d|%02x|%%|%s", 3.14159, int64(7))
	if out[0] != true {
		t.Errorf("out = %v", out)
	}
}

// TestHostileConcurrent: the hostile handlers all at once, each in its
// own event, while ordinary events keep succeeding.
func TestHostileConcurrent(t *testing.T) {
	r := newRuntime(t, hostilePolicy+`kumo.on('ok', function() return 'ok' end)`+"\n"+strings.ReplaceAll(cpuPolicy, "kumo.on('t'", "kumo.on('cpu'"),
		func(o *Options) { o.LuaMemoryLimit = 32 << 20 })
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for _, what := range []string{"concat", "rep_table", "array", "hash", "gsub", "coroutines", "swallow"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.Call(context.Background(), "t", what); err == nil || !strings.Contains(err.Error(), "not enough memory") {
				errs <- errors.New(what + ": " + errString(err))
			}
		}()
	}
	for _, what := range []string{"find", "loop"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			if _, err := r.Call(ctx, "cpu", what); err == nil {
				errs <- errors.New(what + ": no error")
			}
		}()
	}
	stop := make(chan struct{})
	okDone := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				okDone <- n
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			out, err := r.Call(ctx, "ok")
			cancel()
			if err != nil || out[0] != "ok" {
				errs <- errors.New("ok event: " + errString(err))
			}
			n++
			time.Sleep(time.Millisecond)
		}
	}()
	wg.Wait()
	close(stop)
	if n := <-okDone; n < 10 {
		t.Errorf("only %d ordinary events ran meanwhile", n)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// memHost is a Host that also guards memory.
type memHost struct {
	fakeHost
	soft, hard int64
}

func (h *memHost) SetMemorySoftLimit(n int64) { h.soft = n }
func (h *memHost) SetMemoryHardLimit(n int64) { h.hard = n }
func (h *memHost) MemorySoftLimit() int64     { return h.soft }
func (h *memHost) MemoryHardLimit() int64     { return h.hard }

func TestMemoryLimitFunctions(t *testing.T) {
	src := `
kumo.on('pre_init', function()
  kumo.set_memory_hard_limit(2048 * 1024 * 1024)
  kumo.set_memory_soft_limit(1024 * 1024 * 1024)
end)
kumo.on('t', function() return kumo.get_memory_soft_limit(), kumo.get_memory_hard_limit(), pcall(kumo.set_memory_soft_limit, -1) end)`
	h := &memHost{}
	r := newRuntime(t, src, func(o *Options) { o.Host = h })
	if h.soft != 1<<30 || h.hard != 2<<30 {
		t.Fatalf("host got soft %d hard %d", h.soft, h.hard)
	}
	out := run(t, r)
	if out[0] != int64(1<<30) || out[1] != int64(2<<30) || out[2] != false {
		t.Fatalf("out = %v", out)
	}
	// without a MemoryHost they are accepted and do nothing
	r2 := newRuntime(t, src, func(o *Options) { o.Host = &fakeHost{} })
	if out := run(t, r2); out[0] != nil || out[1] != nil {
		t.Fatalf("out = %v", out)
	}
}

func TestReleaseSpare(t *testing.T) {
	r := newRuntime(t, `kumo.on('t', function() return 1 end)`)
	run(t, r)
	if n := r.ReleaseSpare(); n != 1 {
		t.Fatalf("released %d states, want the 1 pooled", n)
	}
	if len(r.slots) != 0 {
		t.Fatalf("%d slots still taken", len(r.slots))
	}
	run(t, r) // a new state is made on demand
}

// TestMemoryLimitHostCopies: what host methods keep out of the Lua
// state's sight (message metadata, headers, the body) counts against its
// limit for the event, so that a loop of them fails the event; replacing
// a value does not add up.
func TestMemoryLimitHostCopies(t *testing.T) {
	r := newRuntime(t, `
kumo.on('t', function(what, msg, cm)
  local s = string.rep('x', 1e5)
  if what == 'meta' then for i = 1, 1e9 do msg:set_meta('k' .. i, s) end end
  if what == 'conn_meta' then for i = 1, 1e9 do cm:set_meta('k' .. i, s) end end
  if what == 'header' then for i = 1, 1e9 do msg:append_header('X-K', s) end end
  if what == 'replace' then
    for i = 1, 3000 do msg:set_meta('same', s .. i) msg:set_data(s .. i) end
    return 'ok'
  end
end)`, func(o *Options) { o.LuaMemoryLimit = 16 << 20 })
	for _, what := range []string{"meta", "conn_meta", "header"} {
		msg := testMessage(t, "Subject: x\r\n\r\nbody\r\n", "a@example.com")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := r.Call(ctx, "t", what, msg, newTestConn())
		cancel()
		if err == nil || !strings.Contains(err.Error(), "not enough memory") {
			t.Errorf("%s: err = %v", what, err)
		}
	}
	msg := testMessage(t, "Subject: x\r\n\r\nbody\r\n", "a@example.com")
	out, err := r.Call(context.Background(), "t", "replace", msg, newTestConn())
	if err != nil || out[0] != "ok" {
		t.Fatalf("replace: %v %v", out, err)
	}
}

// TestStringRepSeparatorAndLimit: Lua 5.2's separator; a result larger
// than the limit is refused before anything is allocated (a pcall can go
// on); one that fits the limit but not next to what the state holds fails
// the event.
func TestStringRepSeparatorAndLimit(t *testing.T) {
	r := newRuntime(t, `kumo.on('t', function(n)
  if n then
    local keep = string.rep('x', 20e6)
    return #keep + #string.rep('y', n)
  end
  local ok, err = pcall(string.rep, 'x', 1e9)
  return #string.rep('ab', 3, ','), string.rep('ab', 3, ','), string.rep('x', 0), #string.rep('xy', 5e6), ok, err
end)`, func(o *Options) { o.LuaMemoryLimit = 32 << 20 })
	out := run(t, r)
	if out[0] != int64(8) || out[1] != "ab,ab,ab" || out[2] != "" || out[3] != int64(1e7) || out[4] != false ||
		!strings.Contains(out[5].(string), "resulting string too large") {
		t.Fatalf("out = %#v", out)
	}
	if out, err := r.Call(context.Background(), "t", int64(20e6)); err == nil || !strings.Contains(err.Error(), "not enough memory") {
		t.Fatalf("out = %v, err = %v", out, err)
	}
}
