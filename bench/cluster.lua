--[[
bench/cluster.lua: the node policy of bench/cluster.sh. A relay like
policies/route-to-sink.lua whose egress path has a shared message rate and a
shared connection limit, so that every delivered message pays one shared
throttle check and every connection one lease, through the redis-server all
nodes name.

Environment (set by bench/cluster.sh):
  KUMOGO_NODE_LISTEN    where this node accepts mail (127.0.0.1:PORT)
  KUMOGO_SINK_HOST      the counting sink (127.0.0.1:PORT)
  KUMOGO_NODE_DIR       this node's spool and log directory
  KUMOGO_REDIS          redis://127.0.0.1:PORT/ to share limits; empty: local
  KUMOGO_CLUSTER_RATE   the path's max_message_rate (default 1000000/s: never
                        reached, so it costs a check without holding mail)
  KUMOGO_CLUSTER_CONNS  the path's connection_limit, for all nodes together
                        when shared (default 64)
]]
local kumo = require 'kumo'

local listen = os.getenv 'KUMOGO_NODE_LISTEN'
local sink = os.getenv 'KUMOGO_SINK_HOST'
local dir = os.getenv 'KUMOGO_NODE_DIR'
local redis = os.getenv 'KUMOGO_REDIS' or ''
local rate = os.getenv 'KUMOGO_CLUSTER_RATE' or '1000000/s'
local conns = tonumber(os.getenv 'KUMOGO_CLUSTER_CONNS' or '64')
local ip, port = sink:match '^(%d+%.%d+%.%d+%.%d+):(%d+)$'
local SINK_QUEUE = '[' .. ip .. ']:' .. port

kumo.on('init', function()
  kumo.define_spool { name = 'data', path = dir .. '/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = dir .. '/meta', kind = 'RocksDB' }
  kumo.configure_local_logs { log_dir = dir .. '/logs', max_segment_duration = '10s' }
  if redis ~= '' then
    kumo.configure_redis_throttles { node = redis }
  end
  kumo.start_esmtp_listener { listen = listen, relay_hosts = { '127.0.0.0/8' } }
end)

kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', SINK_QUEUE)
end)

kumo.on('get_queue_config', function()
  return kumo.make_queue_config { retry_interval = '10s', max_retry_interval = '5m', max_age = '1h' }
end)

kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path {
    connection_limit = conns,
    max_message_rate = rate,
    max_deliveries_per_connection = 10000,
    enable_tls = 'Disabled',
    prohibited_hosts = {},
    idle_timeout = '10s',
  }
end)
