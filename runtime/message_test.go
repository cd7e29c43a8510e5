package runtime

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

func newTestConn() *message.ConnMeta {
	cm := message.NewConnMeta()
	cm.Set("received_from", "10.0.0.1:1234")
	return cm
}

const testData = "Subject: hello\r\nX-Campaign-ID: c1\r\nX-Other: o\r\nTo: a@example.com\r\n\r\nbody\r\n"

func TestMessageMethods(t *testing.T) {
	r := newRuntime(t, `
kumo.on('smtp_server_message_received', function(msg, conn)
  assert(#msg:id() == 32)
  assert(msg:sender().email == 'sender@example.com')
  assert(tostring(msg:sender()) == 'sender@example.com')
  assert(msg:sender().user == 'sender' and msg:sender().domain == 'example.com')
  assert(msg:recipient().email == 'a@example.com')
  assert(#msg:recipient_list() == 1)
  msg:set_sender('"info@"@bounce.example.com')
  assert(msg:sender().user == 'info@', msg:sender().user)
  msg:set_recipient({'x@one.example', msg:sender()})
  local rs = msg:recipient()
  assert(#rs == 2 and rs[1].domain == 'one.example')
  msg:set_recipient('only@two.example')
  assert(msg:recipient().domain == 'two.example')

  msg:set_meta('tenant', 'acme')
  msg:set_meta('num', 42)
  msg:set_meta('f', 1.5)
  msg:set_meta('flag', true)
  msg:set_meta('list', {1, 'two', {three=3}})
  msg:set_meta('empty', {})
  msg:set_meta('gone', nil)
  assert(msg:get_meta('tenant') == 'acme')
  assert(msg:get_meta('num') == 42)
  assert(msg:get_meta('list')[3].three == 3)
  assert(msg:get_meta('missing') == nil)
  assert(msg:get_meta('received_from') == '10.0.0.1:1234')
  assert(msg:queue_name() == 'acme@two.example', msg:queue_name())

  assert(msg:get_first_named_header_value('subject') == 'hello')
  assert(msg:get_first_named_header_value('nope') == nil)
  msg:append_header('X-Added', 'v1')
  msg:prepend_header('X-First', 'v0')
  local all = msg:get_all_headers()
  assert(all[1][1] == 'X-First' and all[1][2] == 'v0', all[1][1])
  assert(#msg:get_all_named_header_values('X-Added') == 1)
  msg:import_x_headers()
  assert(msg:get_meta('x_campaign_id') == 'c1')
  msg:remove_x_headers({'X-Other'})
  assert(msg:get_first_named_header_value('X-Other') == nil)
  msg:remove_all_named_headers('To')
  assert(msg:get_first_named_header_value('To') == nil)
  assert(msg:num_attempts() == 0)
  msg:set_force_sync(true)
  assert(msg:get_data():find('body', 1, true))
  assert(conn:get_meta('received_from') == '10.0.0.1:1234')
  conn:set_meta('seen', true)
  assert(conn:auth_info() == nil)
end)
`)
	msg := testMessage(t, testData, "a@example.com")
	cm := newTestConn()
	msg.CopyConnMeta(cm)
	if err := r.MessageReceived(context.Background(), msg, cm); err != nil {
		t.Fatal(err)
	}
	checks := map[string]any{"tenant": "acme", "num": int64(42), "f": 1.5, "flag": true,
		"list": []any{int64(1), "two", map[string]any{"three": int64(3)}}, "empty": map[string]any{}, "gone": nil}
	for k, want := range checks {
		got, ok := msg.Meta(k)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("meta %s = %#v (%v), want %#v", k, got, ok, want)
		}
	}
	if v, _ := cm.Get("seen"); v != true {
		t.Fatalf("conn meta seen = %v", v)
	}
	if got := msg.Recipients(); len(got) != 1 || got[0].String() != "only@two.example" {
		t.Fatalf("recipients = %v", got)
	}
	if !strings.Contains(string(msg.Data()), "X-Added: v1") {
		t.Fatalf("data = %q", msg.Data())
	}
}

func TestSetDataAndBadAddress(t *testing.T) {
	r := newRuntime(t, `
kumo.on('smtp_server_data', function(msg, conn)
  msg:set_data('Subject: new\r\n\r\nx\r\n')
  local ok, err = pcall(msg.set_sender, msg, 'not an address')
  assert(not ok and tostring(err):find('invalid address'), tostring(err))
end)`)
	msg := testMessage(t, testData, "a@example.com")
	if err := r.Data(context.Background(), msg, newTestConn()); err != nil {
		t.Fatal(err)
	}
	if string(msg.Data()) != "Subject: new\r\n\r\nx\r\n" {
		t.Fatalf("data = %q", msg.Data())
	}
}

func TestConnMetaAuthInfo(t *testing.T) {
	r := newRuntime(t, `
kumo.on('smtp_server_rcpt_to', function(rcpt, conn)
  local info = conn:auth_info()
  assert(info.identities[1].identity == 'alice')
  assert(rcpt.email == 'r@example.com' and rcpt.domain == 'example.com')
  conn:set_meta('x', {a=1})
  conn:set_meta('received_from', nil)
end)`)
	cm := newTestConn()
	cm.Set("authn_id", "alice")
	if err := r.RcptTo(context.Background(), message.Address{User: "r", Domain: "example.com"}, cm); err != nil {
		t.Fatal(err)
	}
	if v, _ := cm.Get("x"); !reflect.DeepEqual(v, map[string]any{"a": int64(1)}) {
		t.Fatalf("x = %#v", v)
	}
	if _, ok := cm.Get("received_from"); ok {
		t.Fatal("received_from not removed")
	}
}

func TestStaleHandle(t *testing.T) {
	r := newRuntime(t, `
kumo.on('smtp_server_message_received', function(msg, conn)
  if saved then
    local ok, err = pcall(function() return saved:id() end)
    assert(not ok)
    local ok2, err2 = pcall(function() return saved_conn:get_meta('x') end)
    assert(not ok2)
    error(tostring(err))
  end
  saved = msg
  saved_conn = conn
end)`, func(o *Options) { o.MaxStates = 1 })
	ctx := context.Background()
	if err := r.MessageReceived(ctx, testMessage(t, testData, "a@example.com"), newTestConn()); err != nil {
		t.Fatal(err)
	}
	err := r.MessageReceived(ctx, testMessage(t, testData, "a@example.com"), newTestConn())
	if err == nil || !strings.Contains(err.Error(), "message object is no longer valid") {
		t.Fatalf("err = %v", err)
	}
}

func TestPolicyEvents(t *testing.T) {
	r := newRuntime(t, `
kumo.on('smtp_server_connection_accepted', function(conn) conn:set_meta('accepted', true) end)
kumo.on('smtp_server_ehlo', function(domain, conn, exts)
  conn:set_meta('ehlo_args', exts == nil and 2 or 3)
  if domain == 'keep' then return nil end
  if exts then table.insert(exts, 'XFOO') return exts end
end)
kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn)
  if password == 'table' then return {identities={{identity=authc, context='x'}}} end
  return password == 'secret'
end)
kumo.on('smtp_server_split_transaction', function(msg, conn)
  if msg:get_meta('split') then
    local out = {}
    for _, r in ipairs(msg:recipient_list()) do table.insert(out, {r}) end
    table.insert(out, {'str@example.com'})
    return out
  end
end)
kumo.on('smtp_server_rewrite_response', function(status, text, cmd, conn)
  if cmd == nil then return nil, nil end
  if status == 250 then return nil, 'super fantastic! ' .. text end
  return 421, nil
end)
`)
	ctx := context.Background()
	cm := newTestConn()
	if err := r.ConnectionAccepted(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if v, _ := cm.Get("accepted"); v != true {
		t.Fatal("accepted not set")
	}
	exts, err := r.Ehlo(ctx, "client.example", cm, []string{"PIPELINING", "8BITMIME"})
	if err != nil || !reflect.DeepEqual(exts, []string{"PIPELINING", "8BITMIME", "XFOO"}) {
		t.Fatalf("exts=%v err=%v", exts, err)
	}
	if v, _ := cm.Get("ehlo_args"); v != int64(3) {
		t.Fatalf("ehlo args %v", v)
	}
	exts, err = r.Ehlo(ctx, "client.example", cm, nil)
	if err != nil || exts != nil {
		t.Fatalf("helo exts=%v err=%v", exts, err)
	}
	if v, _ := cm.Get("ehlo_args"); v != int64(2) {
		t.Fatalf("helo args %v", v)
	}
	for pw, want := range map[string]bool{"secret": true, "wrong": false, "table": true} {
		ok, err := r.AuthPlain(ctx, "", "alice", pw, cm)
		if err != nil || ok != want {
			t.Fatalf("auth %s: %v %v", pw, ok, err)
		}
	}
	msg := testMessage(t, testData, "a@x.example", "b@y.example")
	batches, err := r.SplitTransaction(ctx, msg, cm)
	if err != nil || batches != nil {
		t.Fatalf("batches=%v err=%v", batches, err)
	}
	msg.SetMeta("split", true)
	batches, err = r.SplitTransaction(ctx, msg, cm)
	if err != nil || len(batches) != 3 || batches[1][0].String() != "b@y.example" || batches[2][0].String() != "str@example.com" {
		t.Fatalf("batches=%v err=%v", batches, err)
	}
	code, text, err := r.RewriteResponse(ctx, 250, "OK", "DATA", cm)
	if err != nil || code != 250 || text != "super fantastic! OK" {
		t.Fatalf("%d %q %v", code, text, err)
	}
	code, text, err = r.RewriteResponse(ctx, 550, "no", "RCPT", cm)
	if err != nil || code != 421 || text != "no" {
		t.Fatalf("%d %q %v", code, text, err)
	}
	code, text, err = r.RewriteResponse(ctx, 220, "hi", "", cm)
	if err != nil || code != 220 || text != "hi" {
		t.Fatalf("%d %q %v", code, text, err)
	}
	// events without handlers are free
	if err := r.MailFrom(ctx, message.Address{}, cm); err != nil {
		t.Fatal(err)
	}
}

func TestRejectKeepsStateErrorDropsIt(t *testing.T) {
	r := newRuntime(t, `
n = (n or 0)
kumo.on('smtp_server_rcpt_to', function(rcpt, conn)
  n = n + 1
  conn:set_meta('n', n)
  if rcpt.user == 'rej' then kumo.reject(550, 'no') end
  if rcpt.user == 'err' then error('bad') end
end)`, func(o *Options) { o.MaxStates = 1 })
	ctx := context.Background()
	cm := newTestConn()
	call := func(user string) error {
		return r.RcptTo(ctx, message.Address{User: user, Domain: "x.example"}, cm)
	}
	var rej *smtpreply.Rejection
	if err := call("rej"); !errors.As(err, &rej) {
		t.Fatal(err)
	}
	_ = call("ok")
	if v, _ := cm.Get("n"); v != int64(2) {
		t.Fatalf("state not reused after reject: n=%v", v)
	}
	if err := call("err"); err == nil {
		t.Fatal("want error")
	}
	_ = call("ok")
	if v, _ := cm.Get("n"); v != int64(1) {
		t.Fatalf("state reused after error: n=%v", v)
	}
}
