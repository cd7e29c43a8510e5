package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/testutil"
)

// TestDataFileEditChangesRouting: a running daemon whose policy routes by
// a JSON data file (memoized with invalidate_with_epoch, as KumoMTA's
// helpers do) picks up an edit of that file within the config monitor's
// interval, without a restart. Routing goes to two local sinks through
// mx_list = { 'localhost:PORT' }.
func TestDataFileEditChangesRouting(t *testing.T) {
	sinkA := testutil.StartBareSinkServer(t)
	sinkB := testutil.StartBareSinkServer(t)
	port := func(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
	dir := t.TempDir()
	data := filepath.Join(dir, "routing.json")
	if err := os.WriteFile(data, []byte(`{"tenant": "a"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	policy := spooledPolicy(t, dir, `
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', relay_hosts = { '127.0.0.1' } }
  kumo.configure_local_logs { log_dir = '`+dir+`/logs' }
  kumo.set_config_monitor_globs { '`+dir+`/*.json' }`, `
local load_routing = kumo.memoize(function() return kumo.json_load('`+data+`') end,
  { name = 'routing', ttl = '1 hour', capacity = 1, invalidate_with_epoch = true })
local ports = { a = '`+port(sinkA.Addr())+`', b = '`+port(sinkB.Addr())+`' }
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('tenant', load_routing().tenant)
end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    protocol = { smtp = { mx_list = { 'localhost:' .. ports[tenant] } } },
  }
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { enable_tls = 'Disabled', prohibited_hosts = {} }
end)
`)
	d := startDaemon(t, nil, "--policy", policy)
	send := func(rcpt string) {
		c := testutil.Dial(t, d.addr)
		c.Expect(t, "220")
		c.Cmd(t, "EHLO x.example", "250")
		c.Cmd(t, "MAIL FROM:<s@x.example>", "250")
		c.Cmd(t, "RCPT TO:<"+rcpt+">", "250")
		c.Cmd(t, "DATA", "354")
		c.Cmd(t, "Subject: epoch\r\n\r\nbody\r\n.", "250")
		c.Cmd(t, "QUIT", "221")
	}
	wait := func(what string, cond func() bool, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s (A %d, B %d)\n%s", what, within, sinkA.Messages.Load(), sinkB.Messages.Load(), tail(d.log(), 30))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	send("r1@dest.example")
	wait("first message at sink A", func() bool { return sinkA.Messages.Load() == 1 }, 20*time.Second)

	if err := os.WriteFile(data, []byte(`{"tenant": "b"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	wait("epoch bump", func() bool { return strings.Contains(d.log(), "config epoch bumped") }, 25*time.Second)
	send("r2@dest.example")
	wait("second message at sink B", func() bool { return sinkB.Messages.Load() == 1 }, 20*time.Second)
	if sinkA.Messages.Load() != 1 {
		t.Fatalf("sink A got %d messages", sinkA.Messages.Load())
	}
	d.stop(t, syscall.SIGINT)
}
