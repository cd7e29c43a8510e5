package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/testutil"
)

// httpAddr returns the address of the daemon's first "<scheme> listener
// on" line.
func (d *daemonProc) httpAddr(t *testing.T, scheme string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)\b` + scheme + ` listener on (\S+)$`).FindStringSubmatch(d.log())
	if m == nil {
		t.Fatalf("no %s listener line:\n%s", scheme, d.log())
	}
	return m[1]
}

// injectPolicy relays what is injected over HTTP to the sink at sinkAddr.
// Loopback is not a trusted host of the plain listener, so injection
// needs credentials there; the TLS listener trusts loopback.
func injectPolicy(t *testing.T, dir, sinkAddr string) string {
	return spooledPolicy(t, dir, `
  kumo.configure_local_logs { log_dir = '`+dir+`/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'relay.test' }
  kumo.start_http_listener { listen = '127.0.0.1:0', hostname = 'relay.test', trusted_hosts = { '192.0.2.1' }, request_body_limit = 8192 }
  kumo.start_http_listener { listen = '127.0.0.1:0', hostname = 'relay.test', use_tls = true }
`, `
kumo.on('http_server_validate_auth_basic', function(user, password)
  return user == 'scott' and password == 'tiger'
end)
kumo.on('http_server_validate_auth_bearer', function(token)
  return token == 'sesame'
end)
kumo.on('http_message_generated', function(msg, auth)
  if msg:recipient().user == 'refused' then
    kumo.reject(550, '5.7.1 not this one')
  end
  msg:set_meta('queue', '[127.0.0.1]:`+strings.Split(sinkAddr, ":")[1]+`')
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { enable_tls = 'Disabled', prohibited_hosts = {} }
end)
`)
}

func TestHTTPInjectDeliversToSink(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is required: ", err)
	}
	env, sinkLogs := sinkEnv(t)
	sink := startDaemon(t, env, "--policy", "sink.lua")
	dir := t.TempDir()
	relay := startDaemon(t, nil, "--policy", injectPolicy(t, dir, sink.addr))
	base := "http://" + relay.httpAddr(t, "http")

	body := `{"envelope_sender":"news@example.com","recipients":[
	  {"email":"a@example.net","substitutions":{"n":"1"}},
	  {"email":"refused@example.net"},
	  {"email":"b@example.net","substitutions":{"n":"2"}}],
	  "content":{"subject":"hello {{ n }}","text_body":"body for {{ email }}","from":{"email":"news@example.com"}}}`
	out, err := exec.Command(curl, "-sS", "--fail-with-body", "-u", "scott:tiger", "-H", "Content-Type: application/json",
		"--data-binary", body, base+"/api/inject/v1").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v %s", err, out)
	}
	var resp struct {
		SuccessCount     int      `json:"success_count"`
		FailCount        int      `json:"fail_count"`
		FailedRecipients []string `json:"failed_recipients"`
		Errors           []string `json:"errors"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if resp.SuccessCount != 2 || resp.FailCount != 1 || len(resp.FailedRecipients) != 1 || resp.FailedRecipients[0] != "refused@example.net" ||
		len(resp.Errors) != 1 || !strings.Contains(resp.Errors[0], "not this one") {
		t.Fatalf("response %s", out)
	}
	if missing := awaitRecipients(t, sinkLogs, []string{"a@example.net", "b@example.net"}, 20*time.Second); len(missing) > 0 {
		t.Fatalf("not delivered: %v\n%s", missing, relay.log())
	}
	if got := sinkRecipients(t, sinkLogs)["refused@example.net"]; got != 0 {
		t.Fatal("a refused recipient was delivered")
	}

	// refusals, each as KumoMTA answers them
	get := func(method, url, auth, body string) (int, string) {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	if code, b := get("POST", base+"/api/inject/v1", "", body); code != 401 || !strings.Contains(b, `"error"`) {
		t.Errorf("anonymous from an untrusted host: %d %s", code, b)
	}
	if code, b := get("POST", base+"/api/inject/v1", "Basic c2NvdHQ6bGlvbg==", body); code != 401 || !strings.Contains(b, "HttpBasicAuth Authentication Failed for scott") {
		t.Errorf("wrong password: %d %s", code, b)
	}
	if code, b := get("GET", base+"/api/admin/bounce/v1", "Bearer sesame", ""); code != 403 {
		t.Errorf("admin with a token from an untrusted host: %d %s", code, b)
	}
	bad := `{"envelope_sender":"a@example.com","recipients":[{"email":"c@example.net"}],"content":{"text_body":"{% if %}"}}`
	if code, b := get("POST", base+"/api/inject/v1", "Bearer sesame", bad); code != 422 || !strings.Contains(b, "content.text_body") {
		t.Errorf("template error: %d %s", code, b)
	}

	// request_body_limit applies to the decompressed body (curl sends it gzipped)
	big := `{"envelope_sender":"a@example.com","recipients":[{"email":"c@example.net"}],"content":"` + strings.Repeat("x", 20000) + `"}`
	gzPath := filepath.Join(t.TempDir(), "big.json.gz")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(big))
	zw.Close()
	if err := os.WriteFile(gzPath, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(curl, "-sS", "-o", "-", "-w", " %{http_code}", "-H", "Authorization: Bearer sesame", "-H", "Content-Encoding: gzip",
		"--data-binary", "@"+gzPath, base+"/api/inject/v1").CombinedOutput()
	if err != nil || string(out) != "Failed to buffer the request body: length limit exceeded 413" {
		t.Errorf("body over the limit: %v %q", err, out)
	}

	// use_tls = true serves TLS (curl -k), and nothing in plaintext
	tlsAddr := relay.httpAddr(t, "https")
	if out, err := exec.Command(curl, "-sS", "-k", "https://"+tlsAddr+"/api/check-liveness/v1").CombinedOutput(); err != nil || string(out) != "OK" {
		t.Errorf("https liveness: %v %q", err, out)
	}
	if out, err := exec.Command(curl, "-sS", "--max-time", "5", "http://"+tlsAddr+"/api/check-liveness/v1").CombinedOutput(); err == nil && string(out) == "OK" {
		t.Error("the TLS listener answered in plaintext")
	}
	relay.stop(t, syscall.SIGTERM)

	recs, err := logrecord.ReadDir(filepath.Join(dir, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Type == logrecord.Reception {
			n++
			if r.ReceptionProtocol != "HTTP" {
				t.Errorf("reception protocol %q", r.ReceptionProtocol)
			}
		}
	}
	if c := countTypes(recs); n != 2 || c["Delivery"] != 2 {
		t.Fatalf("relay records %v", c)
	}

}

// TestLuaInjectV1: kumo.api.inject.inject_v1 from an event queues a
// generated message like POST /api/inject/v1 does.
func TestLuaInjectV1(t *testing.T) {
	env, sinkLogs := sinkEnv(t)
	sink := startDaemon(t, env, "--policy", "sink.lua")
	port := strings.Split(sink.addr, ":")[1]
	dir := t.TempDir()
	policy := spooledPolicy(t, dir, `
  kumo.configure_local_logs { log_dir = '`+dir+`/logs' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'relay.test' }
`, `
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', '[127.0.0.1]:`+port+`')
  local res = kumo.api.inject.inject_v1 {
    envelope_sender = 'copies@example.com',
    recipients = { { email = 'copy@example.net', substitutions = { who = 'lua' } } },
    content = { subject = 'copy from {{ who }}', text_body = 'a copy' },
  }
  if res.success_count ~= 1 or res.fail_count ~= 0 then
    kumo.reject(451, 'copy failed: ' .. kumo.serde.json_encode(res))
  end
end)
kumo.on('http_message_generated', function(msg)
  msg:set_meta('queue', '[127.0.0.1]:`+port+`')
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { enable_tls = 'Disabled', prohibited_hosts = {} }
end)
`)
	relay := startDaemon(t, nil, "--policy", policy)
	sendOriginal(t, relay, sinkLogs, "copy@example.net")
}

// TestLuaInjectMessage: a message made with kumo.make_message and given to
// kumo.inject_message from an event is spooled, queued and delivered (KumoMTA's
// kumo.inject_message page); a message that cannot be queued raises an
// error the policy traps with pcall.
func TestLuaInjectMessage(t *testing.T) {
	env, sinkLogs := sinkEnv(t)
	sink := startDaemon(t, env, "--policy", "sink.lua")
	port := strings.Split(sink.addr, ":")[1]
	dir := t.TempDir()
	policy := spooledPolicy(t, dir, `
  kumo.configure_local_logs { log_dir = '`+dir+`/logs' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'relay.test' }
`, `
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', '[127.0.0.1]:`+port+`')
  local copy = kumo.make_message('copies@example.com', 'made@example.net',
    'Subject: made in lua\r\n\r\na copy\r\n')
  copy:set_meta('queue', '[127.0.0.1]:`+port+`')
  kumo.inject_message(copy)
  local ok, err = pcall(kumo.inject_message, 'not a message')
  if ok then
    kumo.reject(451, 'inject_message took a string')
  end
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { enable_tls = 'Disabled', prohibited_hosts = {} }
end)
`)
	relay := startDaemon(t, nil, "--policy", policy)
	sendOriginal(t, relay, sinkLogs, "made@example.net")
}

// sendOriginal sends one message to orig@example.net through relay and
// waits for it and the message the policy made (copy) at the sink.
func sendOriginal(t *testing.T, relay *daemonProc, sinkLogs, copy string) {
	t.Helper()
	c := testutil.Dial(t, relay.addr)
	c.Expect(t, "220 ")
	c.Cmd(t, "EHLO x.example", "250-")
	c.Cmd(t, "MAIL FROM:<a@example.com>", "250")
	c.Cmd(t, "RCPT TO:<orig@example.net>", "250")
	c.Cmd(t, "DATA", "354")
	c.SendRaw("Subject: original\r\n\r\nhi\r\n.\r\n")
	c.Expect(t, "250 OK ids=")
	if missing := awaitRecipients(t, sinkLogs, []string{"orig@example.net", copy}, 20*time.Second); len(missing) > 0 {
		t.Fatalf("not delivered: %v\n%s", missing, relay.log())
	}
}
