package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/testutil"
)

// TestAccountingDatabase: with kumo.configure_accounting_db_path the relay
// counts the messages it received and delivered in an SQLite file that
// sqlite3's CLI reads (KumoMTA's accounting table, one row per UTC day);
// a restart adds to the same row.
func TestAccountingDatabase(t *testing.T) {
	sqlite3, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Fatalf("the sqlite3 CLI is required: %v", err)
	}
	senv, sinkLogs := sinkEnv(t)
	sink := startDaemon(t, senv, "--policy", "sink.lua")
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "accounting.db")
	policy := spooledPolicy(t, dir, `
  kumo.configure_accounting_db_path '`+dbPath+`'
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'acct.test' }`, `
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', '[127.0.0.1]:`+portOf(sink.addr)+`') end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { enable_tls = 'Disabled', prohibited_hosts = {} }
end)
`)
	var rcpts []string
	run := func(n int) {
		relay := startDaemon(t, nil, "--policy", policy)
		c := testutil.Dial(t, relay.addr)
		c.Expect(t, "220 acct.test")
		c.Cmd(t, "EHLO x.example", "250-")
		for i := 0; i < n; i++ {
			rcpt := fmt.Sprintf("r%d@example.com", len(rcpts))
			rcpts = append(rcpts, rcpt)
			c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
			c.Cmd(t, "RCPT TO:<"+rcpt+">", "250")
			c.Cmd(t, "DATA", "354")
			c.SendRaw("Subject: acct\r\n\r\nhi\r\n.\r\n")
			c.Expect(t, "250 OK ids=")
		}
		c.Close()
		if missing := awaitRecipients(t, sinkLogs, rcpts, 20*time.Second); len(missing) > 0 {
			t.Fatalf("not delivered: %v\n%s", missing, tail(relay.log(), 20))
		}
		time.Sleep(200 * time.Millisecond) // the Delivery records follow the sink's 250
		relay.stop(t, syscall.SIGINT)      // the counts are flushed at shutdown
	}
	query := func() string {
		out, err := exec.Command(sqlite3, dbPath, "SELECT event_time, received, delivered FROM accounting").CombinedOutput()
		if err != nil {
			t.Fatalf("sqlite3: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	today := time.Now().UTC().Format("2006-01-02") + " 00:00:00"
	run(3)
	if got, want := query(), today+"|3|3"; got != want {
		t.Fatalf("accounting after 3 messages: %q, want %q", got, want)
	}
	run(2)
	if got, want := query(), today+"|5|5"; got != want {
		t.Fatalf("accounting after a restart and 2 more: %q, want %q", got, want)
	}
	sink.stop(t, syscall.SIGINT)
}
