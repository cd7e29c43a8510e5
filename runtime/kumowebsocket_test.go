package runtime

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// TestConnectWebSocket: kumo.http.connect_websocket against a websocket
// server in the test (coder/websocket on a loopback port): the handshake
// response (101, a server header), recv, recv_batch collecting what
// arrives within the duration (an empty table when nothing does, the
// messages received before the peer closed, an error once it is closed
// and drained), a large message, and the errors for a refused connection
// and an http:// URL.
func TestConnectWebSocket(t *testing.T) {
	big := strings.Repeat("x", 100_000)
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/release" {
			close(release)
			return
		}
		w.Header().Set("X-Served-By", "kumogo-test")
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		ctx := r.Context()
		c.Write(ctx, websocket.MessageText, []byte(`{"n":1}`))
		c.Write(ctx, websocket.MessageText, []byte(big))
		<-release // the client's first recv_batch finds nothing more
		for _, m := range []string{"a", "b", "c"} {
			c.Write(ctx, websocket.MessageBinary, []byte(m))
		}
		c.Close(websocket.StatusGoingAway, "bye")
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	r := newRuntime(t, `
local kumo = require 'kumo'
kumo.on('t', function(url, release_url)
  local stream, response = kumo.http.connect_websocket(url)
  assert(response:status_code() == 101, response:status_code())
  assert(response:headers()['X-Served-By'] == 'kumogo-test', 'header')
  local first = kumo.json_parse(stream:recv())
  assert(first.n == 1, 'first message')
  assert(#stream:recv() == 100000, 'large message')
  local none = stream:recv_batch '200ms'
  assert(#none == 0, 'nothing arrives: ' .. #none)
  -- the server sends the rest once this request reaches it
  kumo.http.build_client({}):get(release_url):send()
  local batch = {}
  -- the server sends three messages and closes: recv_batch returns what
  -- came before the close
  while #batch < 3 do
    for _, m in ipairs(stream:recv_batch(5)) do table.insert(batch, m) end
  end
  assert(table.concat(batch, ',') == 'a,b,c', table.concat(batch, ','))
  local ok, err = pcall(function() return stream:recv_batch '1s' end)
  assert(not ok and tostring(err):find 'closed by the peer %(1001 bye%)', tostring(err))
  ok, err = pcall(function() return stream:recv() end)
  assert(not ok and tostring(err):find 'closed', tostring(err))
  stream:close()
  return 'ok'
end)
kumo.on('dial', function(url) return kumo.http.connect_websocket(url) end)
`)
	if out := run(t, r, "ws://"+l.Addr().String()+"/events", "http://"+l.Addr().String()+"/release"); out[0] != "ok" {
		t.Fatal(out)
	}
	ctx := context.Background()
	if _, err := r.Call(ctx, "dial", "ws://127.0.0.1:1/"); err == nil || !strings.Contains(err.Error(), "kumo.http.connect_websocket") || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("refused: %v", err)
	}
	if _, err := r.Call(ctx, "dial", "http://"+l.Addr().String()+"/"); err == nil || !strings.Contains(err.Error(), "must be ws:// or wss://") {
		t.Fatalf("http URL: %v", err)
	}
}
