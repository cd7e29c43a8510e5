package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// webhookReceiver is the HTTP peer of the log-hook tests: it counts the
// records it is posted (a JSON object, or an array of them), by type and
// by (type, id, recipient), and the requests.
type webhookReceiver struct {
	mu       sync.Mutex
	requests int
	byType   map[string]int
	seen     map[string]int
	subjects map[string]int
	srv      *http.Server
	// failUntil makes the receiver answer 503 until then
	failUntil time.Time
	failed    int
}

func newWebhookReceiver() *webhookReceiver {
	return &webhookReceiver{byType: map[string]int{}, seen: map[string]int{}, subjects: map[string]int{}}
}

func (w *webhookReceiver) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	if time.Now().Before(w.failUntil) {
		w.failed++
		w.mu.Unlock()
		http.Error(rw, "down for maintenance", 503)
		return
	}
	w.mu.Unlock()
	body, err := io.ReadAll(r.Body)
	if err != nil || r.Header.Get("Content-Type") != "application/json" {
		http.Error(rw, "bad request", 400)
		return
	}
	var recs []map[string]any
	if strings.HasPrefix(strings.TrimSpace(string(body)), "[") {
		err = json.Unmarshal(body, &recs)
	} else {
		var one map[string]any
		err = json.Unmarshal(body, &one)
		recs = append(recs, one)
	}
	if err != nil {
		http.Error(rw, err.Error(), 400)
		return
	}
	w.mu.Lock()
	w.requests++
	for _, rec := range recs {
		typ, _ := rec["type"].(string)
		w.byType[typ]++
		w.seen[fmt.Sprintf("%s %v %v", typ, rec["id"], rec["recipient"])]++
		if h, ok := rec["headers"].(map[string]any); ok {
			if s, ok := h["Subject"].(string); ok {
				w.subjects[s]++
			}
		}
	}
	w.mu.Unlock()
	fmt.Fprint(rw, "thanks")
}

// serve starts the receiver on addr.
func (w *webhookReceiver) serve(t *testing.T, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	w.srv = &http.Server{Handler: w}
	go w.srv.Serve(l)
	t.Cleanup(func() { w.srv.Close() })
}

func (w *webhookReceiver) count(typ string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.byType[typ]
}

// duplicates lists records posted more than once.
func (w *webhookReceiver) duplicates() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for k, n := range w.seen {
		if n > 1 {
			out = append(out, fmt.Sprintf("%s ×%d", k, n))
		}
	}
	return out
}

// waitCounts waits until the receiver holds want records of each type.
func (w *webhookReceiver) waitCounts(t *testing.T, want map[string]int, timeout time.Duration, d *daemonProc) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		for typ, n := range want {
			if w.count(typ) < n {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			w.mu.Lock()
			got := fmt.Sprint(w.byType)
			w.mu.Unlock()
			t.Fatalf("webhook got %s, want %v\n%s", got, want, tail(d.log(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sendMessages sends n messages, one recipient each, over one SMTP
// session, with subject(i) as the Subject.
func sendMessages(t *testing.T, addr string, n int, rcpt func(i int) string, subject func(i int) string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := c.Mail("sender@example.com"); err != nil {
			t.Fatalf("message %d: MAIL: %v", i, err)
		}
		if err := c.Rcpt(rcpt(i)); err != nil {
			t.Fatalf("message %d: RCPT: %v", i, err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatalf("message %d: DATA: %v", i, err)
		}
		fmt.Fprintf(w, "From: sender@example.com\r\nTo: %s\r\nSubject: %s\r\n\r\nbody %d\r\n", rcpt(i), subject(i), i)
		if err := w.Close(); err != nil {
			t.Fatalf("message %d: end of data: %v", i, err)
		}
	}
	c.Quit()
}

// webhookPolicy is the webhook pattern of KumoMTA's "Publishing Log
// Events Via Webhooks" guide: a log hook, should_enqueue_log_record
// routing records to the 'webhook' queue (and dropping those whose Subject
// starts with "skip"), and a custom_lua make.webhook that POSTs each
// record with kumo.http; every other domain is delivered to a maildir.
func webhookPolicy(t *testing.T, dir, webhookURL string) string {
	return webhookPolicyWith(t, dir, webhookURL, "", "retry_interval = '1s', max_retry_interval = '2s'")
}

// webhookPolicyWith is webhookPolicy with more configure_log_hook options
// (hookExtra, Lua table fields) and the webhook queue's retry options.
func webhookPolicyWith(t *testing.T, dir, webhookURL, hookExtra, retry string) string {
	// RocksDB spools: a LocalDisk spool's removals of thousands of
	// delivered messages hold the graceful stop for tens of seconds on a
	// busy disk
	p := filepath.Join(dir, "policy.lua")
	src := `local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '` + dir + `/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = '` + dir + `/meta', kind = 'RocksDB' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'hooks.test', relay_hosts = { '127.0.0.1' } }
  kumo.configure_log_hook { name = 'webhook', headers = { 'Subject' }, ` + hookExtra + ` }
end)
` + `
kumo.on('should_enqueue_log_record', function(msg, hook_name)
  local rec = msg:get_meta 'log_record'
  if rec.queue == 'webhook' then return false end
  local subject = rec.headers and rec.headers.Subject or ''
  if subject:sub(1, 4) == 'skip' then return false end
  msg:set_meta('queue', hook_name)
  return true
end)
kumo.on('make.webhook', function(domain, tenant, campaign)
  local client = kumo.http.build_client { timeout = '5s', user_agent = 'kumogo-webhook' }
  local conn = {}
  function conn:send(message)
    local response = client:post('` + webhookURL + `'):header('Content-Type', 'application/json'):body(message:get_data()):send()
    local disposition = string.format('%d %s: %s', response:status_code(), response:status_reason(), response:text())
    if response:status_is_success() then return disposition end
    kumo.reject(400, disposition)
  end
  function conn:close() client:close() end
  return conn
end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain == 'webhook' then
    return kumo.make_queue_config { ` + retry + `, protocol = { custom_lua = { constructor = 'make.webhook' } } }
  end
  return kumo.make_queue_config { protocol = { maildir_path = '` + dir + `/maildir' } }
end)
`
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLogHookWebhookDeliversEveryRecordOnce: 1,000 messages delivered to
// a maildir give 1,000 Reception and 1,000 Delivery records, each POSTed
// to the webhook exactly once; the 20 more messages whose Subject starts
// with "skip" are filtered out by should_enqueue_log_record.
func TestLogHookWebhookDeliversEveryRecordOnce(t *testing.T) {
	dir := t.TempDir()
	recv := newWebhookReceiver()
	addr := freeLoopbackAddr(t)
	recv.serve(t, addr)
	d := startDaemon(t, nil, "--policy", webhookPolicy(t, dir, "http://"+addr+"/log"))
	const n, skipped = hookRunMessages, 20
	start := time.Now()
	sendParallel(t, d.addr, n+skipped, 4, func(i int) string {
		if i%16 == 0 && i/16 < skipped {
			return fmt.Sprintf("skip %d", i)
		}
		return fmt.Sprintf("keep %d", i)
	})
	recv.waitCounts(t, map[string]int{"Reception": n, "Delivery": n}, 120*time.Second, d)
	t.Logf("%d records posted in %v", 2*n, time.Since(start).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond) // anything extra would arrive now
	if dup := recv.duplicates(); len(dup) > 0 {
		t.Fatalf("records posted more than once: %v", dup[:min(len(dup), 10)])
	}
	recv.mu.Lock()
	byType := fmt.Sprint(recv.byType)
	for s := range recv.subjects {
		if strings.HasPrefix(s, "skip") {
			t.Errorf("filtered record posted: Subject %q", s)
		}
	}
	recv.mu.Unlock()
	if recv.count("Reception") != n || recv.count("Delivery") != n || recv.count("TransientFailure") != 0 {
		t.Fatalf("records: %s", byType)
	}
	// the maildir holds every message, the filtered ones too
	if got := readMaildir(t, filepath.Join(dir, "maildir")); len(got) != n+skipped {
		t.Fatalf("maildir holds %d messages, want %d", len(got), n+skipped)
	}
	d.stop(t, syscall.SIGTERM)
}

// TestLogHookPerRecordTemplate: per_record templates make the bodies the
// webhook receives: Reception records become the template's own JSON
// (the record's fields, a header by its lower-cased name), Delivery
// records `log_record | tojson`; every record arrives once.
func TestLogHookPerRecordTemplate(t *testing.T) {
	dir := t.TempDir()
	recv := newWebhookReceiver()
	addr := freeLoopbackAddr(t)
	recv.serve(t, addr)
	d := startDaemon(t, nil, "--policy", webhookPolicyWith(t, dir, "http://"+addr+"/log", `per_record = {
    Reception = { template = [[{"type":"{{ type }}","id":"{{ id }}","recipient":"{{ recipient }}","headers":{"Subject":"T {{ headers['subject'] }} {{ timestamp - created }}"}}]] },
    Any = { template = [[{{ log_record | tojson }}]] },
  }`, "retry_interval = '1s', max_retry_interval = '2s'"))
	const n = 20
	sendMessages(t, d.addr, n, func(i int) string { return fmt.Sprintf("user%d@example.com", i) }, func(i int) string { return fmt.Sprint("m", i) })
	recv.waitCounts(t, map[string]int{"Reception": n, "Delivery": n}, 60*time.Second, d)
	time.Sleep(500 * time.Millisecond)
	if dup := recv.duplicates(); len(dup) > 0 {
		t.Fatalf("records posted more than once: %v", dup)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	// the age (timestamp - created) is a whole number of seconds
	age := regexp.MustCompile(`^T (m\d+) \d+$`)
	templated := map[string]int{}
	for s, c := range recv.subjects {
		if m := age.FindStringSubmatch(s); m != nil {
			templated[m[1]] += c
		}
	}
	for i := range n {
		if templated[fmt.Sprint("m", i)] != 1 || recv.subjects[fmt.Sprint("m", i)] != 1 {
			t.Fatalf("message %d: subjects seen %v", i, recv.subjects)
		}
	}
	d.stop(t, syscall.SIGTERM)
}

// TestLogHookSurvivesReceiverOutage: with the receiver down for 30 s
// (connections refused) while the 1,000 messages of a run are received
// and delivered, every record is retried from the spool and arrives
// exactly once when it comes back.
func TestLogHookSurvivesReceiverOutage(t *testing.T) {
	dir := t.TempDir()
	recv := newWebhookReceiver()
	addr := freeLoopbackAddr(t)
	// KumoMTA's log_hooks helper retries every minute by default; 5 s
	// keeps the test short without a retry storm of the 2,000 queued
	// records while the receiver is down
	d := startDaemon(t, nil, "--policy", webhookPolicyWith(t, dir, "http://"+addr+"/log", "", "retry_interval = '5s', max_retry_interval = '5s'"))
	const n = hookRunMessages
	down := time.Now()
	sendParallel(t, d.addr, n, 4, func(i int) string { return fmt.Sprint("m", i) })
	t.Logf("sent %d messages in %v", n, time.Since(down).Round(time.Millisecond))
	time.Sleep(30*time.Second - time.Since(down))
	if recv.count("Reception") != 0 {
		t.Fatal("receiver counted records while down")
	}
	recv.serve(t, addr)
	up := time.Now()
	recv.waitCounts(t, map[string]int{"Reception": n, "Delivery": n}, 180*time.Second, d)
	t.Logf("%d records posted %v after the receiver came back", 2*n, time.Since(up).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	if dup := recv.duplicates(); len(dup) > 0 {
		t.Fatalf("records posted more than once: %v", dup[:min(len(dup), 10)])
	}
	if recv.count("Reception") != n || recv.count("Delivery") != n {
		t.Fatalf("records: %v", recv.byType)
	}
	t.Logf("graceful stop took %v", d.stop(t, syscall.SIGTERM).Round(time.Millisecond))
}

// readMaildir reads a maildir with Python's mailbox.Maildir and returns
// each message's Subject.
func readMaildir(t *testing.T, dir string) []string {
	t.Helper()
	script := `import mailbox, sys, json
md = mailbox.Maildir(sys.argv[1], create=False)
print(json.dumps([m['Subject'] for m in md]))`
	out, err := exec.Command("python3", "-c", script, dir).Output()
	if err != nil {
		t.Fatalf("reading maildir %s: %v", dir, err)
	}
	var subjects []string
	if err := json.Unmarshal(out, &subjects); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Fatalf("maildir tmp/ holds %d files after delivery", len(ents))
	}
	return subjects
}

// TestLogHooksHelperBatchedJSON: policy-extras.log_hooks new_json with
// batching (min 10 records, latency 10 s) posts the 20 records of 10
// messages (Reception and Delivery) in exactly 2 requests, each record
// once, with the logged Subject header.
func TestLogHooksHelperBatchedJSON(t *testing.T) {
	testLogHooksHelper(t, false)
}

// TestLogHooksHelperRetries503: the receiver answers 503 for 3 s; the
// helper's batches are retried from the spool and every record arrives
// once.
func TestLogHooksHelperRetries503(t *testing.T) {
	testLogHooksHelper(t, true)
}

func testLogHooksHelper(t *testing.T, outage bool) {
	dir := t.TempDir()
	recv := newWebhookReceiver()
	if outage {
		recv.failUntil = time.Now().Add(3 * time.Second)
	}
	addr := freeLoopbackAddr(t)
	recv.serve(t, addr)
	policy := filepath.Join(dir, "policy.lua")
	src := `local kumo = require 'kumo'
local log_hooks = require 'policy-extras.log_hooks'
log_hooks:new_json {
  name = 'webhook',
  url = 'http://` + addr + `/log',
  log_parameters = { headers = { 'Subject' } },
  batch_size = 100, min_batch_size = 10, max_batch_latency = '10s',
  queue_config = { retry_interval = '1s', max_retry_interval = '2s' },
}
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '` + dir + `/data' }
  kumo.define_spool { name = 'meta', path = '` + dir + `/meta' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', relay_hosts = { '127.0.0.1' } }
end)
kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config { protocol = { maildir_path = '` + dir + `/maildir' } }
end)
`
	if err := os.WriteFile(policy, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, nil, "--policy", policy)
	start := time.Now()
	sendMessages(t, d.addr, 10, func(i int) string { return fmt.Sprintf("u%d@example.com", i) }, func(i int) string { return fmt.Sprint("batched ", i) })
	recv.waitCounts(t, map[string]int{"Reception": 10, "Delivery": 10}, 20*time.Second, d)
	if took := time.Since(start); !outage && took > 8*time.Second {
		t.Errorf("full batches waited for the latency: %v", took)
	}
	time.Sleep(500 * time.Millisecond)
	recv.mu.Lock()
	requests, subjects, failed := recv.requests, len(recv.subjects), recv.failed
	recv.mu.Unlock()
	if outage {
		if failed == 0 || subjects != 10 {
			t.Fatalf("%d refused requests, %d subjects", failed, subjects)
		}
	} else if requests != 2 || subjects != 10 {
		t.Fatalf("%d requests, %d subjects (want 2 requests carrying 20 records of 10 subjects)", requests, subjects)
	}
	if dup := recv.duplicates(); len(dup) > 0 {
		t.Fatalf("duplicates: %v", dup)
	}
	d.stop(t, syscall.SIGTERM)
}

// TestValidateBadLogHooks: a broken hook configuration, per_record
// template or maildir_path template fails --validate with a message naming
// the problem.
func TestValidateBadLogHooks(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "queues.toml"), []byte("[queue.'example.com']\nprotocol = { maildir_path = '/var/mail/{{ meta.tenant' }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ src, want string }{
		{`kumo.on('init', function() kumo.configure_log_hook { headers = { 'Subject' } } end)`, "configure_log_hook: deserialize error: missing field `name`"},
		{`kumo.on('init', function() kumo.configure_log_hook { name = 'w', per_record = { Nope = {} } } end)`, "unknown record type `Nope`"},
		{`local h = require 'policy-extras.log_hooks'
h:new_json { name = 'w' }`, "policy-extras.log_hooks:new_json: option url (a string) is required"},
		{`local h = require 'policy-extras.log_hooks'
h:new_json { name = 'w', url = 'http://127.0.0.1:1/', batch = 3 }`, `unknown option "batch"`},
		{`kumo.on('init', function() kumo.configure_log_disposition_hook { name = 'ndr' } end)`, "no handler for the log_disposition_ndr event"},
		{`kumo.on('init', function() kumo.configure_log_hook { name = 'w', per_record = { Bounce = { template = 'id={{ id }' } } } end)`,
			"per_record.Bounce.template: template syntax error: '}}' expected (line 1, column 10)"},
		{`kumo.on('init', function() kumo.configure_log_hook { name = 'w', per_record = { Any = { template = '{{ id | nosuchfilter }}' } } } end)`,
			"per_record.Any.template: template syntax error: Filter 'nosuchfilter' does not exist."},
		{`local q = require 'policy-extras.queue'
q:setup { '` + filepath.Join(dir, "queues.toml") + `' }`, `maildir_path "/var/mail/{{ meta.tenant": template syntax error`},
		{`kumo.on('init', function() kumo.make_queue_config { protocol = { maildir_path = '/m/{% if %}' } } end)`, `invalid value: maildir_path "/m/{% if %}": template syntax error`},
	} {
		p := filepath.Join(dir, "bad.lua")
		if err := os.WriteFile(p, []byte("local kumo = require 'kumo'\n"+tc.src+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(kumogoBin, "--validate", "--policy", p).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: err=%v, output:\n%s\nwant %q", tc.src, err, out, tc.want)
		}
	}
}
