package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/testutil"
	"github.com/kumogo/kumogo/queue/egress/mx/mxtest"
)

// captured is one message as the capturing sink received it.
type captured struct {
	peerIP, ehlo string
	rcpts        []string
	data         []byte
}

// captureSink is an SMTP server on 127.0.0.1 that keeps every message
// with the address and EHLO name of the client that sent it.
type captureSink struct {
	mu   sync.Mutex
	msgs []captured
	addr string
}

func startCaptureSink(t *testing.T) *captureSink {
	t.Helper()
	cs := &captureSink{}
	srv := smtp.NewServer(cs)
	srv.Domain = "capture.test"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cs.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return cs
}

func (cs *captureSink) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &captureSession{sink: cs, conn: c}, nil
}

func (cs *captureSink) all() []captured {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return append([]captured(nil), cs.msgs...)
}

type captureSession struct {
	sink  *captureSink
	conn  *smtp.Conn
	rcpts []string
}

func (s *captureSession) Reset()        { s.rcpts = nil }
func (s *captureSession) Logout() error { return nil }
func (s *captureSession) Mail(string, *smtp.MailOptions) error {
	return nil
}
func (s *captureSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *captureSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(s.conn.Conn().RemoteAddr().String())
	s.sink.mu.Lock()
	s.sink.msgs = append(s.sink.msgs, captured{peerIP: host, ehlo: s.conn.Hostname(), rcpts: s.rcpts, data: b})
	s.sink.mu.Unlock()
	s.rcpts = nil
	return nil
}

// dkimpyVerify checks msg's DKIM signatures with dkimpy, an independent
// implementation, answering its key queries from records.
func dkimpyVerify(t *testing.T, msg []byte, records map[string]string) error {
	t.Helper()
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		py = "python3"
	}
	script := `import sys, dkim
recs = {k.encode(): v.encode() for k, v in (l.split(' ', 1) for l in sys.argv[1:])}
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
n = len([l for l in msg.split(b'\r\n\r\n')[0].split(b'\r\n') if l.lower().startswith(b'dkim-signature:')])
ok = n > 0 and all(d.verify(idx=i, dnsfunc=lambda name, timeout=5: recs.get(name.rstrip(b'.'))) for i in range(n))
print('pass %d' % n if ok else 'fail')
`
	var args []string
	for k, v := range records {
		args = append(args, k+" "+v)
	}
	cmd := exec.Command(py, append([]string{"-c", script}, args...)...)
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(out)), "pass") {
		return fmt.Errorf("dkimpy: %v %s", err, out)
	}
	return nil
}

// productionPolicy is a policy written in the style of KumoMTA's example
// configuration (configuration/example.md), using only kumogo's bundled
// helpers: sources, DKIM signing, shaping, the queue helper with tenants
// and campaigns, listener domains, and two listeners (submission from
// loopback, and a public one that only accepts mail for listener domains).
const productionPolicy = `
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'

local shaping = require 'policy-extras.shaping'
local queue_module = require 'policy-extras.queue'
local listener_domains = require 'policy-extras.listener_domains'
local sources = require 'policy-extras.sources'
local dkim_sign = require 'policy-extras.dkim_sign'

local ETC = '$ETC'

sources:setup { ETC .. '/sources.toml' }
local dkim_signer = dkim_sign:setup { ETC .. '/dkim_data.toml' }
local shaper = shaping:setup_with_automation {
  extra_files = { ETC .. '/shaping.toml' },
}
local queue_helper = queue_module:setup { ETC .. '/queues.toml' }

kumo.on('init', function()
  kumo.dns.configure_resolver { name_servers = { '$DNS' } }
  kumo.define_spool { name = 'data', path = '$VAR/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = '$VAR/meta', kind = 'RocksDB' }
  shaper.setup_publish()
  kumo.configure_local_logs { log_dir = '$VAR/logs', max_segment_duration = '1s' }
  kumo.start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '127.0.0.1' } }
  -- submission: our own applications relay anywhere
  kumo.start_esmtp_listener {
    listen = '127.0.0.1:0',
    hostname = 'submit.kumogo.test',
    relay_hosts = { '127.0.0.1' },
  }
  -- public: no relay hosts; only the listener domains are accepted
  kumo.start_esmtp_listener {
    listen = '127.0.0.1:0',
    hostname = 'mx.kumogo.test',
    relay_hosts = {},
  }
end)

kumo.on('get_listener_domain', listener_domains:setup { ETC .. '/listener_domains.toml' })
kumo.on('get_egress_path_config', shaper.get_egress_path_config)

kumo.on('smtp_server_message_received', function(msg)
  local failed = msg:check_fix_conformance('NON_CANONICAL_LINE_ENDINGS', '')
  if failed then
    kumo.reject(552, string.format('5.6.0 %s', failed))
  end
  queue_helper:apply(msg)
  -- SIGNING MUST COME LAST
  dkim_signer(msg)
end)
`

// TestProductionPolicyWithBundledHelpers runs a production-shaped policy
// on the real binary: mail from the submission listener goes out on the
// pool of its tenant (campaigns included), from that pool's source
// addresses, shaped per domain and source, DKIM-signed (verified by
// dkimpy); the public listener relays only to its listener domain, whose
// routing_domain comes from the queue helper.
func TestProductionPolicyWithBundledHelpers(t *testing.T) {
	sink := startCaptureSink(t)
	_, sinkPort, _ := net.SplitHostPort(sink.addr)
	dns := mxtest.Start(t,
		"gmail.test. 300 IN MX 10 mx.gmail.test.",
		"mx.gmail.test. 300 IN A 127.0.0.1",
		"yahoo.test. 300 IN MX 10 mx.yahoo.test.",
		"mx.yahoo.test. 300 IN A 127.0.0.1",
	)
	etc, varDir := t.TempDir(), t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(etc, "dkim"), 0o755)
	os.WriteFile(filepath.Join(etc, "dkim", "s2026.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	records := map[string]string{"s2026._domainkey.sender.kumogo.test": "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)}

	files := map[string]string{
		"sources.toml": `
[source."ip-1"]
source_address = "127.0.0.2"
ehlo_domain = "mta1.kumogo.test"

[source."ip-2"]
source_address = "127.0.0.3"
ehlo_domain = "mta2.kumogo.test"

[source."ip-3"]
source_address = "127.0.0.4"
ehlo_domain = "mta3.kumogo.test"

[pool."pool-1"."ip-1"]

[pool."pool-2"."ip-2"]
weight = 1
[pool."pool-2"."ip-3"]
weight = 1
`,
		"dkim_data.toml": `
[base]
selector = "s2026"
headers = ["From", "To", "Subject", "Date", "Message-ID"]
over_sign = true

[domain."sender.kumogo.test"]
filename = "$ETC/dkim/s2026.key"
`,
		"shaping.toml": `
["default"]
smtp_port = $PORT
prohibited_hosts = []
enable_tls = "Disabled"

["gmail.test"]
max_deliveries_per_connection = 3

["yahoo.test".sources."ip-1"]
ehlo_domain = "shaped.kumogo.test"
`,
		"queues.toml": `
tenant_header = "X-Tenant"
remove_tenant_header = true
campaign_header = "X-Campaign"
default_tenant = "transactional"

[tenant.'transactional']
egress_pool = 'pool-1'

[tenant.'marketing']
egress_pool = 'pool-2'
max_age = '10 hours'

[queue.default]
max_age = '1 day'
retry_interval = '10 minutes'

[queue.'gmail.test'.'marketing'.'spring-sale']
retry_interval = '5 minutes'

[queue.'inbound.kumogo.test']
routing_domain = '[127.0.0.1]'
`,
		"listener_domains.toml": `
["inbound.kumogo.test"]
relay_to = true
`,
	}
	for name, src := range files {
		src = strings.NewReplacer("$ETC", etc, "$PORT", sinkPort).Replace(src)
		os.WriteFile(filepath.Join(etc, name), []byte(src), 0o644)
	}
	policy := filepath.Join(etc, "init.lua")
	os.WriteFile(policy, []byte(strings.NewReplacer("$ETC", etc, "$VAR", varDir, "$DNS", dns.Addr).Replace(productionPolicy)), 0o644)

	// --validate checks every helper's data, then the daemon starts.
	out, err := exec.Command(kumogoBin, "--validate", "--policy", policy).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "policy is valid") {
		t.Fatalf("--validate: %v\n%s", err, out)
	}
	d := startDaemon(t, nil, "--policy", policy)
	listeners := regexp.MustCompile(`smtp listener on (\S+)`).FindAllStringSubmatch(d.log(), -1)
	if len(listeners) != 2 {
		t.Fatalf("want two listeners:\n%s", d.log())
	}
	submit, public := listeners[0][1], listeners[1][1]

	send := func(c *testutil.SMTPConn, rcpt, headers string) {
		t.Helper()
		c.Cmd(t, "MAIL FROM:<bounces@sender.kumogo.test>", "250")
		c.Cmd(t, "RCPT TO:<"+rcpt+">", "250")
		c.Cmd(t, "DATA", "354")
		c.SendRaw("From: News <news@sender.kumogo.test>\r\nTo: <" + rcpt + ">\r\nSubject: hello " + rcpt + "\r\n" +
			"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <" + rcpt + "@sender.kumogo.test>\r\n" + headers +
			"\r\nHello,\r\n\r\nthis is for " + rcpt + ".\r\n.\r\n")
		c.Expect(t, "250 OK ids=")
	}
	c := testutil.Dial(t, submit)
	c.Expect(t, "220 submit.kumogo.test")
	c.Cmd(t, "EHLO app.kumogo.test", "250-")
	send(c, "alice@gmail.test", "")
	send(c, "carol@yahoo.test", "")
	marketing := []string{"m1@gmail.test", "m2@gmail.test", "m3@gmail.test", "m4@gmail.test"}
	for _, r := range marketing {
		send(c, r, "X-Tenant: marketing\r\nX-Campaign: spring-sale\r\n")
	}
	c.Cmd(t, "QUIT", "221")

	p := testutil.Dial(t, public)
	p.Expect(t, "220 mx.kumogo.test")
	p.Cmd(t, "EHLO outside.example", "250-")
	p.Cmd(t, "MAIL FROM:<someone@outside.example>", "250")
	p.Cmd(t, "RCPT TO:<victim@gmail.test>", "550") // not a listener domain: no relaying
	p.Cmd(t, "RSET", "250")
	send(p, "postmaster@inbound.kumogo.test", "")
	p.Cmd(t, "QUIT", "221")

	want := append([]string{"alice@gmail.test", "carol@yahoo.test", "postmaster@inbound.kumogo.test"}, marketing...)
	deadline := time.Now().Add(30 * time.Second)
	for len(sink.all()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	got := sink.all()
	if len(got) != len(want) {
		t.Fatalf("sink got %d messages, want %d\n%s", len(got), len(want), tail(d.log(), 30))
	}
	byRcpt := map[string]captured{}
	for _, m := range got {
		if len(m.rcpts) != 1 {
			t.Fatalf("message with recipients %v", m.rcpts)
		}
		byRcpt[m.rcpts[0]] = m
		if err := dkimpyVerify(t, m.data, records); err != nil {
			t.Errorf("%s: %v\n%s", m.rcpts[0], err, m.data)
		}
		if bytes.Contains(m.data, []byte("X-Tenant")) {
			t.Errorf("%s: X-Tenant was not removed", m.rcpts[0])
		}
	}
	// transactional (default tenant) → pool-1 → ip-1
	for _, r := range []string{"alice@gmail.test", "postmaster@inbound.kumogo.test"} {
		if m := byRcpt[r]; m.peerIP != "127.0.0.2" || m.ehlo != "mta1.kumogo.test" {
			t.Errorf("%s came from %s (EHLO %s), want ip-1", r, m.peerIP, m.ehlo)
		}
	}
	// shaping: yahoo.test from ip-1 has its own EHLO name
	if m := byRcpt["carol@yahoo.test"]; m.peerIP != "127.0.0.2" || m.ehlo != "shaped.kumogo.test" {
		t.Errorf("carol@yahoo.test came from %s (EHLO %s), want ip-1 shaped", m.peerIP, m.ehlo)
	}
	// marketing → pool-2 → ip-2 and ip-3, each with its own EHLO name
	usedSources := map[string]bool{}
	for _, r := range marketing {
		m := byRcpt[r]
		switch {
		case m.peerIP == "127.0.0.3" && m.ehlo == "mta2.kumogo.test":
		case m.peerIP == "127.0.0.4" && m.ehlo == "mta3.kumogo.test":
		default:
			t.Errorf("%s came from %s (EHLO %s), want a pool-2 source", r, m.peerIP, m.ehlo)
		}
		usedSources[m.peerIP] = true
	}

	// the relay's Delivery records name the same pool and source
	var recs []logrecord.Record
	for time.Now().Before(deadline) {
		recs, _ = logrecord.ReadDir(filepath.Join(varDir, "logs"))
		if countTypes(recs)["Delivery"] == len(want) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	srcIP := map[string]string{"ip-1": "127.0.0.2", "ip-2": "127.0.0.3", "ip-3": "127.0.0.4"}
	deliveries := 0
	for _, r := range recs {
		if r.Type != logrecord.Delivery {
			continue
		}
		deliveries++
		rcpt := r.Recipient[0]
		wantPool := "pool-1"
		if strings.HasPrefix(rcpt, "m") {
			wantPool = "pool-2"
			if r.Queue != "spring-sale:marketing@gmail.test" {
				t.Errorf("%s queue %q", rcpt, r.Queue)
			}
		}
		if r.EgressPool != wantPool || srcIP[r.EgressSource] != byRcpt[rcpt].peerIP {
			t.Errorf("%s: record pool %q source %q, sink saw %s", rcpt, r.EgressPool, r.EgressSource, byRcpt[rcpt].peerIP)
		}
	}
	if deliveries != len(want) {
		t.Fatalf("%d Delivery records, want %d", deliveries, len(want))
	}
	t.Logf("marketing sources used: %v", usedSources)
	d.stop(t, syscall.SIGINT)
}

// TestValidateNamesDataFileAndLine: a syntax error in a helper's data file
// fails --validate with the file and the line.
func TestValidateNamesDataFileAndLine(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "queues.toml"), []byte("default_tenant = 'a'\n[tenant.a]\negress_pool = \n"), 0o644)
	policy := filepath.Join(dir, "init.lua")
	os.WriteFile(policy, []byte(`local kumo = require 'kumo'
local queue_module = require 'policy-extras.queue'
local queue_helper = queue_module:setup { '`+dir+`/queues.toml' }
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '`+dir+`/data' }
  kumo.define_spool { name = 'meta', path = '`+dir+`/meta' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0' }
end)
kumo.on('smtp_server_message_received', function(msg) queue_helper:apply(msg) end)
`), 0o644)
	out, err := exec.Command(kumogoBin, "--validate", "--policy", policy).CombinedOutput()
	if err == nil {
		t.Fatalf("--validate passed:\n%s", out)
	}
	if !strings.Contains(string(out), filepath.Join(dir, "queues.toml")+": line 3") {
		t.Fatalf("--validate output does not name the file and line:\n%s", out)
	}
}
