--[[
bench/manydest.lua: the relay of bench/manydest.sh. Every message goes to
the queue of its recipient's domain (KumoMTA's default queue naming), each
domain's MX is looked up through bench/fakedns, and delivery goes to the
sink's port on the address the MX resolves to. The spool, logs and egress
path are route-to-sink.lua's, so the one-destination run of the same script
is comparable with bench/relay.sh.

Environment: MANYDEST_DIR (spool and logs), MANYDEST_DNS (fakedns ip:port),
MANYDEST_LISTEN (SMTP), MANYDEST_HTTP (metrics), MANYDEST_SINK_PORT,
MANYDEST_REAP (reap_interval).
]]
local kumo = require 'kumo'

local dir = os.getenv 'MANYDEST_DIR'

kumo.on('init', function()
  kumo.dns.configure_resolver { name_servers = { os.getenv 'MANYDEST_DNS' } }
  kumo.define_spool { name = 'data', path = dir .. '/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = dir .. '/meta', kind = 'RocksDB' }
  kumo.configure_local_logs { log_dir = dir .. '/logs', max_segment_duration = '10s' }
  kumo.start_esmtp_listener {
    listen = os.getenv 'MANYDEST_LISTEN',
    hostname = 'manydest.bench',
    relay_hosts = { '127.0.0.0/8' },
  }
  kumo.start_http_listener { listen = os.getenv 'MANYDEST_HTTP', hostname = 'manydest.bench' }
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    retry_interval = '10s',
    max_retry_interval = '5m',
    max_age = '1h',
    reap_interval = os.getenv 'MANYDEST_REAP',
  }
end)

kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {
    smtp_port = tonumber(os.getenv 'MANYDEST_SINK_PORT'),
    connection_limit = 64,
    max_deliveries_per_connection = 10000,
    enable_tls = 'Disabled',
    prohibited_hosts = {},
    idle_timeout = '10s',
  }
end)
