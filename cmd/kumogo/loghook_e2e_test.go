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
}

func newWebhookReceiver() *webhookReceiver {
	return &webhookReceiver{byType: map[string]int{}, seen: map[string]int{}, subjects: map[string]int{}}
}

func (w *webhookReceiver) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
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
	return spooledPolicy(t, dir, `
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'hooks.test', relay_hosts = { '127.0.0.1' } }
  kumo.configure_log_hook { name = 'webhook', headers = { 'Subject' } }`, `
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
    local response = client:post('`+webhookURL+`'):header('Content-Type', 'application/json'):body(message:get_data()):send()
    local disposition = string.format('%d %s: %s', response:status_code(), response:status_reason(), response:text())
    if response:status_is_success() then return disposition end
    kumo.reject(400, disposition)
  end
  function conn:close() client:close() end
  return conn
end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain == 'webhook' then
    return kumo.make_queue_config { retry_interval = '1s', max_retry_interval = '2s', protocol = { custom_lua = { constructor = 'make.webhook' } } }
  end
  return kumo.make_queue_config { protocol = { maildir_path = '`+dir+`/maildir' } }
end)
`)
}

// TestLogHookWebhookDeliversEveryRecordOnce: 300 messages delivered to a
// maildir give 300 Reception and 300 Delivery records, each POSTed to the
// webhook exactly once; the 20 messages whose Subject starts with "skip"
// are filtered out by should_enqueue_log_record.
func TestLogHookWebhookDeliversEveryRecordOnce(t *testing.T) {
	dir := t.TempDir()
	recv := newWebhookReceiver()
	addr := freeLoopbackAddr(t)
	recv.serve(t, addr)
	d := startDaemon(t, nil, "--policy", webhookPolicy(t, dir, "http://"+addr+"/log"))
	const n, skipped = 300, 20
	sendMessages(t, d.addr, n+skipped, func(i int) string { return fmt.Sprintf("user%d@example.com", i) }, func(i int) string {
		if i%16 == 0 && i/16 < skipped {
			return fmt.Sprintf("skip %d", i)
		}
		return fmt.Sprintf("keep %d", i)
	})
	recv.waitCounts(t, map[string]int{"Reception": n, "Delivery": n}, 60*time.Second, d)
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
	// the maildir holds all 320 messages
	if got := readMaildir(t, filepath.Join(dir, "maildir")); len(got) != n+skipped {
		t.Fatalf("maildir holds %d messages, want %d", len(got), n+skipped)
	}
	d.stop(t, syscall.SIGTERM)
}

// TestLogHookSurvivesReceiverOutage: with the receiver down for 5 s
// (connections refused), every record is retried from the spool and
// arrives exactly once when it comes back.
func TestLogHookSurvivesReceiverOutage(t *testing.T) {
	dir := t.TempDir()
	recv := newWebhookReceiver()
	addr := freeLoopbackAddr(t)
	d := startDaemon(t, nil, "--policy", webhookPolicy(t, dir, "http://"+addr+"/log"))
	const n = 100
	sendMessages(t, d.addr, n, func(i int) string { return fmt.Sprintf("user%d@example.com", i) }, func(i int) string { return fmt.Sprint("m", i) })
	time.Sleep(5 * time.Second)
	if recv.count("Reception") != 0 {
		t.Fatal("receiver counted records while down")
	}
	recv.serve(t, addr)
	recv.waitCounts(t, map[string]int{"Reception": n, "Delivery": n}, 30*time.Second, d)
	time.Sleep(500 * time.Millisecond)
	if dup := recv.duplicates(); len(dup) > 0 {
		t.Fatalf("records posted more than once: %v", dup[:min(len(dup), 10)])
	}
	if recv.count("Reception") != n || recv.count("Delivery") != n {
		t.Fatalf("records: %v", recv.byType)
	}
	d.stop(t, syscall.SIGTERM)
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
