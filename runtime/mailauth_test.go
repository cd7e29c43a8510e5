package runtime

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/kumogo/kumogo/internal/mailauth"
	"github.com/kumogo/kumogo/policies"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// resolverDNS is kumo.dns backed by kumogo's real resolver
// (queue/egress/mx), as cmd/kumogo wires it, so that
// kumo.dns.configure_test_resolver zones answer the checks.
type resolverDNS struct {
	mu  sync.Mutex
	res *mx.Resolver
}

func (d *resolverDNS) r() *mx.Resolver {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.res
}

func (d *resolverDNS) LookupMX(ctx context.Context, domain string) (*MXAnswer, error) {
	res, err := d.r().LookupMX(ctx, domain)
	if err != nil {
		return nil, err
	}
	return &MXAnswer{Hosts: res.Hosts}, nil
}

func (d *resolverDNS) LookupAddr(ctx context.Context, name string) ([]string, error) {
	addrs, err := d.r().LookupAddr(ctx, name, "")
	var out []string
	for _, a := range addrs {
		out = append(out, a.String())
	}
	return out, err
}

func (d *resolverDNS) Configure(servers []string) error {
	res, err := mx.NewResolver(servers, mx.Options{Attempts: 1})
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.res = res
	d.mu.Unlock()
	return nil
}

func (d *resolverDNS) NewResolver(servers []string) (DNS, error) {
	n := &resolverDNS{}
	return n, n.Configure(servers)
}

func (d *resolverDNS) AuthResolver() mailauth.Resolver { return d.r().AuthResolver() }

var _ AuthDNS = (*resolverDNS)(nil)

// testDKIMKey is a PEM RSA key and the p= of its public half.
func testDKIMKey(t testing.TB) (string, string) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return string(priv), base64.StdEncoding.EncodeToString(pub)
}

// txtRecord splits s into quoted character-strings of at most 200 bytes.
func txtRecord(s string) string {
	var parts []string
	for len(s) > 200 {
		parts = append(parts, `"`+s[:200]+`"`)
		s = s[200:]
	}
	return strings.Join(append(parts, `"`+s+`"`), " ")
}

// closedPort is a loopback UDP address nothing listens on: queries to it
// fail at once (port unreachable).
func closedPort(t testing.TB) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// TestMailAuthFunctions: kumo.spf.check_host/check_msg, msg:dkim_verify,
// kumo.dmarc.check_msg and msg:add_authentication_results, against a
// test zone, with KumoMTA's result shapes.
func TestMailAuthFunctions(t *testing.T) {
	priv, pub := testDKIMKey(t)
	dead := closedPort(t)
	src := `
local kumo = require 'kumo'
kumo.on('init', function()
  kumo.dns.configure_test_resolver {
    [[
$ORIGIN example.com.
@                TXT "v=spf1 ip4:10.0.0.0/8 -all"
s1._domainkey    TXT ` + txtRecord("v=DKIM1; k=rsa; p="+pub) + `
_dmarc           TXT "v=DMARC1; p=reject"
$ORIGIN soft.example.
@                TXT "v=spf1 ~all"
$ORIGIN neutral.example.
@                TXT "v=spf1 ?all"
$ORIGIN broken.example.
@                TXT "v=spf1 frobnicate -all"
]],
  }
  kumo.dns.define_resolver('dead', { Hickory = { name_servers = { '` + dead + `' } } })
end)

local function eq(a, b, what)
  if a ~= b then error(string.format('%s: got %s, want %s', what, tostring(a), tostring(b)), 2) end
end

kumo.on('smtp_server_message_received', function(msg, conn)
  -- check_host: the HELO identity, and with a sender
  local r = kumo.spf.check_host('example.com', conn)
  eq(r.disposition, 'pass', 'check_host')
  eq(r.result.method, 'spf', 'method')
  eq(r.result.result, 'pass', 'result')
  eq(r.result.reason, "matched 'ip' directive", 'reason')
  eq(r.result.props['smtp.helo'], 'example.com', 'helo prop')
  eq(kumo.spf.check_host('soft.example', conn, 'x@soft.example').disposition, 'softfail', 'softfail')
  eq(kumo.spf.check_host('neutral.example', conn).disposition, 'neutral', 'neutral')
  eq(kumo.spf.check_host('broken.example', conn).disposition, 'permerror', 'permerror')
  local none = kumo.spf.check_host('nowhere.example', conn)
  eq(none.disposition, 'none', 'none')
  eq(none.result.reason, 'no SPF records found for nowhere.example', 'none reason')
  -- a dead resolver: temperror, not an error
  local temp = kumo.spf.check_host('example.com', conn, nil, 'dead')
  eq(temp.disposition, 'temperror', 'temperror')

  local spf = kumo.spf.check_msg(msg)
  eq(spf.disposition, 'pass', 'check_msg')
  eq(spf.result.props['smtp.mailfrom'], 'sender@example.com', 'mailfrom prop')
  eq(spf.result.props['smtp.helo'], 'client.example.com', 'ehlo prop')

  eq(#msg:dkim_verify(), 0, 'unsigned')
  msg:dkim_sign(kumo.dkim.rsa_sha256_signer {
    domain = 'example.com', selector = 's1', headers = { 'From', 'Subject' },
    key = { key_data = [[` + priv + `]] },
  })
  local dkim = msg:dkim_verify()
  eq(#dkim, 1, 'signatures')
  eq(dkim[1].method, 'dkim', 'dkim method')
  eq(dkim[1].result, 'pass', 'dkim result')
  eq(dkim[1].props['header.d'], 'example.com', 'header.d')
  eq(dkim[1].props['header.s'], 's1', 'header.s')
  eq(dkim[1].props['header.a'], 'rsa-sha256', 'header.a')
  eq(#msg:dkim_verify('dead'), 1, 'dead resolver result count')
  eq(msg:dkim_verify('dead')[1].result, 'temperror', 'dkim temperror')

  local dmarc = kumo.dmarc.check_msg(msg, dkim, nil, spf.result, false)
  eq(dmarc.disposition, 'Pass', 'dmarc pass')
  eq(dmarc.result.result, 'pass', 'dmarc result')
  local failed = kumo.dmarc.check_msg(msg, {}, nil, { method = 'spf', result = 'fail', props = {} }, false)
  eq(failed.disposition, 'Reject', 'dmarc reject')
  eq(failed.result.result, 'fail', 'dmarc fail')
  eq(failed.result.props['policy.published-domain-policy'], 'reject', 'published policy')
  eq(kumo.dmarc.check_msg(msg, dkim, 'dead', spf.result, false).disposition, 'TempError', 'dmarc temperror')

  local results = dkim
  table.insert(results, spf.result)
  table.insert(results, dmarc.result)
  msg:add_authentication_results(msg:get_meta 'hostname', results)
end)
`
	d := &resolverDNS{}
	r := newRuntime(t, src, func(o *Options) { o.DNS = d })
	m := testMessage(t, "From: Someone <someone@example.com>\r\nSubject: hi\r\n\r\nbody\r\n", "rcpt@dest.example")
	cm := newTestConn()
	cm.Set("ehlo_domain", "client.example.com")
	cm.Set("hostname", "mx.test")
	m.CopyConnMeta(cm)
	if err := r.MessageReceived(context.Background(), m, cm); err != nil {
		t.Fatal(err)
	}
	ar, ok := m.FirstHeader("Authentication-Results")
	if !ok {
		t.Fatalf("no Authentication-Results in\n%s", m.Data())
	}
	for _, want := range []string{"mx.test; dkim=pass header.a=rsa-sha256 header.b=", "header.d=example.com header.i=@example.com header.s=s1;",
		"spf=pass reason=\"matched 'ip' directive\" smtp.helo=client.example.com smtp.mailfrom=sender@example.com;",
		"dmarc=pass reason=\"DKIM signature of example.com is aligned with example.com\" header.from=example.com"} {
		if !strings.Contains(ar, want) {
			t.Errorf("Authentication-Results %q lacks %q", ar, want)
		}
	}
	if !strings.HasPrefix(string(m.Data()), "Authentication-Results: mx.test;\r\n dkim=pass\r\n header.a=rsa-sha256\r\n") {
		t.Errorf("header layout:\n%s", m.Data())
	}
}

// TestMailAuthErrors: missing received_from and bad result tables are
// Lua errors that name the function.
func TestMailAuthErrors(t *testing.T) {
	d := &resolverDNS{}
	_ = d.Configure([]string{closedPort(t)})
	for _, c := range []struct{ body, want string }{
		{`kumo.spf.check_msg(msg)`, "received_from missing from metadata"},
		{`msg:add_authentication_results('h', {{method='dkim'}})`, "missing field"},
		{`msg:add_authentication_results('h', {{method='dkim', result='pass', bogus=1}})`, "unknown field `bogus`"},
		{`kumo.dmarc.check_msg(msg, {}, nil, nil, true)`, "DMARC reporting missing required fields"},
	} {
		r := newRuntime(t, `kumo.on('smtp_server_message_received', function(msg) `+c.body+` end)`, func(o *Options) { o.DNS = d })
		m := testMessage(t, "From: a@example.com\r\n\r\nx\r\n", "r@example.com")
		err := r.MessageReceived(context.Background(), m, newTestConn())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.body, err)
		}
	}
}

// TestMailAuthHelper: policy-extras.mail_auth's iprev results and option
// checking, and check() with everything but ARC.
func TestMailAuthHelper(t *testing.T) {
	dead := closedPort(t)
	src := `
local kumo = require 'kumo'
local mail_auth = require 'policy-extras.mail_auth'
kumo.on('init', function()
  kumo.dns.configure_test_resolver {
    [[
$ORIGIN test.
good.test.   A 10.0.0.1
lonely.test. TXT "no address"
1.0.0.10.in-addr.arpa. PTR good.test.
2.0.0.10.in-addr.arpa. PTR lonely.test.
3.0.0.10.in-addr.arpa. PTR good.test.
]],
  }
  kumo.dns.define_resolver('dead', { Hickory = { name_servers = { '` + dead + `' } } })
end)
local function eq(a, b, what)
  if a ~= b then error(string.format('%s: got %s, want %s', what, tostring(a), tostring(b)), 2) end
end
kumo.on('smtp_server_message_received', function(msg)
  local r = mail_auth.iprev('10.0.0.1')
  eq(r.result, 'pass', 'pass')
  eq(r.reason, 'ip 10.0.0.1 <-> good.test.', 'pass reason')
  eq(r.props['smtp.remote-ip'], '10.0.0.1', 'remote-ip')
  r = mail_auth.iprev('10.0.0.2')
  eq(r.result, 'fail', 'fail')
  eq(r.reason, 'name lonely.test. has no A/AAAA', 'fail reason')
  eq(mail_auth.iprev('10.0.0.3').result, 'fail', 'mismatch')
  r = mail_auth.iprev('10.0.0.4')
  eq(r.result, 'permerror', 'no ptr')
  eq(r.reason, 'ip 10.0.0.4 has no PTR', 'no ptr reason')
  eq(mail_auth.iprev('10.0.0.1', 'dead').result, 'temperror', 'temperror')
  eq(mail_auth.iprev_msg(msg).result, 'pass', 'iprev_msg')
  local ok, err = pcall(mail_auth.check, msg, { spf = 'yes' })
  assert(not ok and tostring(err):find('spf. must be a boolean'), tostring(err))
  ok, err = pcall(mail_auth.check, msg, { bogus = true })
  assert(not ok and tostring(err):find('unknown option .bogus'), tostring(err))
  local res = mail_auth.check(msg, { arc = false, server_id = 'auth.id' })
  eq(#res.auth_results, 5, 'results')
  eq(res.dkim[1].result, 'none', 'dkim none')
  eq(res.smtp_auth.result, 'pass', 'smtp auth')
  eq(res.smtp_auth.props['smtp.auth'], 'joe', 'smtp.auth')
  eq(res.dmarc.result, 'none', 'dmarc none')
  eq(res.arc, nil, 'arc off')
  mail_auth.check(msg, { arc = false, dkim = false, add_auth_results_header = false })
end)
`
	d := &resolverDNS{}
	r := newRuntime(t, src, func(o *Options) { o.DNS = d; o.Modules = policies.Modules() })
	m := testMessage(t, "From: a@example.com\r\n\r\nx\r\n", "r@example.com")
	cm := newTestConn() // received_from 10.0.0.1
	cm.Set("authn_id", "joe")
	m.CopyConnMeta(cm)
	if err := r.MessageReceived(context.Background(), m, cm); err != nil {
		t.Fatal(err)
	}
	if n := len(m.AllHeaderValues("Authentication-Results")); n != 1 {
		t.Fatalf("%d Authentication-Results headers:\n%s", n, m.Data())
	}
	if v, _ := m.FirstHeader("Authentication-Results"); !strings.HasPrefix(v, "auth.id; dkim=none reason=\"message was not signed\"; spf=none") {
		t.Errorf("header %q", v)
	}
}

// TestARCMethods: msg:arc_seal with a kumo.dkim signer adds a set that
// msg:arc_verify passes; a change to the body afterwards fails it.
func TestARCMethods(t *testing.T) {
	priv, pub := testDKIMKey(t)
	src := `
local kumo = require 'kumo'
kumo.on('init', function()
  kumo.dns.configure_test_resolver { [[
$ORIGIN example.org.
s1._domainkey TXT ` + txtRecord("v=DKIM1; k=rsa; p="+pub) + `
]] }
end)
local function eq(a, b, what)
  if a ~= b then error(string.format('%s: got %s, want %s', what, tostring(a), tostring(b)), 2) end
end
kumo.on('smtp_server_message_received', function(msg)
  local none = msg:arc_verify()
  eq(none.method, 'arc', 'method')
  eq(none.result, 'none', 'no chain')
  local signer = kumo.dkim.rsa_sha256_signer {
    domain = 'example.org', selector = 's1', headers = { 'From', 'Subject' },
    key = { key_data = [[` + priv + `]] },
  }
  msg:arc_seal(signer, 'mx.example.org', { { method = 'spf', result = 'pass', props = { ['smtp.mailfrom'] = 'a@example.com' } } })
  local r = msg:arc_verify()
  eq(r.result, 'pass', 'sealed: ' .. tostring(r.reason))
  eq(r.props['arc.chain'], '1', 'chain length')
  msg:arc_seal(signer, 'mx2.example.org', {})
  eq(msg:arc_verify().result, 'pass', 'sealed twice')
  msg:set_data(msg:get_data():gsub('body', 'BODY'))
  r = msg:arc_verify()
  eq(r.result, 'fail', 'tampered')
end)
`
	d := &resolverDNS{}
	r := newRuntime(t, src, func(o *Options) { o.DNS = d })
	m := testMessage(t, "From: a@example.com\r\nSubject: s\r\n\r\nbody\r\n", "r@example.com")
	if err := r.MessageReceived(context.Background(), m, newTestConn()); err != nil {
		t.Fatal(err)
	}
	if got := len(m.AllHeaderValues("ARC-Seal")); got != 2 {
		t.Fatalf("%d ARC-Seal fields:\n%s", got, m.Data())
	}
	if v, _ := m.FirstHeader("ARC-Authentication-Results"); !strings.HasPrefix(v, "i=2; mx2.example.org; none") {
		t.Errorf("AAR %q", v)
	}
}
