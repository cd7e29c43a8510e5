package runtime

import (
	"context"
	"fmt"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/message"
)

// handlerProto compiles `return <fn>` and returns the function's proto.
func handlerProto(t *testing.T, fn string) *lua.FunctionProto {
	t.Helper()
	proto, err := compileChunk([]byte("local up = {}\nreturn "+fn), "h.lua")
	if err != nil {
		t.Fatal(err)
	}
	if len(proto.FunctionPrototypes) != 1 {
		t.Fatalf("%d functions in %q", len(proto.FunctionPrototypes), fn)
	}
	return proto.FunctionPrototypes[0]
}

func TestArgEscapes(t *testing.T) {
	msgMethods := argMethods()[msgArg]
	keeps := func(fn string) bool { return argEscapes(handlerProto(t, fn), 0, msgMethods) }
	for _, fn := range []string{
		`function(msg) msg:set_meta('queue', 'null') end`,
		`function(msg, conn) msg:set_meta('queue', conn:get_meta('x')) end`,
		`function(msg) end`,
		`function(msg)
		   local q = msg:get_meta('queue')
		   if q == nil or q == 'x' then msg:set_meta('queue', 'null') else msg:set_meta('tenant', msg:id()) end
		   for i = 1, 3 do msg:append_header('X-N', tostring(i)) end
		   for k, v in pairs({a = 1}) do msg:set_meta(k, v) end
		   local r = msg:recipient()
		   if r and r.domain == 'x' then kumo.reject(550, 'no') end
		 end`,
		`function(msg) if msg then msg:set_meta('a', 'b') end end`,
		`function(msg) if msg == nil then return end msg:set_meta('a', msg:get_meta('b') or 'c') end`,
		`function(msg) msg = nil; up.x = msg end`, // the parameter was overwritten first
		`function(msg) local t = {msg:id(), msg:sender()} ; up.t = t end`,
	} {
		if keeps(fn) {
			t.Errorf("handler thought to keep msg: %s", fn)
		}
	}
	for _, fn := range []string{
		`function(msg) saved = msg end`,
		`function(msg) up.m = msg end`,
		`function(msg) up[msg] = true end`,
		`function(msg) local t = {msg} ; up.t = t end`,
		`function(msg) local t = {m = msg} end`,
		`function(msg) return msg end`,
		`function(msg) print(msg) end`,
		`function(msg) kumo.log_info('x', msg) end`,
		`function(msg) local s = tostring(msg) end`,
		`function(msg) local s = 'x' .. msg end`,
		`function(msg) local m = msg; saved = m end`,
		`function(msg) local f = function() return msg end; up.f = f end`,
		`function(msg) up.f = function() msg:id() end end`,
		`function(msg) local f = msg.set_meta; f(msg, 'a', 'b') end`,
		`function(msg) msg:set_meta('self', msg) end`,
		`function(msg) msg:no_such_method() end`,
		`function(msg) local k = 'set_meta'; msg[k](msg, 'a', 'b') end`,
		`function(msg) coroutine.wrap(function(m) saved = m end)(msg) end`,
		`function(msg) local ok = pcall(msg.id, msg) end`,
		`function(msg) if msg < up then end end`,
		`function(msg) local x = msg or up; saved = x end`,
		`function(msg) local x = msg and msg; saved = x end`,
		`function(msg) for i = 1, 2 do if i == 2 then saved = msg end end end`,
		`function(msg) setmetatable(up, {__index = msg}) end`,
		`function(...) local msg = ...; msg:id() end`,
		`function(msg, ...) msg:id() end`,
	} {
		if !keeps(fn) {
			t.Errorf("handler thought not to keep msg: %s", fn)
		}
	}
	// the second parameter is analysed on its own
	p := handlerProto(t, `function(msg, conn) saved = msg; conn:set_meta('a', 'b') end`)
	if !argEscapes(p, 0, msgMethods) || argEscapes(p, 1, argMethods()[connArg]) {
		t.Error("per-parameter analysis")
	}
}

// A policy that keeps msg beyond its event never sees another message
// through it, even though messages are recycled (message pool) and
// handlers that do not keep msg share one userdata per state.
func TestKeptMessageHandleNeverShowsAnotherMessage(t *testing.T) {
	r := newRuntime(t, `
kumo.on('smtp_server_data', function(msg)
  kept_in_data = msg -- kept: gets its own handle
end)
kumo.on('smtp_server_message_received', function(msg, conn)
  -- uses only methods: gets the state's reused handle
  local n = msg:get_meta('n')
  for _, h in ipairs({kept_in_data, kept_in_rcvd and kept_in_rcvd.h}) do
    local ok, v = pcall(function() return h:get_meta('n') end)
    if ok then
      error('kept handle still answers: n=' .. tostring(v) .. ' while handling ' .. n)
    end
    if not tostring(v):find('no longer valid', 1, true) then
      error('unexpected error: ' .. tostring(v))
    end
  end
  msg:set_meta('queue', 'null')
end)
kumo.on('smtp_server_split_transaction', function(msg, conn)
  kept_in_rcvd = {h = msg} -- kept inside a table
  return nil
end)
`)
	ctx := context.Background()
	gen := message.NewIDGenerator()
	for i := 0; i < 50; i++ {
		msg := message.Acquire(gen, message.Address{User: "s", Domain: "x.example"}, []message.Address{{User: "r", Domain: "y.example"}}, []byte(testData), 0)
		msg.SetMeta("n", fmt.Sprint(i))
		cm := newTestConn()
		if err := r.Data(ctx, msg, cm); err != nil {
			t.Fatal(err)
		}
		if _, err := r.SplitTransaction(ctx, msg, cm); err != nil {
			t.Fatal(err)
		}
		if err := r.MessageReceived(ctx, msg, cm); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if q, _ := msg.MetaString("queue"); q != "null" {
			t.Fatalf("message %d: queue %q", i, q)
		}
		msg.Release()
	}
}

// getmetatable on the event objects is false, as under KumoMTA (mlua), so
// that their methods cannot be replaced.
func TestEventObjectMetatablesProtected(t *testing.T) {
	r := newRuntime(t, `
kumo.on('smtp_server_message_received', function(msg, conn)
  assert(getmetatable(msg) == false, 'msg metatable visible')
  assert(getmetatable(conn) == false, 'conn metatable visible')
  assert(tostring(msg):find('^Message%('))
  msg:set_meta('queue', 'null')
end)`)
	msg := testMessage(t, testData, "a@example.com")
	if err := r.MessageReceived(context.Background(), msg, newTestConn()); err != nil {
		t.Fatal(err)
	}
}

// The sink policy's event costs no allocation on a warm state.
func TestSinkEventAllocations(t *testing.T) {
	r := newRuntime(t, `
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', 'null')
end)`)
	msg := testMessage(t, testData, "a@example.com")
	cm := newTestConn()
	ctx := context.Background()
	call := func() {
		if err := r.MessageReceived(ctx, msg, cm); err != nil {
			t.Fatal(err)
		}
	}
	call()
	if n := testing.AllocsPerRun(100, call); n > 0 {
		t.Fatalf("%v allocations per event", n)
	}
	if !strings.Contains(fmt.Sprint(msg.MetaMap()), "null") {
		t.Fatal("meta not set")
	}
}
