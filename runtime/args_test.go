package runtime

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// Arguments a handler cannot reach are passed as nil (not built); the
// handlers that can reach them see them as before.
func TestHandlerArgumentsByParameterCount(t *testing.T) {
	for _, tc := range []struct{ name, fn string }{
		{"one", `function(msg) msg:set_meta('saw', 'msg') end`},
		{"two", `function(msg, conn) msg:set_meta('saw', conn:get_meta('received_from')) end`},
		{"vararg", `function(...)
		  local msg, conn = ...
		  msg:set_meta('saw', select('#', ...) .. ' ' .. conn:get_meta('received_from'))
		end`},
		{"named+vararg", `function(msg, ...)
		  local conn = ...
		  msg:set_meta('saw', conn:get_meta('received_from'))
		end`},
		// a local declared after the parameters must not see the dropped argument
		{"local", `function(msg) local x; msg:set_meta('saw', tostring(x)) end`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRuntime(t, `kumo.on('smtp_server_message_received', `+tc.fn+`)`)
			msg := testMessage(t, testData, "a@example.com")
			if err := r.MessageReceived(context.Background(), msg, newTestConn()); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"one": "msg", "two": "10.0.0.1:1234", "vararg": "2 10.0.0.1:1234",
				"named+vararg": "10.0.0.1:1234", "local": "nil"}[tc.name]
			if got, _ := msg.MetaString("saw"); got != want {
				t.Fatalf("saw %q, want %q", got, want)
			}
		})
	}
	// a Go function as handler gets every argument
	r := newRuntime(t, `kumo.on('smtp_server_rcpt_to', print)`)
	a := testMessage(t, testData, "a@example.com").Recipients()[0]
	if err := r.RcptTo(context.Background(), a, newTestConn()); err != nil {
		t.Fatal(err)
	}
}

// set_meta shares one boxed value per distinct short string and state;
// every message still gets the value it was given.
func TestSetMetaBoxedStrings(t *testing.T) {
	r := newRuntime(t, `
kumo.on('smtp_server_message_received', function(msg)
  local n = msg:get_meta('n')
  msg:set_meta('queue', 'null')
  msg:set_meta('v', 'value-' .. n)
  msg:set_meta('long', string.rep('x', 100) .. n)
end)`)
	for i := 0; i < 600; i++ {
		msg := testMessage(t, testData, "a@example.com")
		msg.SetMeta("n", fmt.Sprint(i))
		if err := r.MessageReceived(context.Background(), msg, newTestConn()); err != nil {
			t.Fatal(err)
		}
		q, _ := msg.MetaString("queue")
		v, _ := msg.MetaString("v")
		l, _ := msg.MetaString("long")
		if q != "null" || v != fmt.Sprint("value-", i) || l != strings.Repeat("x", 100)+fmt.Sprint(i) {
			t.Fatalf("message %d: queue %q v %q long %q", i, q, v, l)
		}
	}
}
