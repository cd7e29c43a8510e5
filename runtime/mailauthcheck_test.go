package runtime

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/policies"
)

// refMailAuthCheck is policy-extras.mail_auth's check as it was written
// in Lua on top of the msg:* and kumo.* functions, before its body moved
// to kumogo.mail_auth.check (mailauthcheck.go): the reference that the Go
// version must match result for result and header for header.
const refMailAuthCheck = `
local function ip_of(addr)
  local v6 = addr:match '^%[([^%]]+)%]'
  if v6 then
    return v6
  end
  local v4 = addr:match '^(%d+%.%d+%.%d+%.%d+):%d+$'
  return v4 or addr
end
local function ref_check(msg, opts)
  local result = { auth_results = {} }
  local all = result.auth_results
  if opts.dkim then
    local dkim = msg:dkim_verify(opts.resolver)
    if #dkim == 0 then
      dkim = { { method = 'dkim', result = 'none', reason = 'message was not signed', props = {} } }
    end
    result.dkim = dkim
    for _, r in ipairs(dkim) do
      table.insert(all, r)
    end
  end
  if opts.spf then
    result.spf = kumo.spf.check_msg(msg, opts.resolver).result
    table.insert(all, result.spf)
  end
  if opts.iprev then
    result.iprev = mail_auth.iprev(ip_of(msg:get_meta 'received_from'), opts.resolver)
    table.insert(all, result.iprev)
  end
  if opts.smtp_auth then
    local auth = { method = 'auth', result = 'none', props = { ['smtp.mailfrom'] = tostring(msg:sender()) } }
    local id = msg:get_meta 'authn_id'
    if id ~= nil and id ~= '' then
      auth.result = 'pass'
      auth.props['smtp.auth'] = tostring(id)
    end
    result.smtp_auth = auth
    table.insert(all, auth)
  end
  if opts.dmarc and opts.dkim and opts.spf then
    result.dmarc = kumo.dmarc.check_msg(msg, result.dkim, opts.resolver, result.spf, false).result
    table.insert(all, result.dmarc)
  end
  if opts.arc then
    result.arc = msg:arc_verify(opts.resolver)
    table.insert(all, result.arc)
  end
  if opts.add_auth_results_header then
    local server_id = opts.server_id or msg:get_meta 'hostname' or 'localhost'
    msg:add_authentication_results(server_id, all)
  end
  return result
end
`

// TestMailAuthCheckMatchesReference: mail_auth.check gives the same
// results and the same Authentication-Results header as the Lua reference
// for signed, broken and unsigned messages, null and authenticated
// senders, and each option turned off.
func TestMailAuthCheckMatchesReference(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	txt := txtRecord("v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub))
	src := `
local kumo = require 'kumo'
local mail_auth = require 'policy-extras.mail_auth'
kumo.on('init', function()
  kumo.dns.configure_test_resolver { [[
$ORIGIN example.com.
@                3600 TXT "v=spf1 ip4:10.0.0.0/8 -all"
_dmarc           3600 TXT "v=DMARC1; p=reject"
bench._domainkey 3600 TXT ` + txt + `
mx               3600 A   10.0.0.1
1.0.0.10.in-addr.arpa. 3600 PTR mx.example.com.
]] }
  kumo.dns.define_resolver('other', { Test = { zones = { [[
$ORIGIN example.com.
@ 3600 TXT "v=spf1 -all"
]] } } })
end)
` + refMailAuthCheck + `
local function same(a, b, path)
  if type(a) ~= type(b) then
    error(string.format('%s: %s against %s', path, tostring(a), tostring(b)))
  end
  if type(a) ~= 'table' then
    if a ~= b then
      error(string.format('%s: %s against %s', path, tostring(a), tostring(b)))
    end
    return
  end
  for k, v in pairs(a) do same(v, b[k], path .. '.' .. tostring(k)) end
  for k, v in pairs(b) do same(a[k], v, path .. '.' .. tostring(k)) end
end
local CONFIGS = {
  {}, { server_id = 'mx.test' }, { dkim = false }, { spf = false }, { iprev = false },
  { smtp_auth = false }, { dmarc = false }, { arc = false }, { add_auth_results_header = false },
  { resolver = 'other' },
}
local DEFAULTS = { dkim = true, spf = true, iprev = true, smtp_auth = true, dmarc = true, arc = true,
  add_auth_results_header = true }
kumo.on('smtp_server_message_received', function(msg)
  if msg:get_meta 'received_from' == nil then
    -- both refuse the message the same way
    local ok1, e1 = pcall(ref_check, msg, DEFAULTS)
    local ok2, e2 = pcall(mail_auth.check, msg)
    assert(not ok1 and not ok2, 'no error')
    assert(tostring(e2):find('kumo.spf.check_msg: received_from missing from metadata', 1, true), tostring(e2))
    assert(tostring(e1):find('kumo.spf.check_msg: received_from missing from metadata', 1, true), tostring(e1))
    local ok3, e3 = pcall(mail_auth.iprev_msg, msg)
    assert(not ok3 and tostring(e3):find('mail_auth.iprev_msg: received_from missing from metadata', 1, true), tostring(e3))
    msg:set_meta('checked', true)
    return
  end
  for i, config in ipairs(CONFIGS) do
    local opts = {}
    for k, v in pairs(DEFAULTS) do opts[k] = v end
    for k, v in pairs(config) do opts[k] = v end
    local want = ref_check(msg, opts)
    local want_hdr = msg:get_first_named_header_value 'Authentication-Results'
    msg:remove_all_named_headers 'Authentication-Results'
    local got = mail_auth.check(msg, config)
    local got_hdr = msg:get_first_named_header_value 'Authentication-Results'
    msg:remove_all_named_headers 'Authentication-Results'
    same(got, want, 'config ' .. i)
    same(got_hdr, want_hdr, 'config ' .. i .. ' header')
    assert(config.add_auth_results_header == false or got_hdr, 'no header')
    same(mail_auth.iprev_msg(msg), mail_auth.iprev(ip_of(msg:get_meta 'received_from')), 'iprev_msg')
  end
  msg:set_meta('checked', true)
end)
`
	var body strings.Builder
	for body.Len() < 2000 {
		body.WriteString("The quick brown fox jumps over the lazy dog.\r\n")
	}
	raw := "From: bench@example.com\r\nTo: a@example.com\r\nSubject: s\r\n\r\n" + body.String()
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, strings.NewReader(raw), &dkim.SignOptions{Domain: "example.com", Selector: "bench", Signer: key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed}); err != nil {
		t.Fatal(err)
	}
	twice := bytes.Buffer{}
	if err := dkim.Sign(&twice, bytes.NewReader(signed.Bytes()), &dkim.SignOptions{Domain: "example.com", Selector: "bench", Signer: key}); err != nil {
		t.Fatal(err)
	}
	r := newRuntime(t, src, func(o *Options) { o.DNS = &resolverDNS{}; o.Modules = policies.Modules() })
	cases := []struct {
		name, data, sender, from, authn, hostname string
		noFrom                                    bool
	}{
		{name: "signed", data: signed.String(), sender: "bench@example.com"},
		{name: "signed twice", data: twice.String(), sender: "bench@example.com", authn: "joe", hostname: "mx.here"},
		{name: "body altered", data: strings.Replace(signed.String(), "lazy", "busy", 1), sender: "other@example.org"},
		{name: "unsigned", data: raw, sender: "bench@example.com", from: "10.9.9.9:25"},
		{name: "null sender", data: raw, sender: "", from: "[::1]:25"},
		{name: "bare address", data: raw, sender: "bench@example.com", from: "10.0.0.1"},
		{name: "two From", data: "From: a@example.com\r\nFrom: b@example.com\r\n\r\nx\r\n", sender: "bench@example.com"},
		{name: "no received_from", data: raw, sender: "bench@example.com", noFrom: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var sender message.Address
			if c.sender != "" {
				if sender, err = message.ParseAddress(c.sender); err != nil {
					t.Fatal(err)
				}
			}
			rcpt, _ := message.ParseAddress("a@example.com")
			m := message.New(testIDs, sender, []message.Address{rcpt}, []byte(c.data))
			cm := newTestConn()
			if c.noFrom {
				cm = message.NewConnMeta()
			}
			if c.from != "" {
				cm.Set("received_from", c.from)
			}
			if c.authn != "" {
				cm.Set("authn_id", c.authn)
			}
			if c.hostname != "" {
				cm.Set("hostname", c.hostname)
			}
			m.CopyConnMeta(cm)
			if err := r.MessageReceived(context.Background(), m, cm); err != nil {
				t.Fatal(err)
			}
			if v, _ := m.Meta("checked"); v != true {
				t.Fatal("the handler did not finish")
			}
		})
	}
}
