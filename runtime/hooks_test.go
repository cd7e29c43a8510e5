package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// hookHost is a fakeHost that also records log hooks.
type hookHost struct {
	fakeHost
	hooks, disp []*config.LogHook
}

func (h *hookHost) ConfigureLogHook(_ context.Context, l *config.LogHook) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hooks = append(h.hooks, l)
	return nil
}

func (h *hookHost) ConfigureLogDispositionHook(_ context.Context, l *config.LogHook) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.disp = append(h.disp, l)
	return nil
}

func TestHTTPClientRequests(t *testing.T) {
	type seen struct {
		method, path, ua, ctype, auth, body, custom string
	}
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.URL.Path, r.UserAgent(), r.Header.Get("Content-Type"), r.Header.Get("Authorization"), string(b), r.Header.Get("X-Custom")})
		mu.Unlock()
		w.Header().Set("X-Reply", "yes")
		if r.URL.Path == "/fail" {
			w.WriteHeader(503)
		}
		fmt.Fprintf(w, "hello %s", r.Method)
	}))
	defer srv.Close()
	r := newRuntime(t, `
local kumo = require 'kumo'
kumo.on('t', function(base)
  local c = kumo.http.build_client { user_agent = 'kumogo-test', timeout = '5s' }
  local out = {}
  local r = c:post(base .. '/json'):header('Content-Type', 'application/json'):bearer_auth('tok'):body(kumo.json_encode { a = 1 }):send()
  table.insert(out, r:status_code())
  table.insert(out, r:status_reason())
  table.insert(out, tostring(r:status_is_success()))
  table.insert(out, r:text())
  table.insert(out, r:headers()['X-REPLY'])
  r = c:put(base .. '/form'):basic_auth('user', 'pw'):form_url_encoded { k = 'v w' }:send()
  table.insert(out, r:status_code())
  r = c:get(base .. '/fail'):headers { ['X-Custom'] = 'c' }:send()
  table.insert(out, r:status_code())
  table.insert(out, tostring(r:status_is_server_error()))
  table.insert(out, r:status_reason())
  c:close()
  return table.concat(out, '|')
end)
`)
	out := run(t, r, srv.URL)
	want := "200|OK|true|hello POST|yes|200|503|true|Service Unavailable"
	if out[0] != want {
		t.Fatalf("got %q, want %q", out[0], want)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("server saw %d requests", len(got))
	}
	if g := got[0]; g.method != "POST" || g.ua != "kumogo-test" || g.ctype != "application/json" || g.auth != "Bearer tok" || g.body != `{"a":1}` {
		t.Errorf("POST: %+v", g)
	}
	if g := got[1]; g.method != "PUT" || g.ctype != "application/x-www-form-urlencoded" || !strings.HasPrefix(g.auth, "Basic ") || g.body != "k=v+w" {
		t.Errorf("PUT: %+v", g)
	}
	if g := got[2]; g.method != "GET" || g.custom != "c" {
		t.Errorf("GET: %+v", g)
	}
}

func TestHTTPClientErrors(t *testing.T) {
	r := newRuntime(t, `
local kumo = require 'kumo'
kumo.on('t', function(what, url)
  if what == 'opt' then
    kumo.http.build_client { bogus = 1 }
  end
  return kumo.http.build_client({ timeout = 2 }):get(url):send():status_code()
end)
`)
	if _, err := r.Call(context.Background(), "t", "opt", ""); err == nil || !strings.Contains(err.Error(), "unknown field `bogus`") {
		t.Errorf("unknown option: %v", err)
	}
	// a refused connection is a Lua error naming the URL, not a crash
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	if _, err := r.Call(context.Background(), "t", "", url+"/x"); err == nil || !strings.Contains(err.Error(), url+"/x") {
		t.Errorf("refused: %v", err)
	}
}

func TestLuaConnectionSendAndClassify(t *testing.T) {
	r := newRuntime(t, `
local kumo = require 'kumo'
kumo.on('make.test', function(domain, tenant, campaign)
  local n = 0
  local conn = {}
  function conn:send(msg)
    n = n + 1
    local d = msg:get_data()
    if d == 'temp' then kumo.reject(451, 'try later') end
    if d == 'perm' then kumo.reject(550, 'no way') end
    if d == 'boom' then error('exploded') end
    return string.format('%s %s %s #%d', domain, tostring(tenant), tostring(campaign), n)
  end
  function conn:send_batch(msgs)
    local out = {}
    for i, m in ipairs(msgs) do
      if m:get_data() == 'bad' then
        out[i] = { code = 554, message = 'rejected ' .. i }
      else
        out[i] = 'ok ' .. i
      end
    end
    return out
  end
  return conn
end)
`)
	ctx := context.Background()
	tenant := "t1"
	c, err := r.OpenLuaConnection(ctx, "make.test", "webhook", &tenant, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for i, want := range []string{"webhook t1 nil #1", "webhook t1 nil #2"} {
		d, err := c.Send(ctx, testMessage(t, "x", "a@example.com"))
		if err != nil || d != want {
			t.Fatalf("send %d: %q, %v", i, d, err)
		}
	}
	var rej *smtpreply.Rejection
	if _, err := c.Send(ctx, testMessage(t, "temp", "a@example.com")); !errors.As(err, &rej) || rej.Code != 451 {
		t.Fatalf("temp: %v", err)
	}
	if _, err := c.Send(ctx, testMessage(t, "perm", "a@example.com")); !errors.As(err, &rej) || rej.Code != 550 {
		t.Fatalf("perm: %v", err)
	}
	if !c.Usable() {
		t.Fatal("a kumo.reject must not end the session")
	}
	ds, errs, err := c.SendBatch(ctx, []*message.Message{testMessage(t, "a", "a@example.com"), testMessage(t, "bad", "a@example.com")})
	if err != nil || len(ds) != 2 || ds[0] != "ok 1" || errs[0] != nil || !errors.As(errs[1], &rej) || rej.Code != 554 || rej.Text != "rejected 2" {
		t.Fatalf("batch: %q %v, %v", ds, errs, err)
	}
	// the state persists: the counter continues
	if d, _ := c.Send(ctx, testMessage(t, "x", "a@example.com")); d != "webhook t1 nil #5" {
		t.Fatalf("state not kept: %q", d)
	}
	if _, err := c.Send(ctx, testMessage(t, "boom", "a@example.com")); err == nil || !strings.Contains(err.Error(), "exploded") {
		t.Fatalf("boom: %v", err)
	}
	if c.Usable() {
		t.Fatal("a Lua error must end the session")
	}
	if _, err := r.OpenLuaConnection(ctx, "make.none", "x", nil, nil); err == nil || !strings.Contains(err.Error(), "make.none") {
		t.Fatalf("missing constructor: %v", err)
	}
}

// TestLuaConnectionReusesClosedSessionState: a session ended by a Lua
// error (a webhook that refuses connections) leaves its state to the
// next session, whose constructor runs in it: no new state (and no new
// run of the whole policy) per failed delivery. A state over its memory
// limit is never reused.
func TestLuaConnectionReusesClosedSessionState(t *testing.T) {
	r := newRuntime(t, `
local kumo = require 'kumo'
LOADS = (LOADS or 0) + 1
kumo.on('make.down', function(domain)
  OPENED = (OPENED or 0) + 1
  local conn = {}
  function conn:send(msg)
    if msg:get_data() == 'hog' then
      local t = {}
      for i = 1, 1e8 do t[i] = string.rep('x', 1000) .. i end
    end
    if msg:get_data() == 'boom' then error('connection refused') end
    return string.format('loads=%d opened=%d', LOADS, OPENED)
  end
  return conn
end)
`, func(o *Options) { o.LuaMemoryLimit = 16 << 20 })
	ctx := context.Background()
	open := func() *LuaConnection {
		t.Helper()
		c, err := r.OpenLuaConnection(ctx, "make.down", "webhook", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for i := 1; i <= 3; i++ {
		c := open()
		if d, err := c.Send(ctx, testMessage(t, "x", "a@example.com")); err != nil || d != fmt.Sprintf("loads=1 opened=%d", i) {
			t.Fatalf("session %d: %q, %v (want the state of the session before)", i, d, err)
		}
		if _, err := c.Send(ctx, testMessage(t, "boom", "a@example.com")); err == nil || c.Usable() {
			t.Fatalf("session %d: a Lua error must end the session: %v", i, err)
		}
		c.Close(ctx)
	}
	c := open()
	if _, err := c.Send(ctx, testMessage(t, "hog", "a@example.com")); err == nil || !strings.Contains(err.Error(), "memory") {
		t.Fatalf("hog: %v", err)
	}
	c.Close(ctx)
	c = open()
	defer c.Close(ctx)
	if d, err := c.Send(ctx, testMessage(t, "x", "a@example.com")); err != nil || d != "loads=1 opened=1" {
		t.Fatalf("after a state over its memory limit: %q, %v (want a fresh state)", d, err)
	}
}

// TestLogRecordMetaDecodedWhenRead: a log record's message keeps its
// log_record meta encoded (json.RawMessage); msg:get_meta decodes it into
// a table, integral numbers as integers.
func TestLogRecordMetaDecodedWhenRead(t *testing.T) {
	r := newRuntime(t, `
local kumo = require 'kumo'
kumo.on('should_enqueue_log_record', function(msg, hook)
  local rec = msg:get_meta 'log_record'
  return rec.type == 'Reception' and rec.timestamp == 1700000000 and math.type(rec.timestamp) == 'integer'
    and rec.headers.Subject == 'hi' and rec.recipient[1] == 'r@x.example'
end)
`)
	m := testMessage(t, "body", "r@x.example")
	m.SetMeta("log_record", json.RawMessage(`{"type":"Reception","timestamp":1700000000,"headers":{"Subject":"hi"},"recipient":["r@x.example"]}`))
	ok, err := r.ShouldEnqueueLogRecord(context.Background(), m, "webhook")
	if err != nil || !ok {
		t.Fatalf("the handler saw a different record: %v, %v", ok, err)
	}
}

func TestConfigureLogHook(t *testing.T) {
	h := &hookHost{}
	r := newRuntime(t, `
local kumo = require 'kumo'
kumo.on('init', function()
  kumo.configure_log_hook { name = 'webhook', headers = { 'Subject' }, meta = { 'x*' }, per_record = { Reception = { enable = false } } }
  kumo.configure_log_disposition_hook { name = 'ndr' }
end)
kumo.on('log_disposition_ndr', function(msg, rec) end)
kumo.on('should_enqueue_log_record', function(msg, name)
  if msg:get_meta('log_record').type == 'Delivery' then
    msg:set_meta('queue', name)
    return true
  end
  return false
end)
`, func(o *Options) { o.Host = h })
	if len(h.hooks) != 1 || h.hooks[0].Name != "webhook" || h.hooks[0].Headers[0] != "Subject" || h.hooks[0].PerRecord["Reception"].Enable {
		t.Fatalf("hooks: %+v", h.hooks)
	}
	if len(h.disp) != 1 || h.disp[0].Name != "ndr" {
		t.Fatalf("disposition hooks: %+v", h.disp)
	}
	ctx := context.Background()
	for typ, want := range map[string]bool{"Delivery": true, "Bounce": false} {
		msg := testMessage(t, "{}", "a@example.com")
		msg.SetMeta("log_record", map[string]any{"type": typ})
		ok, err := r.ShouldEnqueueLogRecord(ctx, msg, "webhook")
		if err != nil || ok != want {
			t.Fatalf("%s: %v %v", typ, ok, err)
		}
		if q, _ := msg.MetaString("queue"); want && q != "webhook" {
			t.Fatalf("queue meta %q", q)
		}
	}
}

func TestConfigureLogHookErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`kumo.configure_log_hook { headers = {} }`, "missing field `name`"},
		{`kumo.configure_log_hook { name = 'a', bogus = 1 }`, "unknown field `bogus`"},
		{`kumo.configure_log_hook { name = 'a', per_record = { Nope = {} } }`, "unknown record type `Nope`"},
		{`kumo.configure_log_hook { name = 'a' } kumo.configure_log_hook { name = 'a' }`, `a hook named "a" is already configured`},
		{`kumo.configure_log_disposition_hook { name = 'x' }`, "no handler for the log_disposition_x event"},
	} {
		r, err := newRuntimeErr(t, "local kumo = require 'kumo'\nkumo.on('init', function()\n"+tc.body+"\nend)\n", func(o *Options) { o.Validating = true })
		if err == nil {
			err = r.Init(context.Background())
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.body, err, tc.want)
		}
	}
}
