package runtime

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"
)

// processCPU is the user plus system CPU time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchExtrasPolicy is a policy built on every bundled helper that, per
// message, runs the queue helper and the DKIM helper (for a From domain
// without a signing block, so that the figure is the helpers' cost, not
// RSA's) and then discards the message as sink.lua does.
const benchExtrasPolicy = `
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
kumo.on('get_listener_domain', listener_domains:setup { DIR .. '/listener_domains.toml' })
kumo.on('get_egress_path_config', shaper.get_egress_path_config)
kumo.on('smtp_server_message_received', function(msg)
  queue_helper:apply(msg)
  dkim_signer(msg)
  msg:set_meta('queue', 'null')
end)
`

const benchData = "From: news@unsigned.example\r\nTo: a@example.com\r\nX-Tenant: mytenant\r\nX-Campaign: welcome\r\nSubject: hello\r\n\r\nbody\r\n"

// BenchmarkMessageReceivedExtras is BenchmarkMessageReceived (sink.lua's
// one event) with the policy-extras helpers in the handler. The tenant
// header stays in the message (remove_tenant_header is off), so every
// iteration does the same work.
func BenchmarkMessageReceivedExtras(b *testing.B) {
	files := map[string]string{}
	for k, v := range extrasFiles {
		files[k] = v
	}
	files["queues.toml"] = strings.Replace(files["queues.toml"], "remove_tenant_header = true", "", 1)
	dir := extrasDir(b, files)
	r := newRuntime(b, strings.ReplaceAll(benchExtrasPolicy, "$DIR", dir), withExtras(&fakeDNS{}))
	for _, tc := range []struct {
		name string
		r    *Runtime
		data string
	}{{"sink", benchRuntime(b), testData}, {"policy-extras", r, benchData}} {
		b.Run(tc.name, func(b *testing.B) {
			msg := testMessage(b, tc.data, "a@example.com")
			cm := newTestConn()
			ctx := context.Background()
			if err := tc.r.MessageReceived(ctx, msg, cm); err != nil {
				b.Fatal(err)
			}
			if tc.name != "sink" {
				if v, _ := msg.Meta("tenant"); v != "mytenant" {
					b.Fatalf("tenant %v", v)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			for i := 0; i < b.N; i++ {
				if err := tc.r.MessageReceived(ctx, msg, cm); err != nil {
					b.Fatal(err)
				}
			}
			// CPU time used by the process per message: on a shared
			// machine it moves far less than the wall time.
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
