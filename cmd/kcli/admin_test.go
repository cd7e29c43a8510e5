package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/kumogo/kumogo/internal/testutil"
)

// adminPolicy writes a relay policy for the admin tests: scheduled queues
// per recipient domain, a retry interval of an hour (so that only an
// admin action moves a waiting message), delivery to the sink at
// sinkAddr, except for dead.example, whose mail goes to a port where
// nothing listens, unless its routing domain is changed (rebind).
// rebind_message sets the routing domain the request's data names.
func adminPolicy(t *testing.T, dir, sinkAddr string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	port := func(a string) string { return a[strings.LastIndexByte(a, ':')+1:] }
	p := filepath.Join(dir, "policy.lua")
	src := `local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '` + dir + `/spool/data', kind = 'LocalDisk' }
  kumo.define_spool { name = 'meta', path = '` + dir + `/spool/meta', kind = 'LocalDisk' }
  kumo.configure_local_logs { log_dir = '` + dir + `/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', relay_hosts = { '127.0.0.1' } }
  kumo.start_http_listener { listen = '127.0.0.1:0' }
end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  local port = '` + port(sinkAddr) + `'
  if domain == 'dead.example' and not routing_domain then
    port = '` + port(dead) + `'
  end
  return kumo.make_queue_config {
    retry_interval = '1h', max_age = '2h',
    protocol = { smtp = { mx_list = { 'localhost:' .. port } } },
  }
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { enable_tls = 'Disabled', prohibited_hosts = {} }
end)
kumo.on('http_message_generated', function(msg)
  if msg:recipient().domain == 'lua-suspend.example' then
    kumo.api.admin.suspend.suspend { domain = 'lua-held.example', reason = 'from lua', duration = '10m' }
  end
end)
kumo.on('rebind_message', function(msg, data)
  msg:set_meta('routing_domain', data.to)
end)
`
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// injectTo injects one message per recipient through the HTTP API.
func injectTo(t *testing.T, endpoint string, rcpts ...string) {
	t.Helper()
	var rc []string
	for _, r := range rcpts {
		rc = append(rc, fmt.Sprintf(`{"email":%q}`, r))
	}
	resp, err := http.Post(endpoint+"/api/inject/v1", "application/json",
		strings.NewReader(`{"envelope_sender":"a@example.com","recipients":[`+strings.Join(rc, ",")+`],"content":"Subject: admin\r\n\r\nbody\r\n"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("inject: %d", resp.StatusCode)
	}
}

// waitFor polls cond for up to within.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool, diag func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s\n%s", what, within, diag())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scheduled is how many messages inspect-sched-q shows in queue.
func scheduled(t *testing.T, endpoint, queue string) int {
	t.Helper()
	r := kcli(t, endpoint, "inspect-sched-q", queue)
	if r.code != 0 {
		t.Fatalf("inspect-sched-q %s: %d %s", queue, r.code, r.stderr)
	}
	var sq struct {
		NumScheduled int `json:"num_scheduled"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sq); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	return sq.NumScheduled
}

// records reads the daemon's log records of type typ.
func records(t *testing.T, dir string, typ logrecord.Type) []logrecord.Record {
	t.Helper()
	all, err := logrecord.ReadDir(filepath.Join(dir, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	var out []logrecord.Record
	for _, r := range all {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

// kcliOK runs kcli and fails the test on a non-zero exit.
func kcliOK(t *testing.T, endpoint string, args ...string) string {
	t.Helper()
	r := kcli(t, endpoint, args...)
	if r.code != 0 {
		t.Fatalf("kcli %v: exit %d: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

func idOf(t *testing.T, out string) string {
	t.Helper()
	var v struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.ID == "" {
		t.Fatalf("no id in %q: %v", out, err)
	}
	return v.ID
}

// TestKcliSuspendAndResume: a scheduled queue suspension stops delivery to
// the sink (other queues go on), holds the messages in their scheduled
// queue with KumoMTA's TransientFailure record, and suspend-cancel
// delivers them at once, although their next retry is an hour away. A
// ready queue suspension does the same for an egress path.
func TestKcliSuspendAndResume(t *testing.T) {
	dir := t.TempDir()
	sink := testutil.StartBareSinkServer(t)
	d := startDaemon(t, adminPolicy(t, dir, sink.Addr()))
	endpoint := "http://" + d.http
	diag := func() string { return fmt.Sprintf("sink has %d\n%s", sink.Messages.Load(), d.logText()) }

	id := idOf(t, kcliOK(t, endpoint, "suspend", "--domain", "held.example", "--reason", "maintenance", "--duration", "10m"))
	var list []map[string]any
	if err := json.Unmarshal([]byte(kcliOK(t, endpoint, "suspend-list")), &list); err != nil || len(list) != 1 ||
		list[0]["id"] != id || list[0]["domain"] != "held.example" || list[0]["reason"] != "maintenance" ||
		!strings.HasPrefix(list[0]["duration"].(string), "9m") {
		t.Fatalf("suspend-list: %v %v", list, err)
	}

	injectTo(t, endpoint, "a@held.example", "b@held.example", "c@free.example")
	waitFor(t, "delivery of the unsuspended queue", 10*time.Second, func() bool { return sink.Messages.Load() == 1 }, diag)
	waitFor(t, "the suspended messages in their scheduled queue", 10*time.Second, func() bool { return scheduled(t, endpoint, "held.example") == 2 }, diag)
	time.Sleep(time.Second)
	if n := sink.Messages.Load(); n != 1 {
		t.Fatalf("the sink got %d messages while held.example was suspended", n)
	}

	kcliOK(t, endpoint, "suspend-cancel", "--id", id)
	waitFor(t, "delivery after suspend-cancel", 5*time.Second, func() bool { return sink.Messages.Load() == 3 }, diag)
	if r := kcli(t, endpoint, "suspend-cancel", "--id", id); r.code != 1 || !strings.Contains(r.stderr, "404") {
		t.Fatalf("second cancel: %d %q", r.code, r.stderr)
	}
	if out := kcliOK(t, endpoint, "suspend-list"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("suspend-list after cancel: %s", out)
	}
	var held int
	for _, r := range records(t, dir, logrecord.TransientFailure) {
		if r.Response.Code == 451 && r.Response.Content == "KumoMTA internal: scheduled queue is suspended: maintenance" &&
			r.Site == "held.example" && r.Queue == "held.example" {
			held++
		}
	}
	if held != 2 {
		t.Fatalf("%d suspension TransientFailure records, want 2", held)
	}

	// ready queue suspension: the egress path of free.example
	deliveries := records(t, dir, logrecord.Delivery)
	var site string
	for _, r := range deliveries {
		if r.Queue == "free.example" {
			site = r.Site
		}
	}
	if site == "" {
		t.Fatalf("no Delivery record for free.example: %+v", deliveries)
	}
	rid := idOf(t, kcliOK(t, endpoint, "suspend-ready-q", "--name", site, "--reason", "blocked", "--duration", "10m"))
	out := kcliOK(t, endpoint, "suspend-ready-q-list")
	if !strings.Contains(out, rid) || !strings.Contains(out, site) || !strings.Contains(out, `"expires"`) {
		t.Fatalf("suspend-ready-q-list: %s", out)
	}
	if out := kcliOK(t, endpoint, "queue-summary"); !strings.Contains(out, site+": suspended for 9m") || !strings.Contains(out, ": blocked") {
		t.Fatalf("queue-summary does not show the suspension:\n%s", out)
	}
	injectTo(t, endpoint, "d@free.example")
	waitFor(t, "the message held in its scheduled queue", 10*time.Second, func() bool { return scheduled(t, endpoint, "free.example") == 1 }, diag)
	time.Sleep(time.Second)
	if n := sink.Messages.Load(); n != 3 {
		t.Fatalf("the sink got %d messages while the ready queue was suspended", n)
	}
	kcliOK(t, endpoint, "suspend-ready-q-cancel", "--id", rid)
	waitFor(t, "delivery after suspend-ready-q-cancel", 5*time.Second, func() bool { return sink.Messages.Load() == 4 }, diag)

	// ready-q-states and bump-config-epoch answer as KumoMTA's do
	resp, err := http.Get(endpoint + "/api/admin/ready-q-states/v1")
	if err != nil {
		t.Fatal(err)
	}
	var states struct {
		States map[string]map[string]struct {
			Context string `json:"context"`
			Since   string `json:"since"`
		} `json:"states_by_ready_queue"`
	}
	err = json.NewDecoder(resp.Body).Decode(&states)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || states.States == nil {
		t.Fatalf("ready-q-states: %d %v %+v", resp.StatusCode, err, states)
	}
	resp, err = http.Post(endpoint+"/api/admin/bump-config-epoch", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("bump-config-epoch: %d", resp.StatusCode)
	}
	waitFor(t, "the epoch bump in the log", 5*time.Second, func() bool { return strings.Contains(d.logText(), "config epoch bumped") }, diag)

	// the same rules from the policy: kumo.api.admin.suspend.suspend
	injectTo(t, endpoint, "e@lua-suspend.example")
	if out := kcliOK(t, endpoint, "suspend-list"); !strings.Contains(out, `"domain": "lua-held.example"`) || !strings.Contains(out, `"reason": "from lua"`) {
		t.Fatalf("suspend-list after kumo.api.admin.suspend.suspend: %s", out)
	}
}

// TestKcliBounce: bounce removes the waiting messages of the matching
// queue with AdminBounce records, keeps bouncing new ones while it lasts,
// and bounce-cancel ends that.
func TestKcliBounce(t *testing.T) {
	dir := t.TempDir()
	sink := testutil.StartBareSinkServer(t)
	d := startDaemon(t, adminPolicy(t, dir, sink.Addr()))
	endpoint := "http://" + d.http
	diag := func() string { return d.logText() }

	injectTo(t, endpoint, "a@dead.example", "b@dead.example", "c@dead.example")
	waitFor(t, "3 messages waiting", 15*time.Second, func() bool { return scheduled(t, endpoint, "dead.example") == 3 }, diag)

	out := kcliOK(t, endpoint, "bounce", "--domain", "dead.example", "--reason", "bad send")
	var resp struct {
		ID           string         `json:"id"`
		Bounced      map[string]int `json:"bounced"`
		TotalBounced int            `json:"total_bounced"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.ID == "" || resp.TotalBounced != 3 || resp.Bounced["dead.example"] != 3 {
		t.Fatalf("bounce: %s %v", out, err)
	}
	if n := scheduled(t, endpoint, "dead.example"); n != 0 {
		t.Fatalf("%d messages still waiting", n)
	}
	checkBounces := func(want int) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d AdminBounce records", want), 10*time.Second, func() bool { return len(records(t, dir, logrecord.AdminBounce)) == want }, diag)
		for _, r := range records(t, dir, logrecord.AdminBounce) {
			if r.Response.Code != 551 || r.Response.Enhanced == nil || *r.Response.Enhanced != (smtpreply.EnhancedCode{Class: 5, Subject: 7, Detail: 1}) ||
				r.Response.Content != "Administrator bounced with reason: bad send" || r.Site != "localhost" || r.Queue != "dead.example" {
				t.Fatalf("AdminBounce record %+v", r)
			}
		}
	}
	checkBounces(3)

	// a new message of the queue is bounced while the rule lasts; others pass
	injectTo(t, endpoint, "d@dead.example", "e@free.example")
	checkBounces(4)
	waitFor(t, "delivery of free.example", 10*time.Second, func() bool { return sink.Messages.Load() == 1 }, diag)
	var list []struct {
		ID           string `json:"id"`
		Domain       string `json:"domain"`
		Reason       string `json:"reason"`
		TotalBounced int    `json:"total_bounced"`
	}
	if err := json.Unmarshal([]byte(kcliOK(t, endpoint, "bounce-list")), &list); err != nil || len(list) != 1 ||
		list[0].ID != resp.ID || list[0].Domain != "dead.example" || list[0].TotalBounced != 4 {
		t.Fatalf("bounce-list: %+v %v", list, err)
	}

	kcliOK(t, endpoint, "bounce-cancel", "--id", resp.ID)
	injectTo(t, endpoint, "f@dead.example")
	waitFor(t, "the message waiting after bounce-cancel", 15*time.Second, func() bool { return scheduled(t, endpoint, "dead.example") == 1 }, diag)
	if n := len(records(t, dir, logrecord.AdminBounce)); n != 4 {
		t.Fatalf("%d AdminBounce records after the cancel", n)
	}
}

// TestKcliRebind: rebind with --set moves the waiting messages of a queue
// to the queue their new meta names, where they are delivered at once
// (AdminRebind records); with --trigger-rebind-event the policy's
// rebind_message handler decides, given --data.
func TestKcliRebind(t *testing.T) {
	dir := t.TempDir()
	sink := testutil.StartBareSinkServer(t)
	d := startDaemon(t, adminPolicy(t, dir, sink.Addr()))
	endpoint := "http://" + d.http
	diag := func() string { return fmt.Sprintf("sink has %d\n%s", sink.Messages.Load(), d.logText()) }

	injectTo(t, endpoint, "a@dead.example", "b@dead.example")
	waitFor(t, "2 messages waiting", 15*time.Second, func() bool { return scheduled(t, endpoint, "dead.example") == 2 }, diag)
	out := kcliOK(t, endpoint, "rebind", "--domain", "dead.example", "--reason", "reroute", "--set", "routing_domain=live.example")
	if !strings.Contains(out, `"moved": 2`) {
		t.Fatalf("rebind: %s", out)
	}
	waitFor(t, "delivery of the rebound messages", 10*time.Second, func() bool { return sink.Messages.Load() == 2 }, diag)
	waitFor(t, "2 AdminRebind records", 10*time.Second, func() bool { return len(records(t, dir, logrecord.AdminRebind)) == 2 }, diag)
	for _, r := range records(t, dir, logrecord.AdminRebind) {
		if r.Response.Code != 250 || r.Response.Content != "Rebound from dead.example to dead.example!live.example: reroute" ||
			r.Queue != "dead.example!live.example" {
			t.Fatalf("AdminRebind record %+v", r)
		}
	}

	injectTo(t, endpoint, "c@dead.example")
	waitFor(t, "1 message waiting", 15*time.Second, func() bool { return scheduled(t, endpoint, "dead.example") == 1 }, diag)
	kcliOK(t, endpoint, "rebind", "--domain", "dead.example", "--reason", "by event", "--trigger-rebind-event", "--data", `{"to":"other.example"}`)
	waitFor(t, "delivery of the message the event rebound", 10*time.Second, func() bool { return sink.Messages.Load() == 3 }, diag)
	waitFor(t, "the event's AdminRebind record", 10*time.Second, func() bool {
		for _, r := range records(t, dir, logrecord.AdminRebind) {
			if r.Queue == "dead.example!other.example" && r.Response.Content == "Rebound from dead.example to dead.example!other.example: by event" {
				return true
			}
		}
		return false
	}, diag)
}

// TestKcliSuspensionSurvivesRestart: suspensions and bounces are still in
// effect after the daemon restarts, with the same ids.
func TestKcliSuspensionSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	sink := testutil.StartBareSinkServer(t)
	policy := adminPolicy(t, dir, sink.Addr())
	d := startDaemon(t, policy)
	endpoint := "http://" + d.http
	sid := idOf(t, kcliOK(t, endpoint, "suspend", "--domain", "held.example", "--reason", "maintenance", "--duration", "1h"))
	bid := idOf(t, kcliOK(t, endpoint, "bounce", "--domain", "gone.example", "--reason", "gone", "--duration", "1h"))
	rid := idOf(t, kcliOK(t, endpoint, "suspend-ready-q", "--name", "unspecified->nowhere@smtp_client", "--reason", "r", "--duration", "1h"))
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()

	d = startDaemon(t, policy)
	endpoint = "http://" + d.http
	diag := func() string { return fmt.Sprintf("sink has %d\n%s", sink.Messages.Load(), d.logText()) }
	for cmd, id := range map[string]string{"suspend-list": sid, "bounce-list": bid, "suspend-ready-q-list": rid} {
		if out := kcliOK(t, endpoint, cmd); !strings.Contains(out, id) {
			t.Fatalf("%s after the restart: %s", cmd, out)
		}
	}
	injectTo(t, endpoint, "a@held.example", "b@gone.example")
	waitFor(t, "the suspended message waiting", 10*time.Second, func() bool { return scheduled(t, endpoint, "held.example") == 1 }, diag)
	waitFor(t, "the AdminBounce record", 10*time.Second, func() bool { return len(records(t, dir, logrecord.AdminBounce)) == 1 }, diag)
	time.Sleep(500 * time.Millisecond)
	if n := sink.Messages.Load(); n != 0 {
		t.Fatalf("the sink got %d messages", n)
	}
	kcliOK(t, endpoint, "suspend-cancel", "--id", sid)
	waitFor(t, "delivery after the cancel", 5*time.Second, func() bool { return sink.Messages.Load() == 1 }, diag)
}
