package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/testutil"
)

// TestQueueConfigErrorAtData: get_queue_config raising during DATA is a
// policy failure, not a storage one: the client gets KumoMTA's
// "421 4.3.0 <host> technical difficulties" and a Rejection record is
// logged; kumo.reject in get_queue_config gives its own reply.
func TestQueueConfigErrorAtData(t *testing.T) {
	dir := t.TempDir()
	policy := spooledPolicy(t, dir, `
  kumo.configure_local_logs { log_dir = '`+dir+`/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'qcfg.test' }`, `
kumo.on('get_queue_config', function(domain)
  if domain == 'reject.example' then
    kumo.reject(451, '4.7.1 not today')
  end
  error('no queue config for ' .. domain)
end)
`)
	d := startDaemon(t, nil, "--policy", policy)
	send := func(rcpt, want string) {
		c := testutil.Dial(t, d.addr)
		defer c.Close()
		c.Expect(t, "220 qcfg.test")
		c.Cmd(t, "EHLO x.example", "250-")
		c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
		c.Cmd(t, "RCPT TO:<"+rcpt+">", "250")
		c.Cmd(t, "DATA", "354")
		c.SendRaw("Subject: q\r\n\r\nhi\r\n.\r\n")
		c.Expect(t, want)
	}
	send("r@boom.example", "421 4.3.0 qcfg.test technical difficulties")
	send("r@reject.example", "451 4.7.1 not today")
	d.stop(t, syscall.SIGINT)
	if !strings.Contains(d.log(), "no queue config for boom.example") {
		t.Fatalf("the policy error is not in the log:\n%s", d.log())
	}
	var recs []logrecord.Record
	deadline := time.Now().Add(5 * time.Second)
	for {
		var err error
		recs, err = logrecord.ReadDir(filepath.Join(dir, "logs"))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if len(recs) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := map[string]logrecord.Record{}
	for _, r := range recs {
		if r.Type != logrecord.Rejection {
			t.Fatalf("unexpected %s record %+v", r.Type, r)
		}
		got[r.Recipient[0]] = r
	}
	if r := got["r@boom.example"]; r.Response.Code != 421 || r.Response.Content != "qcfg.test technical difficulties" {
		t.Fatalf("Rejection for the raising get_queue_config: %+v (all: %+v)", r, recs)
	}
	if r := got["r@reject.example"]; r.Response.Code != 451 || r.Response.Content != "not today" {
		t.Fatalf("Rejection for kumo.reject in get_queue_config: %+v", r)
	}
}
