package runtime

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/policies"
)

// extrasDir writes the data files of a policy-extras policy and returns
// the directory.
func extrasDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.ReplaceAll(src, "$DIR", dir)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func withExtras(dns DNS) func(*Options) {
	return func(o *Options) {
		o.Modules = policies.Modules()
		o.DNS = dns
	}
}

func rsaKeyPEM(t testing.TB) []byte {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

const extrasPolicy = `
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'
local listener_domains = require 'policy-extras.listener_domains'
local sources = require 'policy-extras.sources'
local shaping = require 'policy-extras.shaping'
local dkim_sign = require 'policy-extras.dkim_sign'
local queue_module = require 'policy-extras.queue'
local log_hooks = require 'policy-extras.log_hooks'
local DIR = '$DIR'

sources:setup { DIR .. '/sources.toml' }
local dkim_signer = dkim_sign:setup { DIR .. '/dkim_data.toml' }
local shaper = shaping:setup_with_automation {
  publish = { 'http://127.0.0.1:8008' },
  subscribe = { 'http://127.0.0.1:8008' },
  extra_files = { DIR .. '/shaping.toml' },
}
local queue_helper = queue_module:setup { DIR .. '/queues.toml' }

kumo.on('get_listener_domain', listener_domains:setup { DIR .. '/listener_domains.toml' })
kumo.on('get_egress_path_config', shaper.get_egress_path_config)
kumo.on('init', function() shaper.setup_publish() end)
kumo.on('smtp_server_message_received', function(msg)
  queue_helper:apply(msg)
  dkim_signer(msg)
end)
kumo.on('t', function(what)
  if what == 'log_hooks' then
    log_hooks:new_json { name = 'x', url = 'http://127.0.0.1:1/' }
  end
  if what == 'utils' then
    utils.assert_eq({ a = { 1, 2 } }, { a = { 1, 2 } })
    utils.assert_ne({ a = 1 }, { a = 2 })
    utils.assert_matches('hello world', 'wor')
    assert(utils.table_contains({ 'a', 'b' }, 'b') and not utils.table_contains({ 'a' }, 'c'))
    assert(table.concat(utils.table_keys { b = 1, a = 2 }, ',') == 'a,b')
    assert(utils.table_is_empty {} and not utils.table_is_empty { 1 })
    local d = utils.recursive_merge_into({ x = { y = 1 } }, { x = { z = 2 } })
    assert(d.x.y == 1 and d.x.z == 2)
    local ip, port = utils.split_ip_port '[::1]:25'
    assert(ip == '::1' and port == '25')
    ip, port = utils.split_ip_port '10.0.0.1:2525'
    assert(ip == '10.0.0.1' and port == '2525')
    assert(utils.split_ip_port '10.0.0.1' == '10.0.0.1')
    assert(utils.starts_with('abc', 'ab') and utils.ends_with('abc', 'bc'))
    assert(utils.dumps { b = 'x', a = { 1 } } == '{\n  a = {\n    [1] = 1,\n  },\n  b = "x",\n}', utils.dumps { b = 'x', a = { 1 } })
    local ok = pcall(utils.assert_eq, 1, 2, 'numbers')
    assert(not ok)
    return 'ok'
  end
end)
`

var extrasFiles = map[string]string{
	"listener_domains.toml": `
["*"]
log_oob = true

["example.com"]
relay_to = true

["*.example.com"]
relay_to = true
log_arf = true

["www.example.com"]
relay_to = false

["auth-send.example.com"]
relay_from_authz = ['alice']

[listener."127.0.0.1:25"."*.example.com"]
log_arf = false
`,
	"sources.toml": `
[source."ip-1"]
source_address = "127.0.0.2"
ehlo_domain = "mta1.example.com"

[source."ip-2"]
source_address = "127.0.0.3"

[pool."pool-1"."ip-1"]

[pool."pool-2"."ip-1"]
weight = 1
[pool."pool-2"."ip-2"]
weight = 3
`,
	"shaping.toml": `
["default"]
prohibited_hosts = []

["gmail.com"]
connection_limit = 4

["noroll.example"]
mx_rollup = false
max_deliveries_per_connection = 7

["noroll.example".sources."ip-2"]
max_deliveries_per_connection = 2
`,
	"queues.toml": `
tenant_header = "X-Tenant"
remove_tenant_header = true
campaign_header = "X-Campaign"
default_tenant = "default-tenant"

[tenant.'default-tenant']
egress_pool = 'pool-1'

[tenant.'mytenant']
egress_pool = 'pool-2'
max_age = '10 hours'

[tenant.'locked']
require_authz = ['bob']

[queue.default]
max_age = '24 hours'

[queue.'gmail.com']
retry_interval = '17 mins'

[queue.'gmail.com'.'mytenant']
retry_interval = '5 mins'

[queue.'gmail.com'.'mytenant'.'welcome']
retry_interval = '1 min'

[queue.'*.internal.example']
routing_domain = '[10.0.0.1]'
`,
	"dkim_data.toml": `
[base]
selector = "s1"
headers = ["From", "To", "Subject"]

[domain."example.com"]
filename = "$DIR/example.com.key"

[domain."*.wild.example"]
selector = "w"
filename = "$DIR/example.com.key"
`,
}

func newExtrasRuntime(t testing.TB) (*Runtime, string) {
	dir := extrasDir(t, extrasFiles)
	os.WriteFile(filepath.Join(dir, "example.com.key"), rsaKeyPEM(t), 0o600)
	r := newRuntime(t, strings.ReplaceAll(extrasPolicy, "$DIR", dir), withExtras(&fakeDNS{}))
	return r, dir
}

// TestPolicyExtrasThroughPolicy drives every bundled helper through one
// policy shaped like KumoMTA's example.
func TestPolicyExtrasThroughPolicy(t *testing.T) {
	r, _ := newExtrasRuntime(t)
	ctx := context.Background()

	// listener_domains
	cm := newTestConn()
	for _, tc := range []struct {
		domain, listener        string
		relay                   bool
		oob, arf                string
		nilResult, relayFromAny bool
	}{
		{domain: "example.com", listener: "10.0.0.1:25", relay: true, oob: "Ignore", arf: "Ignore"},
		{domain: "a.example.com", listener: "10.0.0.1:25", relay: true, oob: "Ignore", arf: "LogThenRelay"},
		{domain: "a.example.com", listener: "127.0.0.1:25", relay: false, oob: "Ignore", arf: "Ignore"},
		{domain: "www.example.com", listener: "10.0.0.1:25", relay: false, oob: "Ignore", arf: "Ignore"},
		{domain: "other.test", listener: "10.0.0.1:25", relay: false, oob: "LogThenRelay", arf: "Ignore"},
	} {
		d, err := r.ListenerDomain(ctx, tc.domain, tc.listener, cm)
		if err != nil || d == nil {
			t.Fatalf("%s: %v %v", tc.domain, d, err)
		}
		if d.RelayTo != tc.relay || d.LogOOB != tc.oob || d.LogARF != tc.arf {
			t.Errorf("%s on %s: %+v", tc.domain, tc.listener, d)
		}
	}
	authed := newTestConn()
	authed.Set("authz_id", "alice")
	authed.Set("received_from", "192.0.2.7:4567")
	d, err := r.ListenerDomain(ctx, "auth-send.example.com", "10.0.0.1:25", authed)
	if err != nil || len(d.RelayFrom) != 1 || d.RelayFrom[0].String() != "192.0.2.7/32" {
		t.Fatalf("relay_from_authz: %+v %v", d, err)
	}
	if d, _ := r.ListenerDomain(ctx, "auth-send.example.com", "10.0.0.1:25", cm); len(d.RelayFrom) != 0 {
		t.Fatalf("relay_from_authz without auth: %+v", d)
	}

	// sources
	src, err := r.GetEgressSource(ctx, "ip-1")
	if err != nil || src.SourceAddress != "127.0.0.2" || src.EhloDomain != "mta1.example.com" {
		t.Fatalf("source ip-1: %+v %v", src, err)
	}
	pool, err := r.GetEgressPool(ctx, "pool-2")
	if err != nil || len(pool.Entries) != 2 || pool.Entries[0].Name != "ip-1" || pool.Entries[1].Weight != 3 {
		t.Fatalf("pool-2: %+v %v", pool, err)
	}
	if _, err := r.GetEgressSource(ctx, "nope"); err == nil || !strings.Contains(err.Error(), "source 'nope' is not defined") {
		t.Fatalf("unknown source: %v", err)
	}

	// shaping: default file (bundled) < shaping.toml; site and domain blocks
	p, err := r.GetEgressPathConfig(ctx, "gmail.com", "ip-1", "(mx1|mx2).gmail.com")
	if err != nil || p.ConnectionLimit != 4 || p.MaxDeliveriesPerConnection != 100 || p.RefreshStrategy != "Epoch" || len(p.ProhibitedHosts) != 0 {
		t.Fatalf("gmail.com: %+v %v", p, err)
	}
	p, err = r.GetEgressPathConfig(ctx, "noroll.example", "ip-2", "whatever")
	if err != nil || p.MaxDeliveriesPerConnection != 2 || p.ConnectionLimit != 10 {
		t.Fatalf("noroll.example/ip-2: %+v %v", p, err)
	}

	// queue config: default < domain < tenant < domain+tenant < campaign
	qc, err := r.GetQueueConfig(ctx, "gmail.com", strp("mytenant"), strp("welcome"), nil)
	if err != nil || qc.EgressPool != "pool-2" || qc.RetryInterval.Minutes() != 1 || qc.MaxAge.Hours() != 10 || qc.RefreshStrategy != "Epoch" {
		t.Fatalf("gmail/mytenant/welcome: %+v %v", qc, err)
	}
	qc, err = r.GetQueueConfig(ctx, "yahoo.com", strp("default-tenant"), nil, nil)
	if err != nil || qc.EgressPool != "pool-1" || qc.MaxAge.Hours() != 24 || qc.RetryInterval.Minutes() != 20 {
		t.Fatalf("yahoo/default-tenant: %+v %v", qc, err)
	}

	// apply + DKIM through smtp_server_message_received
	body := "From: Sender <s@example.com>\r\nTo: r@gmail.com\r\nX-Tenant: mytenant\r\nX-Campaign: welcome\r\nSubject: hi\r\n\r\nbody\r\n"
	m := testMessage(t, body, "r@gmail.com")
	if err := r.MessageReceived(ctx, m, newTestConn()); err != nil {
		t.Fatal(err)
	}
	if tn, _ := m.Meta("tenant"); tn != "mytenant" {
		t.Errorf("tenant %v", tn)
	}
	if c, _ := m.Meta("campaign"); c != "welcome" {
		t.Errorf("campaign %v", c)
	}
	data := string(m.Data())
	if !strings.HasPrefix(data, "DKIM-Signature:") || !strings.Contains(data, "d=example.com") || !strings.Contains(data, "s=s1") {
		t.Errorf("not signed: %q", data)
	}
	if strings.Contains(data, "X-Tenant") || !strings.Contains(data, "X-Campaign") {
		t.Errorf("tenant header must be removed, campaign header kept: %q", data)
	}
	// a wildcard DKIM domain signs as the From domain; routing_domain by wildcard queue block
	m = testMessage(t, "From: a@b.wild.example\r\nSubject: x\r\n\r\nx\r\n", "u@db.internal.example")
	if err := r.MessageReceived(ctx, m, newTestConn()); err != nil {
		t.Fatal(err)
	}
	if s := string(m.Data()); !strings.Contains(s, "d=b.wild.example;") || !strings.Contains(s, "s=w;") {
		t.Errorf("wildcard signing: %q", m.Data())
	}
	if rd, _ := m.Meta("routing_domain"); rd != "[10.0.0.1]" {
		t.Errorf("routing_domain %v", rd)
	}
	if tn, _ := m.Meta("tenant"); tn != "default-tenant" {
		t.Errorf("default tenant %v", tn)
	}
	// no DKIM block for the From domain: not signed
	m = testMessage(t, "From: a@unsigned.test\r\n\r\nx\r\n", "u@gmail.com")
	if err := r.MessageReceived(ctx, m, newTestConn()); err != nil || strings.Contains(string(m.Data()), "DKIM-Signature") {
		t.Errorf("unsigned domain: %v %q", err, m.Data())
	}
	// an undefined tenant and an unauthorized one are rejected
	for hdr, want := range map[string]string{
		"nosuch": "tenant 'nosuch' specified by 'X-Tenant' header is not defined in your queue config",
		"locked": "tenant 'locked' requires SMTP AUTH",
	} {
		m = testMessage(t, "From: a@example.com\r\nX-Tenant: "+hdr+"\r\n\r\nx\r\n", "u@gmail.com")
		err := r.MessageReceived(ctx, m, newTestConn())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", hdr, err)
		}
	}

	if out := run(t, r, "utils"); out[0] != "ok" {
		t.Fatal(out)
	}
	// the log hooks register handlers: only at the top level of the policy
	if _, err := r.Call(ctx, "t", "log_hooks"); err == nil || !strings.Contains(err.Error(), "is not allowed while the t event is executing") {
		t.Fatalf("log_hooks: %v", err)
	}
	if err := r.Validate(ctx); err != nil {
		t.Fatalf("validate: %v", err)
	}
}

// TestPolicyExtrasDataFileErrors: a bad data file fails validation with
// a message naming the file and the line (syntax) or the key (unknown
// keys, bad values).
func TestPolicyExtrasDataFileErrors(t *testing.T) {
	good := map[string]string{}
	for k, v := range extrasFiles {
		good[k] = v
	}
	for _, tc := range []struct {
		file, src string
		want      []string
	}{
		{"listener_domains.toml", "[\"a.com\"]\nrelay_to = true\nrelay_tu = true\n", []string{"listener_domains.toml:3: unknown key 'relay_tu'", "in ['a.com']"}},
		{"listener_domains.toml", "[\"a.com\"]\nrelay_to = \n", []string{"listener_domains.toml: line 2"}},
		{"listener_domains.toml", "[\"a.com\"]\nrelay_to = true\nlog_oob = 'Sometimes'\n", []string{"listener_domains.toml:3: ", "in ['a.com']", "Sometimes"}},
		{"sources.toml", "[source.\"ip-1\"]\nsource_adress = '10.0.0.1'\n", []string{"sources.toml:2: ", "in [source.ip-1]", "source_adress"}},
		{"sources.toml", "[pool.\"p\".\"ip-1\"]\nweigth = 2\n", []string{"sources.toml:2: unknown key 'weigth'", "in [pool.p.ip-1]"}},
		{"sources.toml", "[sauce.x]\n", []string{"sources.toml:1: unknown key 'sauce'"}},
		{"queues.toml", "tenant_headr = 'X'\n", []string{"queues.toml:1: unknown key 'tenant_headr'"}},
		{"queues.toml", "[tenant.t]\nmax_age = 5\negres_pool = 'p'\n", []string{"queues.toml:3: unknown key 'egres_pool'", "in [tenant.t]"}},
		{"queues.toml", "[queue.'a.com']\nretry_interval = true\n", []string{"queues.toml:2: bad value for 'retry_interval'", "in [queue.'a.com']"}},
		{"queues.toml", "[queue.'a.com'.'t']\nmax_agee = '1h'\n", []string{"queues.toml:2: unknown key 'max_agee'", "in [queue.'a.com'.t]"}},
		{"queues.toml", "[queue.'a.com']\nmax_age = '1h'\n[queue.'a.com']\n", []string{"queues.toml: line 3"}},
		{"dkim_data.toml", "[domain.'a.com']\nselectr = 'x'\n", []string{"dkim_data.toml:2: unknown key 'selectr'", "in [domain.'a.com']"}},
		{"dkim_data.toml", "[domain.'a.com']\nselector = 'x'\nalgo = 'md5'\n", []string{"dkim_data.toml:3: algo must be 'sha256' or 'ed25519'"}},
		{"dkim_data.toml", "[base]\nadditional_signatures = ['x']\n", []string{"base.additional_signatures lists 'x'"}},
		{"dkim_data.toml", "[domain.'b.com']\nselector = 'x'\n", []string{"domain 'b.com'", "missing field `headers`"}},
		{"dkim_data.toml", "[base]\nheaders = ['From']\n[domain.'b.com']\nselector = 'x'\n", []string{"domain 'b.com'", "/opt/kumomta/etc/dkim/b.com/x.key", "no such file"}},
		{"shaping.toml", "[\"gmail.com\"]\nconection_limit = 1\n", []string{"shaping.toml:2: [", "gmail.com", "deserialize error: unknown field `conection_limit`"}},
		{"shaping.toml", "[\"gmail.com\"]\nconnection_limit = \n", []string{"parsing toml from file", "shaping.toml: line 2"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range good {
				files[k] = v
			}
			files[tc.file] = tc.src
			dir := extrasDir(t, files)
			os.WriteFile(filepath.Join(dir, "example.com.key"), rsaKeyPEM(t), 0o600)
			var buf strings.Builder
			r, err := newRuntimeErr(t, strings.ReplaceAll(extrasPolicy, "$DIR", dir), withExtras(&fakeDNS{}), func(o *Options) {
				o.Log = zerolog.New(&syncWriter{w: &buf})
				o.Validating = true
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Init(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := r.Validate(context.Background()); err == nil {
				t.Fatalf("validation passed with a bad %s", tc.file)
			}
			for _, w := range tc.want {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, buf.String())
				}
			}
		})
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestPolicyExtrasInlineAndJSON: data given as inline tables and JSON
// files (with comments) works like TOML; a second setup is an error; the
// queue helper's overall_max_message_rate says what kumogo lacks.
func TestPolicyExtrasInlineAndJSON(t *testing.T) {
	dir := extrasDir(t, map[string]string{
		"sources.json": `{
  // JSON data files may have comments
  "source": {"s1": {"source_address": "127.0.0.5"}},
  "pool": {"p": {"s1": {"weight": 4}}}
}`,
		"ld.yaml":      "\"*.yaml.example\":\n  relay_to: true\n",
		"shaping.json": `{"nope.example": {"mx_rollup": false, "connection_limit": 2}}`,
	})
	r := newRuntime(t, `
local kumo = require 'kumo'
local sources = require 'policy-extras.sources'
local listener_domains = require 'policy-extras.listener_domains'
local queue_module = require 'policy-extras.queue'
local shaping = require 'policy-extras.shaping'
sources:setup { '`+dir+`/sources.json' }
kumo.on('get_egress_path_config', shaping:setup('`+dir+`/shaping.json'))
local ld = listener_domains:setup { '`+dir+`/ld.yaml', { ['inline.example'] = { relay_to = true } } }
kumo.on('get_listener_domain', ld)
local q = queue_module:setup_with_options {
  skip_queue_config_hook = true,
  file_names = { { default_tenant = 't', tenant = { t = { overall_max_message_rate = '10/s', egress_pool = 'p' } } } },
}
kumo.on('smtp_server_message_received', function(msg) q:apply(msg) end)
kumo.on('t', function(what)
  if what == 'again' then return sources:setup { 'x' } end
  if what == 'resolve' then return q:resolve_config('a.example', 't', nil).egress_pool end
  if what == 'has_throttle' then return kumo.make_throttle ~= nil end
  if what == 'badopt' then package.loaded['policy-extras.queue'].CONFIGURED = nil; return queue_module:setup_with_options { file_names = {}, colour = 1 } end
end)
`, withExtras(&fakeDNS{}))
	ctx := context.Background()
	pool, err := r.GetEgressPool(ctx, "p")
	if err != nil || len(pool.Entries) != 1 || pool.Entries[0].Weight != 4 {
		t.Fatalf("pool from JSON: %+v %v", pool, err)
	}
	if p, err := r.GetEgressPathConfig(ctx, "nope.example", "s1", "x"); err != nil || p.ConnectionLimit != 2 {
		t.Fatalf("shaping:setup(string): %+v %v", p, err)
	}
	for _, d := range []string{"inline.example", "a.yaml.example"} {
		ld, err := r.ListenerDomain(ctx, d, "127.0.0.1:25", newTestConn())
		if err != nil || ld == nil || !ld.RelayTo {
			t.Fatalf("%s: %+v %v", d, ld, err)
		}
	}
	if ld, err := r.ListenerDomain(ctx, "yaml.example", "127.0.0.1:25", newTestConn()); err != nil || ld != nil {
		t.Fatalf("wildcard matched its own domain: %+v %v", ld, err)
	}
	if r.HasHandler("get_queue_config") {
		t.Fatal("skip_queue_config_hook registered get_queue_config")
	}
	if out := run(t, r, "resolve"); out[0] != "p" {
		t.Fatalf("resolve_config: %v", out)
	}
	if _, err := r.Call(ctx, "t", "again"); err == nil || !strings.Contains(err.Error(), "already configured") {
		t.Fatalf("second setup: %v", err)
	}
	if _, err := r.Call(ctx, "t", "badopt"); err == nil || !strings.Contains(err.Error(), "unknown key 'colour'") {
		t.Fatalf("bad option: %v", err)
	}
	m := testMessage(t, "From: a@x.example\r\n\r\nx\r\n", "r@y.example")
	if err := r.MessageReceived(ctx, m, newTestConn()); err != nil {
		t.Fatal(err)
	}
	err = r.ThrottleInsertReadyQueue(ctx, m)
	if run(t, r, "has_throttle")[0] == true {
		if err != nil { // kumo.make_throttle has landed: the throttle is used
			t.Fatalf("overall_max_message_rate: %v", err)
		}
	} else if err == nil || !strings.Contains(err.Error(), "kumo.make_throttle, which is not provided by kumogo yet") {
		t.Fatalf("overall_max_message_rate: %v", err)
	}
}

// TestQueueHelperInlineParsedNames: an inline table may name its blocks
// queues and tenants, the helper's parsed names, as KumoMTA's own test
// policies (ndr.lua) do; they mean queue and tenant. Both spellings at
// once are an error.
func TestQueueHelperInlineParsedNames(t *testing.T) {
	r := newRuntime(t, `
local queue_module = require 'policy-extras.queue'
queue_module:setup {
  { queues = { default = { retry_interval = '7m' } }, tenants = { t1 = { max_age = '2h' } } },
}
`, withExtras(&fakeDNS{}))
	ctx := context.Background()
	tenant := "t1"
	cfg, err := r.GetQueueConfig(ctx, "a.example", &tenant, nil, nil)
	if err != nil || cfg.RetryInterval != 7*time.Minute || cfg.MaxAge != 2*time.Hour {
		t.Fatalf("queue config: %+v %v", cfg, err)
	}
	r2 := newRuntime(t, `
local queue_module = require 'policy-extras.queue'
queue_module:setup { { queue = {}, queues = {} } }
`, withExtras(&fakeDNS{}))
	if _, err := r2.GetQueueConfig(ctx, "a.example", nil, nil, nil); err == nil || !strings.Contains(err.Error(), "both 'queues' and 'queue'") {
		t.Fatalf("both spellings: %v", err)
	}
}
