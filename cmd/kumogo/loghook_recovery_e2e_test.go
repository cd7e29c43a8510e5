package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestLogHookOutageCostsNoStatesAndResumes: with policy-extras.log_hooks
// new_json and the helper's own retry schedule (1 minute, doubling), the
// webhook receiver refuses connections while 1,500 messages are received
// (more than a ready queue's default max_ready of 1,024). Each record's
// failed delivery ends its custom_lua session; the next session must run
// in the spare state of the last one, not in a new state that loads the
// whole policy again (lua_load_count: one per failed record before, which
// took the CPU from reception). Once the receiver is back, the first
// delivery resumes the backlog at once: every record arrives within 25 s,
// long before the minute their retries were due at, and none twice.
func TestLogHookOutageCostsNoStatesAndResumes(t *testing.T) {
	dir := t.TempDir()
	recv := newWebhookReceiver()
	addr := freeLoopbackAddr(t)
	p := filepath.Join(dir, "policy.lua")
	src := `local kumo = require 'kumo'
local log_hooks = require 'policy-extras.log_hooks'
log_hooks:new_json { name = 'webhook', url = 'http://` + addr + `/log', timeout = '5s' }
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
	d := startDaemon(t, nil, "--policy", p)
	base := "http://" + d.httpAddr(t, "http")
	loads := func() float64 {
		t.Helper()
		f := scrapeMetrics(t, base)["lua_load_count"]
		if f == nil || len(f.GetMetric()) != 1 {
			t.Fatalf("no lua_load_count: %v", f)
		}
		return f.GetMetric()[0].GetCounter().GetValue()
	}
	const n, more = 1500, 12
	before := loads()
	start := time.Now()
	sendParallel(t, d.addr, n, 4, func(i int) string { return fmt.Sprint("down ", i) })
	t.Logf("receiver down: %d messages received in %v", n, time.Since(start).Round(time.Millisecond))
	// every record has been tried (and refused) by now
	time.Sleep(3 * time.Second)
	if recv.count("Reception") != 0 {
		t.Fatal("records arrived while the receiver was down")
	}
	if l := loads() - before; l > n/20 {
		t.Errorf("the policy was loaded into %v new Lua states for %d refused records (want the session states reused)", l, n)
	}
	recv.serve(t, addr)
	up := time.Now()
	sendParallel(t, d.addr, more, 4, func(i int) string { return fmt.Sprint("up ", i) })
	recv.waitCounts(t, map[string]int{"Reception": n + more}, 25*time.Second, d)
	t.Logf("%d records posted %v after the receiver came back", n+more, time.Since(up).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond)
	if dup := recv.duplicates(); len(dup) > 0 {
		t.Fatalf("records posted more than once: %v", dup[:min(len(dup), 10)])
	}
	d.stop(t, syscall.SIGTERM)
}
