package runtime

import (
	"context"
	"testing"
)

// configEventPolicy has bench/manydest.lua's get_queue_config and
// get_egress_path_config handlers: the two events every new destination
// costs.
const configEventPolicy = `
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    retry_interval = '10s',
    max_retry_interval = '5m',
    max_age = '1h',
    reap_interval = os.getenv 'MANYDEST_REAP' or '5s',
  }
end)

kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {
    smtp_port = tonumber(os.getenv 'MANYDEST_SINK_PORT' or '2025'),
    connection_limit = 64,
    max_deliveries_per_connection = 10000,
    enable_tls = 'Disabled',
    prohibited_hosts = {},
    idle_timeout = '10s',
  }
end)
`

// BenchmarkConfigEvents runs both events, on the benchmark's goroutine
// (same) and, as the daemon does for a new queue, on a new goroutine each
// time (fresh), whose stack must grow to gopher-lua's depth.
func BenchmarkConfigEvents(b *testing.B) {
	r := newRuntime(b, configEventPolicy)
	ctx := context.Background()
	run := func() {
		if _, err := r.GetQueueConfig(ctx, "d1.bench.test", nil, nil, nil); err != nil {
			b.Fatal(err)
		}
		if _, err := r.GetEgressPathConfig(ctx, "d1.bench.test", "unspecified", "(mx.d1.bench.test)"); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("same", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			run()
		}
	})
	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		done := make(chan struct{})
		for b.Loop() {
			go func() { run(); done <- struct{}{} }()
			<-done
		}
	})
}
