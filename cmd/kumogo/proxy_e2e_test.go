package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/testutil"
)

// TestEgressThroughProxies: egress sources with KumoMTA's proxy options,
// through the real binary. Mail for ha.test goes through a real haproxy
// (ha_proxy_server, ha_proxy_source_address 127.0.0.2), mail for
// socks.test through a SOCKS5 proxy with credentials named by host name
// (socks5_proxy_server resolved through kumo.dns.configure_test_resolver,
// socks5_proxy_source_address 127.0.0.3,
// socks5_proxy_username, socks5_proxy_password from a file); the sink sees
// each source address, and the Delivery records name the proxy. Mail for
// dead.test names a proxy that is not listening: a TransientFailure naming
// it, and the daemon carries on.
func TestEgressThroughProxies(t *testing.T) {
	h := testutil.StartHAProxy(t)
	socks := testutil.StartSOCKS5(t, map[string]string{"kumo": "pass word"})
	_, socksPort, _ := net.SplitHostPort(socks.Addr)
	deadAddr := unusedAddr(t)

	sink := startCountSink(t, nil)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "socks-password")
	if err := os.WriteFile(pwFile, []byte("pass word"), 0o600); err != nil {
		t.Fatal(err)
	}
	policy := spooledPolicy(t, dir, `
  kumo.configure_local_logs { log_dir = '`+dir+`/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'relay.test', relay_hosts = { '127.0.0.1' } }
  kumo.dns.configure_test_resolver { [[
$ORIGIN proxy.test.
socks 600 A 127.0.0.1
]] }
`, sourcesPolicy(sink.addr, `{
  ['ha.test'] = { ha_proxy_server = '`+h.Addr+`', ha_proxy_source_address = '127.0.0.2', ehlo_domain = 'ha.test' },
  ['socks.test'] = { socks5_proxy_server = 'socks.proxy.test:`+socksPort+`', socks5_proxy_source_address = '127.0.0.3',
    socks5_proxy_username = 'kumo', socks5_proxy_password = '`+pwFile+`', ehlo_domain = 'socks.test' },
  ['dead.test'] = { socks5_proxy_server = '`+deadAddr+`', socks5_proxy_source_address = '127.0.0.2' },
}`, "{}"))
	d := startDaemon(t, nil, "--policy", policy)
	sendBatch(t, d.addr, "ha.test", 3)
	sendBatch(t, d.addr, "socks.test", 3)
	sendBatch(t, d.addr, "dead.test", 1)
	for domain, want := range map[string]string{"ha.test": "127.0.0.2", "socks.test": "127.0.0.3"} {
		for _, r := range waitCount(t, sink, domain, 3, 15*time.Second) {
			if r.peerIP != want || r.ehlo != domain {
				t.Errorf("%s: the sink saw %s as %s, want %s", domain, r.peerIP, r.ehlo, want)
			}
		}
	}
	if b := socks.Binds(); len(b) == 0 || b[0] != "127.0.0.3" {
		t.Errorf("SOCKS5 BIND requests %q", b)
	}

	var recs []logrecord.Record
	deadline := time.Now().Add(15 * time.Second)
	for {
		recs, _ = logrecord.ReadDir(filepath.Join(dir, "logs"))
		if c := countTypes(recs); c["Delivery"] >= 6 && c["TransientFailure"] >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.stop(t, syscall.SIGTERM)
	recs, err := logrecord.ReadDir(filepath.Join(dir, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]logrecord.SourceAddress{
		"ha.test":    {Address: "127.0.0.2:0", Server: h.Addr, Protocol: "haproxy"},
		"socks.test": {Protocol: "socks5", Server: socks.Addr},
	}
	deliveries, failures := 0, 0
	for _, r := range recs {
		switch r.Type {
		case logrecord.Delivery:
			deliveries++
			w := want[r.Queue]
			sa := r.SourceAddress
			if sa == nil || sa.Server != w.Server || sa.Protocol != w.Protocol {
				t.Errorf("%s Delivery source_address %+v, want server %s protocol %s", r.Queue, sa, w.Server, w.Protocol)
				continue
			}
			if w.Address != "" && sa.Address != w.Address {
				t.Errorf("%s: source_address.address %q, want %q", r.Queue, sa.Address, w.Address)
			}
			if r.Queue == "socks.test" && !strings.HasPrefix(sa.Address, "127.0.0.3:") {
				t.Errorf("socks.test: source_address.address %q", sa.Address)
			}
		case logrecord.TransientFailure:
			failures++
			t.Logf("dead proxy: %s", r.Response.String())
			if r.Queue != "dead.test" || r.Response.Code != 400 ||
				!strings.Contains(r.Response.Content, "via socks5 proxy "+deadAddr) ||
				!strings.Contains(r.Response.Content, "connection refused") {
				t.Errorf("TransientFailure %s: %s", r.Queue, r.Response.String())
			}
		}
	}
	if deliveries != 6 || failures != 1 {
		t.Errorf("%d deliveries and %d transient failures, want 6 and 1\n%s", deliveries, failures, tail(d.log(), 20))
	}
}

// unusedAddr is an address where nothing listens: a port on an address
// nothing else here binds (everything else is on 127.0.0.1), so that it
// stays free once closed.
func unusedAddr(t *testing.T) string {
	t.Helper()
	dead, err := net.Listen("tcp", "127.0.0.7:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	return dead.Addr().String()
}

// sourcesPolicy is the part of a policy that queues each message by its
// recipient's domain and sends it to sinkAddr through the egress pool
// named after the domain. sources is a Lua table of make_egress_source
// options by source name; pools a Lua table of pool entries by pool name
// (a pool not listed has the one source named after it).
func sourcesPolicy(sinkAddr, sources, pools string) string {
	return `
local SOURCES = ` + sources + `
local POOLS = ` + pools + `
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', msg:recipient().domain)
end)
kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config { protocol = { smtp = { mx_list = { '` + sinkAddr + `' } } },
    retry_interval = '1 hour', egress_pool = domain }
end)
kumo.on('get_egress_pool', function(name)
  return kumo.make_egress_pool { name = name, entries = POOLS[name] or { { name = name } } }
end)
kumo.on('get_egress_source', function(name)
  local s = { name = name }
  for k, v in pairs(SOURCES[name]) do s[k] = v end
  return kumo.make_egress_source(s)
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { enable_tls = 'Disabled', prohibited_hosts = {} }
end)
`
}
