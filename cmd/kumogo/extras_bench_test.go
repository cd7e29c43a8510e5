package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// extrasBenchPolicy is sink.lua's work plus the bundled helpers: listener
// domains, sources, shaping, the queue helper (a tenant from a header, a
// campaign, a routing_domain lookup) and the DKIM helper for a From
// domain without a signing block (the cost of the helpers, not of RSA);
// then the message is discarded as sink.lua does.
const extrasBenchPolicy = `
local kumo = require 'kumo'
local listener_domains = require 'policy-extras.listener_domains'
local sources = require 'policy-extras.sources'
local shaping = require 'policy-extras.shaping'
local dkim_sign = require 'policy-extras.dkim_sign'
local queue_module = require 'policy-extras.queue'
local DIR = '$DIR'
sources:setup { DIR .. '/sources.toml' }
local dkim_signer = dkim_sign:setup { DIR .. '/dkim_data.toml' }
local shaper = shaping:setup_with_automation { extra_files = { DIR .. '/shaping.toml' } }
local queue_helper = queue_module:setup { DIR .. '/queues.toml' }
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = DIR .. '/data' }
  kumo.define_spool { name = 'meta', path = DIR .. '/meta' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'bench.test' }
end)
kumo.on('get_listener_domain', listener_domains:setup { DIR .. '/listener_domains.toml' })
kumo.on('get_egress_path_config', shaper.get_egress_path_config)
kumo.on('smtp_server_message_received', function(msg)
  queue_helper:apply(msg)
  dkim_signer(msg)
  msg:set_meta('queue', 'null')
end)
`

var extrasBenchFiles = map[string]string{
	"listener_domains.toml": "[\"bench.example\"]\nrelay_to = true\n",
	"sources.toml":          "[source.\"ip-1\"]\nsource_address = \"127.0.0.2\"\n[pool.\"pool-1\".\"ip-1\"]\n",
	"shaping.toml":          "[\"default\"]\nprohibited_hosts = []\n",
	"queues.toml": `
tenant_header = "X-Tenant"
campaign_header = "X-Campaign"
default_tenant = "default-tenant"
[tenant.'default-tenant']
egress_pool = 'pool-1'
[queue.default]
max_age = '1 day'
[queue.'*.internal.example']
routing_domain = '[10.0.0.1]'
`,
	"dkim_data.toml": "[base]\nselector = \"s\"\nheaders = [\"From\"]\n[domain.\"signed.example\"]\nfilename = \"/nonexistent.key\"\n",
}

func startInProcessExtras(tb testing.TB) string {
	dir := tb.TempDir()
	for name, src := range extrasBenchFiles {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	p := filepath.Join(dir, "policy.lua")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(extrasBenchPolicy, "$DIR", dir)), 0o644); err != nil {
		tb.Fatal(err)
	}
	return startInProcessPolicy(tb, p, nil)
}

// BenchmarkSinkPolicyExtras100KB is BenchmarkSink100KB/kumogo-sink.lua
// with a policy built on the bundled helpers, side by side with sink.lua
// in one run.
func BenchmarkSinkPolicyExtras100KB(b *testing.B) {
	for _, mode := range []string{"DATA", "BDAT"} {
		b.Run("kumogo-sink.lua/"+mode, func(b *testing.B) {
			runLoad(b, startInProcessSink(b, false), 50, mode == "BDAT")
		})
		b.Run("kumogo-policy-extras/"+mode, func(b *testing.B) {
			runLoad(b, startInProcessExtras(b), 50, mode == "BDAT")
		})
	}
}

// TestExtrasBenchPolicy: the benchmark policy loads and accepts messages
// by DATA and BDAT through the helpers.
func TestExtrasBenchPolicy(t *testing.T) {
	addr := startInProcessExtras(t)
	lc, err := dialLoad(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer lc.c.Close()
	if err := lc.send(benchBody(1024), false); err != nil {
		t.Fatal(err)
	}
	if err := lc.send(benchBody(1024), true); err != nil {
		t.Fatal(err)
	}
}
