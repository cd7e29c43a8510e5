package runtime

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

func TestSingleEventDuplicate(t *testing.T) {
	_, err := newRuntimeErr(t, `
kumo.on('init', function() end)
kumo.on('init', function() end)
`)
	if err == nil {
		t.Fatal("want error for a second init handler")
	}
	if !strings.Contains(err.Error(), "init event already has a handler defined at ") || !strings.Contains(err.Error(), "policy.lua:2") {
		t.Fatalf("unexpected error: %v", err)
	}
	if !strings.Contains(err.Error(), "policy.lua:3:") {
		t.Fatalf("error should point at the second registration: %v", err)
	}
}

func TestMultipleEventChain(t *testing.T) {
	r := newRuntime(t, `
local calls = {}
kumo.on('get_queue_config', function(d) table.insert(calls, 'a') end)
kumo.on('get_queue_config', function(d) table.insert(calls, 'b'); return nil end)
kumo.on('get_queue_config', function(d) table.insert(calls, 'c'); return d .. '!', table.concat(calls, ',') end)
kumo.on('get_queue_config', function(d) error('must not be reached') end)
`)
	out, err := r.Call(context.Background(), "get_queue_config", "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0] != "example.com!" || out[1] != "a,b,c" {
		t.Fatalf("out = %#v", out)
	}
	if !r.HasHandler("get_queue_config") || r.HasHandler("smtp_server_ehlo") {
		t.Fatal("HasHandler wrong")
	}
	if out, err := r.Call(context.Background(), "nope"); out != nil || err != nil {
		t.Fatalf("unhandled event: %v %v", out, err)
	}
}

func TestMultipleEventNoValue(t *testing.T) {
	r := newRuntime(t, `
kumo.on('pre_init', function() end)
kumo.on('pre_init', function() end)
kumo.on('validate_config', function() kumo.validation_failed() end)
`)
	if err := r.Validate(context.Background()); err == nil {
		t.Fatal("want validation failure")
	}
}

func TestOnInsideEvent(t *testing.T) {
	_, err := newRuntimeErr(t, `kumo.on('init', function() kumo.on('x', function() end) end)`)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := newRuntimeErr(t, `kumo.on('init', function() kumo.on('x', function() end) end)`)
	err = r.Init(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not allowed while the init event is executing") {
		t.Fatalf("err = %v", err)
	}
	r = newRuntime(t, `kumo.on('t', function() kumo.on('y', function() end) end)`)
	if _, err := r.Call(context.Background(), "t"); err == nil {
		t.Fatal("kumo.on inside an event must fail")
	}
}

func TestPreInitThenInit(t *testing.T) {
	h := &fakeHost{}
	newRuntime(t, `
order = {}
kumo.on('pre_init', function() table.insert(order, 'p1') end)
kumo.on('init', function()
  table.insert(order, 'init:' .. _KUMO_CURRENT_EVENT)
  kumo.configure_accounting_db_path(table.concat(order, ','))
end)
kumo.on('pre_init', function() table.insert(order, 'p2') end)
`, func(o *Options) { o.Host = h })
	if h.acctPath != "p1,p2,init:init" {
		t.Fatalf("order = %q", h.acctPath)
	}
}

func TestCurrentEventAndRegistrars(t *testing.T) {
	r := newRuntime(t, `
kumo.on('t', function()
  local regs = kumo.get_event_registrars('t')
  return _KUMO_CURRENT_EVENT, #regs, regs[1][1]
end)
`)
	out := run(t, r)
	if out[0] != "t" || out[1] != int64(1) || !strings.HasSuffix(out[2].(string), "policy.lua:2") {
		t.Fatalf("out = %#v", out)
	}
}

func TestInitErrorLocation(t *testing.T) {
	r, err := newRuntimeErr(t, "kumo.on('init', function()\n  local x = nil\n  error('boom')\nend)\n")
	if err != nil {
		t.Fatal(err)
	}
	err = r.Init(context.Background())
	if err == nil || !strings.Contains(err.Error(), "policy.lua:3: boom") {
		t.Fatalf("err = %v", err)
	}
	// a runtime error in the top level
	_, err = newRuntimeErr(t, "local a = 1\nlocal b = a.x.y\n")
	if err == nil || !strings.Contains(err.Error(), "policy.lua:2:") {
		t.Fatalf("err = %v", err)
	}
}

func TestSyntaxErrorLocation(t *testing.T) {
	_, err := newRuntimeErr(t, "kumo.on('init', function()\n  local x = = 1\nend)\n")
	if err == nil || !strings.Contains(err.Error(), "policy.lua:2:") || !strings.Contains(err.Error(), "syntax error") {
		t.Fatalf("err = %v", err)
	}
}

func TestInitHostBindError(t *testing.T) {
	h := &fakeHost{bindErr: errBind}
	r, err := newRuntimeErr(t, `kumo.on('init', function() kumo.start_esmtp_listener{listen='127.0.0.1:0'} end)`, func(o *Options) { o.Host = h })
	if err != nil {
		t.Fatal(err)
	}
	err = r.Init(context.Background())
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "policy.lua:1") {
		t.Fatalf("err = %v", err)
	}
}

func TestValidatingSkipsHost(t *testing.T) {
	h := &fakeHost{}
	newRuntime(t, `
kumo.on('init', function()
  assert(_VALIDATING_CONFIG == true)
  kumo.start_esmtp_listener{listen='0:2026'}
  kumo.define_spool{name='data', path='/tmp/x'}
end)`, func(o *Options) { o.Host = h; o.Validating = true })
	if len(h.esmtp) != 0 || len(h.spools) != 0 {
		t.Fatal("host called while validating")
	}
}

func TestRejectMapping(t *testing.T) {
	r := newRuntime(t, `
kumo.on('smtp_server_mail_from', function(sender, conn)
  local u = sender.user
  if u == 'reject' then kumo.reject(550, '5.7.1 go away') end
  if u == 'disc' then kumo.disconnect(421, '4.3.2 bye') end
  if u == 'f421' then kumo.disconnect(451, 'later', 'FollowWith421') end
  if u == 'if421' then kumo.disconnect(451, 'later', 'If421') end
  if u == 'pc' then
    local ok, err = pcall(kumo.reject, 552, 'caught')
    error(err) -- rethrow the same rejection
  end
  if u == 'err' then error('oops') end
end)
`)
	cm := message.NewConnMeta()
	cases := []struct {
		user string
		want *smtpreply.Rejection
	}{
		{"reject", &smtpreply.Rejection{Code: 550, Text: "5.7.1 go away", Mode: smtpreply.If421}},
		{"disc", &smtpreply.Rejection{Code: 421, Text: "4.3.2 bye", Mode: smtpreply.ForceDisconnect}},
		{"f421", &smtpreply.Rejection{Code: 451, Text: "later", Mode: smtpreply.FollowWith421}},
		{"if421", &smtpreply.Rejection{Code: 451, Text: "later", Mode: smtpreply.If421}},
		{"pc", &smtpreply.Rejection{Code: 552, Text: "caught", Mode: smtpreply.If421}},
	}
	for _, c := range cases {
		err := r.MailFrom(context.Background(), message.Address{User: c.user, Domain: "x.com"}, cm)
		var rej *smtpreply.Rejection
		if !errors.As(err, &rej) {
			t.Fatalf("%s: err = %v", c.user, err)
		}
		if *rej != *c.want {
			t.Fatalf("%s: got %+v want %+v", c.user, rej, c.want)
		}
	}
	err := r.MailFrom(context.Background(), message.Address{User: "err", Domain: "x.com"}, cm)
	var rej *smtpreply.Rejection
	if err == nil || errors.As(err, &rej) || !strings.Contains(err.Error(), "policy.lua:") || !strings.Contains(err.Error(), "oops") {
		t.Fatalf("err = %v", err)
	}
	if err := r.MailFrom(context.Background(), message.Address{User: "ok", Domain: "x.com"}, cm); err != nil {
		t.Fatal(err)
	}
}
