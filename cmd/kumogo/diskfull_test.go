package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/testutil"
)

// TestRealDiskFull fills a real (tmpfs) file system under the spool, with
// the free-space floors off so that writes really hit ENOSPC, for both
// spool kinds: sessions get a 4xx instead of a 250, the daemon keeps
// running, service comes back by itself once the file system has room,
// and every message that got a 250 reaches the sink.
func TestRealDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CI runs as root)")
	}
	for _, kind := range []string{"LocalDisk", "RocksDB"} {
		t.Run(kind, func(t *testing.T) { testRealDiskFull(t, kind) })
	}
}

func testRealDiskFull(t *testing.T, kind string) {
	dir := t.TempDir()
	fs := filepath.Join(dir, "fs")
	if err := os.Mkdir(fs, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", fs).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", fs).Run() })

	sinkAddr := freeLoopbackAddr(t)
	host, port, _ := strings.Cut(sinkAddr, ":")
	policy := filepath.Join(dir, "full.lua")
	os.WriteFile(policy, []byte(`local kumo = require 'kumo'
kumo.on('init', function()
  -- floors off: the disk really fills up
  kumo.define_spool { name = 'data', path = '`+fs+`/data', kind = '`+kind+`', min_free_space = '0%', min_free_inodes = '0%' }
  kumo.define_spool { name = 'meta', path = '`+fs+`/meta', kind = '`+kind+`', min_free_space = '0%', min_free_inodes = '0%' }
  kumo.configure_local_logs { log_dir = '`+dir+`/logs' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'full.test' }
end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', '[`+host+`]:`+port+`') end)
kumo.on('get_queue_config', function() return kumo.make_queue_config { retry_interval = '1s', max_retry_interval = '1s' } end)
kumo.on('get_egress_path_config', function() return kumo.make_egress_path { prohibited_hosts = {}, enable_tls = 'Disabled' } end)
`), 0o644)
	relay := startDaemon(t, nil, "--policy", policy)

	body := strings.Repeat(strings.Repeat("y", 78)+"\r\n", 1300) // ~100 KB
	var acked []string
	send := func(c *testutil.SMTPConn, rcpt string) (int, string) {
		c.Cmd(t, "MAIL FROM:<a@x.example>", "250")
		c.Cmd(t, "RCPT TO:<"+rcpt+">", "250")
		c.Cmd(t, "DATA", "354")
		c.SendRaw("Subject: " + rcpt + "\r\n\r\n" + body + ".\r\n")
		code, lines, err := c.ReadReply()
		if err != nil {
			t.Fatalf("reply to DATA: %v\n%s", err, tail(relay.log(), 20))
		}
		return code, strings.Join(lines, "\n")
	}
	c := testutil.Dial(t, relay.addr)
	c.Expect(t, "220 full.test")
	c.Cmd(t, "EHLO t.example", "250-")
	var refused string
	for i := 0; i < 200 && refused == ""; i++ {
		rcpt := fmt.Sprintf("m%d@example.com", i)
		code, text := send(c, rcpt)
		switch {
		case code == 250:
			acked = append(acked, rcpt)
		case code >= 400 && code < 500:
			refused = text
		default:
			t.Fatalf("message %d on a filling disk: %d %s", i, code, text)
		}
	}
	if refused == "" || len(acked) < 5 {
		t.Fatalf("%d messages accepted and no 4xx from a 6 MB file system (refused: %q)", len(acked), refused)
	}
	t.Logf("%s: %d messages accepted, then %q", kind, len(acked), refused)
	time.Sleep(300 * time.Millisecond)
	if relay.cmd.ProcessState != nil {
		t.Fatalf("the daemon exited on a full disk:\n%s", tail(relay.log(), 30))
	}

	// room again: the file system grows, and service comes back by itself
	if out, err := exec.Command("mount", "-o", "remount,size=256m", fs).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c2 := testutil.Dial(t, relay.addr)
		code, lines, err := c2.ReadReply()
		if err == nil && code == 220 {
			c2.Cmd(t, "EHLO t.example", "250-")
			rcpt := "after@example.com"
			if code, text := send(c2, rcpt); code == 250 {
				acked = append(acked, rcpt)
				c2.Close()
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("still refused after the file system grew: %d %s\n%s", code, text, tail(relay.log(), 20))
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("no service after the file system grew: %d %q %v\n%s", code, lines, err, tail(relay.log(), 20))
		}
		c2.Close()
		time.Sleep(500 * time.Millisecond)
	}

	// and everything that got a 250 is delivered once the sink is up
	senv, sinkLogs := sinkEnv(t)
	senv = append(senv, "KUMOGO_SINK_LISTEN="+sinkAddr)
	sink := startDaemon(t, senv, "--policy", "sink.lua")
	if missing := awaitRecipients(t, sinkLogs, acked, 30*time.Second); len(missing) > 0 {
		t.Fatalf("%d of %d accepted messages never reached the sink, e.g. %v\n%s", len(missing), len(acked), missing[:min(5, len(missing))], tail(relay.log(), 30))
	}
	relay.stop(t, syscall.SIGINT)
	sink.stop(t, syscall.SIGINT)
}
