package main

import (
	"strings"
	"syscall"
	"testing"
)

// TestTestResolverThroughDaemon: kumo.dns.configure_test_resolver points
// the daemon's own resolver at the policy's zones: lookup_mx, lookup_addr,
// lookup_ptr and lookup_txt answer from them, and localhost resolves
// without any zone; kumo.dns.define_resolver adds a named resolver that
// rbl_lookup and the lookups can name.
func TestTestResolverThroughDaemon(t *testing.T) {
	dir := t.TempDir()
	policy := spooledPolicy(t, dir, `
  kumo.start_esmtp_listener { listen = '127.0.0.1:0' }
  kumo.dns.configure_test_resolver {
    [[
$ORIGIN zone.test.
@     600 MX 10 mx
mx    600 A 127.0.0.9
@     600 TXT "v=spf1 -all"
9.0.0.127.in-addr.arpa. 600 PTR mx.zone.test.
]],
  }
  local mx = kumo.dns.lookup_mx 'zone.test'
  kumo.log_info('RESULT mx=' .. table.concat(mx.hosts, ',')
    .. ' pref10=' .. table.concat(mx.by_pref[10], ',') .. ' is_mx=' .. tostring(mx.is_mx)
    .. ' addr=' .. table.concat(kumo.dns.lookup_addr 'mx.zone.test', ',')
    .. ' ptr=' .. table.concat(kumo.dns.lookup_ptr '127.0.0.9', ',')
    .. ' txt=' .. table.concat(kumo.dns.lookup_txt 'zone.test', ',')
    .. ' localhost=' .. table.concat(kumo.dns.lookup_addr 'localhost', ','))
  kumo.dns.define_resolver('rbl', {
    Test = {
      zones = {
        [[
$ORIGIN rbl.domain.
1.0.0.10 30 IN A   127.0.0.2
1.0.0.10 300   TXT "Blocked for a very good reason!"
]],
      },
    },
  })
  local listed, reason = kumo.dns.rbl_lookup('10.0.0.1:25', 'rbl.domain', 'rbl')
  local clean, none = kumo.dns.rbl_lookup('10.0.0.2', 'rbl.domain', 'rbl')
  kumo.log_info('RBL ' .. tostring(listed) .. ' ' .. tostring(reason) .. ' ' .. tostring(clean) .. ' ' .. tostring(none)
    .. ' default=' .. tostring(pcall(kumo.dns.lookup_addr, '1.0.0.10.rbl.domain'))
    .. ' named=' .. table.concat(kumo.dns.lookup_addr('1.0.0.10.rbl.domain', 'rbl'), ','))`, `
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'null') end)
`)
	d := startDaemon(t, nil, "--policy", policy)
	want := "RESULT mx=mx.zone.test. pref10=mx.zone.test. is_mx=true addr=127.0.0.9 ptr=mx.zone.test. txt=v=spf1 -all localhost=127.0.0.1,::1"
	if !strings.Contains(d.log(), want) {
		t.Fatalf("want %q in\n%s", want, d.log())
	}
	want = "RBL 127.0.0.2 Blocked for a very good reason! nil nil default=false named=127.0.0.2"
	if !strings.Contains(d.log(), want) {
		t.Fatalf("want %q in\n%s", want, d.log())
	}
	d.stop(t, syscall.SIGINT)
}
