--[[
bench/scrape-relay.lua: the relay of bench/relay.sh (route-to-sink.lua's
settings: RocksDB spools synced before the 250, log records, every SMTP
message relayed to one sink) plus an HTTP listener for /metrics and
injection, used by bench/scrape.sh.

Messages injected over HTTP to recipients in a domain under hold.test (the
filler: one queue per domain) are held: each goes to the scheduled queue
named after its domain with a first attempt a day away, so the queues stay
present, and are neither routed (no DNS) nor delivered during a run.

Environment: KUMOGO_RELAY_LISTEN, KUMOGO_SINK_HOST, KUMOGO_RELAY_DIR as for
route-to-sink.lua; KUMOGO_RELAY_HTTP, the HTTP listener's address.
]]
local kumo = require 'kumo'

local listen = os.getenv 'KUMOGO_RELAY_LISTEN' or '127.0.0.1:2025'
local sink = os.getenv 'KUMOGO_SINK_HOST' or '127.0.0.1:2026'
local dir = os.getenv 'KUMOGO_RELAY_DIR' or ((os.getenv 'TMPDIR' or '/tmp') .. '/kumogo-scrape')
local http = os.getenv 'KUMOGO_RELAY_HTTP' or '127.0.0.1:8000'

local ip, port = sink:match '^(%d+%.%d+%.%d+%.%d+):?(%d*)$'
local SINK_QUEUE = '[' .. ip .. ']' .. (port ~= '' and (':' .. port) or '')

kumo.on('init', function()
  kumo.define_spool { name = 'data', path = dir .. '/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = dir .. '/meta', kind = 'RocksDB' }
  kumo.configure_local_logs { log_dir = dir .. '/logs', max_segment_duration = '10s' }
  kumo.start_esmtp_listener { listen = listen, relay_hosts = { '127.0.0.0/8' } }
  kumo.start_http_listener { listen = http }
end)

kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', SINK_QUEUE)
end)

kumo.on('http_message_generated', function(msg)
  local domain = msg:recipient().domain
  if domain:match '%.hold%.test$' then
    msg:set_meta('queue', domain)
    msg:set_scheduling { first_attempt = os.date('!%Y-%m-%dT%H:%M:%SZ', os.time() + 86400) }
    return
  end
  msg:set_meta('queue', SINK_QUEUE)
end)

kumo.on('get_queue_config', function()
  return kumo.make_queue_config { retry_interval = '10s', max_retry_interval = '5m', max_age = '2d' }
end)

kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path {
    connection_limit = 64,
    max_deliveries_per_connection = 10000,
    enable_tls = 'Disabled',
    prohibited_hosts = {},
    idle_timeout = '10s',
  }
end)
