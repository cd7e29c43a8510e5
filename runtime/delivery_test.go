package runtime

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

func strp(s string) *string { return &s }

func TestGetQueueConfigNoHandler(t *testing.T) {
	r := newRuntime(t, "")
	c, err := r.GetQueueConfig(context.Background(), "example.com", nil, nil, nil)
	if err != nil || !reflect.DeepEqual(c, config.DefaultQueueConfig()) {
		t.Fatalf("got %+v, %v", c, err)
	}
}

func TestGetQueueConfigChain(t *testing.T) {
	r := newRuntime(t, `
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain == 'args.example' then
    assert(tenant == nil and campaign == 'camp' and routing_domain == 'route.example', 'bad args')
    return kumo.make_queue_config{provider_name = 'args'}
  end
  -- falls off the end: next handler
end)
kumo.on('get_queue_config', function(domain, tenant)
  if domain == 'nil.example' then return nil end -- explicit nil counts as no value
  if domain == 'table.example' then return {retry_interval = '1m'} end
  if domain == 'string.example' then return 'nope' end
  if domain == 'path.example' then return kumo.make_egress_path{} end
  if domain == 'error.example' then error('boom') end
  if tenant == 't1' then return kumo.make_queue_config{retry_interval = '5s', egress_pool = 'pool-' .. domain} end
end)
kumo.on('get_queue_config', function(domain)
  if domain == 'third.example' then
    return kumo.make_queue_config{protocol = {smtp = {mx_list = {'[127.0.0.1]:2026'}}}}
  end
end)
`)
	ctx := context.Background()
	c, err := r.GetQueueConfig(ctx, "args.example", nil, strp("camp"), strp("route.example"))
	if err != nil || c.ProviderName != "args" {
		t.Fatalf("args: %+v, %v", c, err)
	}
	c, err = r.GetQueueConfig(ctx, "example.com", strp("t1"), nil, nil)
	if err != nil || c.RetryInterval != 5*time.Second || c.EgressPool != "pool-example.com" {
		t.Fatalf("second handler: %+v, %v", c, err)
	}
	c, err = r.GetQueueConfig(ctx, "third.example", nil, nil, nil)
	if err != nil || !reflect.DeepEqual(c.Protocol.MXList, []config.MXListEntry{{Name: "[127.0.0.1]:2026"}}) {
		t.Fatalf("third handler: %+v, %v", c, err)
	}
	for _, d := range []string{"nil.example", "nobody.example"} {
		c, err = r.GetQueueConfig(ctx, d, nil, nil, nil)
		if err != nil || !reflect.DeepEqual(c, config.DefaultQueueConfig()) {
			t.Fatalf("%s: %+v, %v", d, c, err)
		}
	}
	for d, want := range map[string]string{
		"table.example":  "get_queue_config must return kumo.make_queue_config{...}, got a table",
		"string.example": "got a string",
		"path.example":   "got a ConfigObject object",
		"error.example":  "boom",
	} {
		_, err = r.GetQueueConfig(ctx, d, nil, nil, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", d, err, want)
		}
	}
	// the runtime still works after errors
	if _, err = r.GetQueueConfig(ctx, "example.com", strp("t1"), nil, nil); err != nil {
		t.Fatal(err)
	}
}

// TestGetQueueConfigCachedObject returns the same object from many calls
// and checks the results do not share slices.
func TestGetQueueConfigCachedObject(t *testing.T) {
	r := newRuntime(t, `
local cfg = kumo.make_queue_config{protocol = {smtp = {mx_list = {'a', 'b'}}}}
kumo.on('get_queue_config', function() return cfg end)
`)
	a, err := r.GetQueueConfig(context.Background(), "x", nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Protocol.MXList[0].Name = "changed"
	b, err := r.GetQueueConfig(context.Background(), "x", nil, nil, nil)
	if err != nil || b.Protocol.MXList[0].Name != "a" {
		t.Fatalf("got %+v, %v", b.Protocol.MXList, err)
	}
}

func TestGetEgressPathConfig(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t, "")
	p, err := r.GetEgressPathConfig(ctx, "example.com", "unspecified", "mx.example.com")
	if err != nil || !reflect.DeepEqual(p, config.DefaultEgressPath()) {
		t.Fatalf("default: %+v, %v", p, err)
	}

	r = newRuntime(t, `
kumo.on('get_egress_path_config', function(routing_domain, source, site)
  if routing_domain == 'none.example' then return end
  if routing_domain == 'table.example' then return {connection_limit = 1} end
  return kumo.make_egress_path{connection_limit = 3, ehlo_domain = source .. '.' .. site, prohibited_hosts = {}}
end)
`)
	p, err = r.GetEgressPathConfig(ctx, "example.com", "ip-1", "mx.example.com")
	if err != nil || p.ConnectionLimit != 3 || p.EhloDomain != "ip-1.mx.example.com" || len(p.ProhibitedHosts) != 0 || p.SMTPPort != 25 {
		t.Fatalf("handler: %+v, %v", p, err)
	}
	if _, err = r.GetEgressPathConfig(ctx, "none.example", "s", "site"); err == nil || !strings.Contains(err.Error(), "did not return a value") {
		t.Fatalf("no value: %v", err)
	}
	if _, err = r.GetEgressPathConfig(ctx, "table.example", "s", "site"); err == nil || !strings.Contains(err.Error(), "must return kumo.make_egress_path{...}, got a table") {
		t.Fatalf("table: %v", err)
	}
}

func TestGetEgressSourceAndPool(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t, "")
	s, err := r.GetEgressSource(ctx, "unspecified")
	if err != nil || !reflect.DeepEqual(s, config.EgressSource{Name: "unspecified", TTL: time.Minute}) {
		t.Fatalf("unspecified source: %+v, %v", s, err)
	}
	p, err := r.GetEgressPool(ctx, "unspecified")
	want := config.EgressPool{Name: "unspecified", Entries: []config.EgressPoolEntry{{Name: "unspecified", Weight: 1}}, TTL: time.Minute}
	if err != nil || !reflect.DeepEqual(p, want) {
		t.Fatalf("unspecified pool: %+v, %v", p, err)
	}
	if _, err = r.GetEgressSource(ctx, "ip-1"); err == nil || !strings.Contains(err.Error(), "no get_egress_source event handler") {
		t.Fatalf("missing source handler: %v", err)
	}
	if _, err = r.GetEgressPool(ctx, "pool"); err == nil || !strings.Contains(err.Error(), "no get_egress_pool event handler") {
		t.Fatalf("missing pool handler: %v", err)
	}

	r = newRuntime(t, `
local sources = { ['ip-1'] = kumo.make_egress_source{name='ip-1', source_address='10.0.0.1', ehlo_domain='mta1.example.com'} }
kumo.on('get_egress_source', function(name)
  if name == 'unspecified' then error('must not be called for unspecified') end
  return sources[name]
end)
kumo.on('get_egress_pool', function(name)
  if name == 'bad' then return kumo.make_egress_source{name='x'} end
  return kumo.make_egress_pool{name=name, entries={{name='ip-1', weight=2}}}
end)
`)
	s, err = r.GetEgressSource(ctx, "ip-1")
	if err != nil || s.SourceAddress != "10.0.0.1" || s.EhloDomain != "mta1.example.com" {
		t.Fatalf("source: %+v, %v", s, err)
	}
	if _, err = r.GetEgressSource(ctx, "ip-9"); err == nil || !strings.Contains(err.Error(), `did not return a value for source "ip-9"`) {
		t.Fatalf("unknown source: %v", err)
	}
	if s, err = r.GetEgressSource(ctx, "unspecified"); err != nil || s.Name != "unspecified" {
		t.Fatalf("unspecified with handler: %+v, %v", s, err)
	}
	p, err = r.GetEgressPool(ctx, "pool")
	if err != nil || !reflect.DeepEqual(p.Entries, []config.EgressPoolEntry{{Name: "ip-1", Weight: 2}}) || p.Name != "pool" {
		t.Fatalf("pool: %+v, %v", p, err)
	}
	if _, err = r.GetEgressPool(ctx, "bad"); err == nil || !strings.Contains(err.Error(), "must return kumo.make_egress_pool{...}") {
		t.Fatalf("bad pool: %v", err)
	}
}

func TestRequeueMessage(t *testing.T) {
	r := newRuntime(t, `
kumo.on('requeue_message', function(msg, response, ctx, inc, delay)
  msg:set_meta('seen1', response .. '|' .. table.concat(ctx, ',') .. '|' .. tostring(inc) .. '|' .. (delay and delay.human or 'nil'))
  if delay then
    msg:set_meta('delay_seconds', delay.seconds)
    msg:set_meta('delay_ms', delay.milliseconds)
    msg:set_meta('delay_str', tostring(delay))
  end
  -- no return value: the next handler runs
end)
kumo.on('requeue_message', function(msg, response)
  if response:find('^550') then kumo.reject(550, 'no more') end
  if response:find('^999') then error('handler failed') end
  msg:set_meta('queue', 'alt.example')
  return true -- stops the chain
end)
kumo.on('requeue_message', function(msg)
  msg:set_meta('third', true)
end)
`)
	ctx := context.Background()
	msg := testMessage(t, "Subject: x\r\n\r\nbody\r\n", "rcpt@example.com")
	d := 90 * time.Second
	if err := r.RequeueMessage(ctx, msg, "451 4.4.1 try later", []string{"ReadyQueueWasSuspended", "Other"}, true, &d); err != nil {
		t.Fatal(err)
	}
	if v, _ := msg.Meta("seen1"); v != "451 4.4.1 try later|ReadyQueueWasSuspended,Other|true|1m 30s" {
		t.Fatalf("seen1 = %v", v)
	}
	if v, _ := msg.Meta("delay_seconds"); v != int64(90) {
		t.Fatalf("delay_seconds = %#v", v)
	}
	if v, _ := msg.Meta("delay_ms"); v != int64(90000) {
		t.Fatalf("delay_ms = %#v", v)
	}
	if v, _ := msg.Meta("delay_str"); v != "1m 30s" {
		t.Fatalf("delay_str = %#v", v)
	}
	if msg.QueueName() != "alt.example" {
		t.Fatalf("queue = %s", msg.QueueName())
	}
	if _, ok := msg.Meta("third"); ok {
		t.Fatal("third handler ran after a handler returned a value")
	}

	msg = testMessage(t, "x", "rcpt@example.com")
	if err := r.RequeueMessage(ctx, msg, "421 4.3.0 x", nil, false, nil); err != nil {
		t.Fatal(err)
	}
	if v, _ := msg.Meta("seen1"); v != "421 4.3.0 x||false|nil" {
		t.Fatalf("seen1 = %v", v)
	}

	err := r.RequeueMessage(ctx, msg, "550 5.1.1 gone", nil, true, nil)
	var rej *smtpreply.Rejection
	if !errors.As(err, &rej) || rej.Code != 550 {
		t.Fatalf("reject: %v", err)
	}
	err = r.RequeueMessage(ctx, msg, "999 x", nil, true, nil)
	if err == nil || errors.As(err, &rej) || !strings.Contains(err.Error(), "lua event requeue_message") || !strings.Contains(err.Error(), "handler failed") {
		t.Fatalf("error: %v", err)
	}
	// no handler: nothing happens
	r2 := newRuntime(t, "")
	if err := r2.RequeueMessage(ctx, msg, "451 x", nil, true, nil); err != nil {
		t.Fatal(err)
	}
}

func TestTimeDeltaMetamethods(t *testing.T) {
	r := newRuntime(t, `
kumo.on('requeue_message', function(msg, response, ctx, inc, delay)
  local sum = delay + delay
  assert(sum.seconds == 3, sum.seconds)
  assert((sum - delay) == delay)
  assert(delay.nanoseconds == 1500000000 and delay.microseconds == 1500000)
  assert((delay - sum).human == '-1s 500ms', (delay - sum).human)
  msg:set_meta('ok', true)
end)
`)
	msg := testMessage(t, "x", "rcpt@example.com")
	d := 1500 * time.Millisecond
	if err := r.RequeueMessage(context.Background(), msg, "451 x", nil, true, &d); err != nil {
		t.Fatal(err)
	}
	if v, _ := msg.Meta("ok"); v != true {
		t.Fatal("handler did not finish")
	}
}

func TestRewriteDeliveryStatus(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t, "")
	if code, changed, err := r.RewriteDeliveryStatus(ctx, "550 5.1.1 x", "example.com", "", "", ""); err != nil || changed || code != 0 {
		t.Fatalf("no handler: %d %v %v", code, changed, err)
	}
	r = newRuntime(t, `
kumo.on('smtp_client_rewrite_delivery_status', function(response, domain, tenant, campaign, routing_domain)
  if response:find('mailbox full') then return 452 end
  if domain == 'args.example' then
    assert(tenant == nil and campaign == 'c' and routing_domain == 'args.example', 'bad args')
    return 421
  end
  if domain == 'route.example' then
    assert(tenant == 't' and routing_domain == 'r.example')
    return nil
  end
  if domain == 'bad.example' then return 'x' end
  if domain == 'range.example' then return 700 end
end)
`)
	cases := []struct {
		resp, domain, tenant, campaign, routing string
		code                                    int
		changed                                 bool
		err                                     string
	}{
		{"552 5.2.2 mailbox full", "example.com", "", "", "", 452, true, ""},
		{"550 x", "args.example", "", "c", "", 421, true, ""},
		{"550 x", "route.example", "t", "", "r.example", 0, false, ""},
		{"550 x", "other.example", "", "", "", 0, false, ""},
		{"550 x", "bad.example", "", "", "", 0, false, "must return a status code number or nil, got string"},
		{"550 x", "range.example", "", "", "", 0, false, "invalid status code 700"},
	}
	for _, c := range cases {
		code, changed, err := r.RewriteDeliveryStatus(ctx, c.resp, c.domain, c.tenant, c.campaign, c.routing)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: got %v want %q", c.domain, err, c.err)
			}
			continue
		}
		if err != nil || code != c.code || changed != c.changed {
			t.Errorf("%s: got %d %v %v", c.domain, code, changed, err)
		}
	}
}

func TestSpoolEnumeratedAndThrottleInsert(t *testing.T) {
	ctx := context.Background()
	r := newRuntime(t, `
kumo.on('spool_message_enumerated', function(msg)
  msg:set_meta('enumerated', true)
end)
kumo.on('throttle_insert_ready_queue', function(msg)
  msg:set_meta('t1', true)
end)
kumo.on('throttle_insert_ready_queue', function(msg)
  msg:set_meta('t2', true)
  if msg:get_meta('fail') then error('throttle failed') end
  return true
end)
kumo.on('throttle_insert_ready_queue', function(msg)
  msg:set_meta('t3', true)
end)
`)
	msg := testMessage(t, "x", "rcpt@example.com")
	if err := r.SpoolMessageEnumerated(ctx, msg); err != nil {
		t.Fatal(err)
	}
	if err := r.ThrottleInsertReadyQueue(ctx, msg); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]bool{"enumerated": true, "t1": true, "t2": true, "t3": false} {
		if _, ok := msg.Meta(k); ok != want {
			t.Errorf("meta %s set = %v, want %v", k, ok, want)
		}
	}
	msg.SetMeta("fail", true)
	if err := r.ThrottleInsertReadyQueue(ctx, msg); err == nil || !strings.Contains(err.Error(), "throttle failed") {
		t.Fatalf("error: %v", err)
	}
	r2 := newRuntime(t, "")
	if err := r2.SpoolMessageEnumerated(ctx, msg); err != nil {
		t.Fatal(err)
	}
	if err := r2.ThrottleInsertReadyQueue(ctx, msg); err != nil {
		t.Fatal(err)
	}
}

// TestDeliveryEventsConcurrent exercises the typed events from many
// goroutines (run with -race).
func TestDeliveryEventsConcurrent(t *testing.T) {
	r := newRuntime(t, `
kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config{egress_pool = domain}
end)
kumo.on('get_egress_path_config', function(rd, source, site)
  return kumo.make_egress_path{ehlo_domain = site}
end)
`)
	ctx := context.Background()
	errc := make(chan error, 16)
	for i := range 16 {
		go func() {
			for range 50 {
				d := strings.Repeat("x", i%4+1) + ".example"
				c, err := r.GetQueueConfig(ctx, d, nil, nil, nil)
				if err == nil && c.EgressPool != d {
					err = errors.New("wrong pool " + c.EgressPool)
				}
				if err == nil {
					var p config.EgressPath
					p, err = r.GetEgressPathConfig(ctx, d, "s", d)
					if err == nil && p.EhloDomain != d {
						err = errors.New("wrong ehlo " + p.EhloDomain)
					}
				}
				if err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for range 16 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

func TestInvokeHelpers(t *testing.T) {
	r := newRuntime(t, `
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain == 'skip.example' then return end
  return kumo.make_queue_config{provider_name = table.concat({domain, tenant or '-', campaign or '-', routing_domain or '-'}, '/')}
end)
kumo.on('get_egress_source', function(name) return kumo.make_egress_source{name = name, ehlo_domain = name .. '.example'} end)
kumo.on('t', function()
  assert(kumo.invoke_get_queue_config('camp:ten@example.com!route.example').provider_name == 'example.com/ten/camp/route.example')
  assert(kumo.invoke_get_queue_config('example.com').provider_name == 'example.com/-/-/-')
  assert(kumo.invoke_get_queue_config('skip.example').retry_interval == '20m')
  assert(kumo.invoke_get_egress_path_config('example.com', 'unspecified', 'site').connection_limit == 32)
  assert(kumo.invoke_get_egress_source('ip-1').ehlo_domain == 'ip-1.example')
  assert(kumo.invoke_get_egress_source('unspecified').name == 'unspecified')
  assert(kumo.invoke_get_egress_pool('unspecified').entries[1].name == 'unspecified')
  local ok, err = pcall(kumo.invoke_get_egress_pool, 'pool')
  assert(not ok and tostring(err):find('no get_egress_pool event handler'), tostring(err))
  return true
end)
`)
	if out := run(t, r); len(out) != 1 || out[0] != true {
		t.Fatalf("got %v", out)
	}
}
