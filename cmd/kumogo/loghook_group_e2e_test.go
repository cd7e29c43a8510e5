package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestLogHookGroupsSurviveKill: the records of a 1,000-message run are
// spooled in groups (one pebble batch per store, one commit round per
// group) while the webhook receiver refuses connections, so every record
// fails once and waits in the scheduled queue `webhook`. The daemon is
// then killed with SIGKILL and started again on the same spool with the
// receiver up: every record is delivered from the spool, and exactly once
// (a group written twice, or restored twice, would post duplicates; a
// group lost whole would leave records missing).
func TestLogHookGroupsSurviveKill(t *testing.T) {
	dir := t.TempDir()
	recv := newWebhookReceiver()
	addr := freeLoopbackAddr(t)
	p := filepath.Join(dir, "policy.lua")
	src := `local kumo = require 'kumo'
local log_hooks = require 'policy-extras.log_hooks'
log_hooks:new_json { name = 'webhook', url = 'http://` + addr + `/log', timeout = '5s', batch_size = 100, min_batch_size = 10, max_batch_latency = '100ms' }
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '` + dir + `/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = '` + dir + `/meta', kind = 'RocksDB' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', relay_hosts = { '127.0.0.1' } }
  kumo.start_http_listener { listen = '127.0.0.1:0' }
end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'null') end)
`
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	const n = hookRunMessages
	d := startDaemon(t, nil, "--policy", p)
	base := "http://" + d.httpAddr(t, "http")
	sendParallel(t, d.addr, n, 4, func(i int) string { return fmt.Sprint("kill ", i) })
	// every record spooled, tried once (refused) and waiting for its retry
	// a minute later
	deadline := time.Now().Add(60 * time.Second)
	for {
		f := scrapeMetrics(t, base)["scheduled_count"]
		if f != nil && sample(f, "queue", "webhook") == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the %d records are not all waiting in the scheduled queue webhook after 60 s: %v\n%s", n, f, tail(d.log(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if recv.count("Reception") != 0 {
		t.Fatal("records arrived while the receiver was down")
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done

	recv.serve(t, addr)
	d2 := startDaemon(t, nil, "--policy", p)
	recv.waitCounts(t, map[string]int{"Reception": n}, 60*time.Second, d2)
	time.Sleep(time.Second) // a duplicate would arrive by now
	if dup := recv.duplicates(); len(dup) > 0 {
		t.Fatalf("records posted more than once after the restart: %v", dup[:min(len(dup), 10)])
	}
	if got := recv.count("Reception"); got != n {
		t.Fatalf("%d Reception records posted after the restart, want %d", got, n)
	}
	d2.stop(t, syscall.SIGTERM)
}
