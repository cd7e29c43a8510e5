--[[
kumogo bundled policy: route-to-sink.lua

A relay that sends every message it accepts to one sink host. Start a sink
and the relay on the same machine and they talk to each other out of the box:

    kumogo --policy sink.lua            # receives on 0.0.0.0:2026
    kumogo --policy route-to-sink.lua   # accepts on 127.0.0.1:2025, relays to 127.0.0.1:2026

This file is meant to be copied as the start of your own policy: each block
below is commented with what it does and what you would change.

Environment variables (all optional):
  KUMOGO_RELAY_LISTEN   where to accept mail               (default 127.0.0.1:2025)
  KUMOGO_SINK_HOST      where to send it                   (default 127.0.0.1:2026)
                        a bare IP (with optional :port) is used as an [ip] literal;
                        a host name is resolved by MX, then A/AAAA
  KUMOGO_RELAY_DIR      spool and log directory            (default $TMPDIR/kumogo-relay)
  KUMOGO_RELAY_HOSTNAME host name in the banner and EHLO   (default: the machine's host name)
  KUMOGO_RELAY_NOLOG    set to 1 to write no log records
  KUMOGO_RELAY_SPOOL    spool kind: RocksDB or LocalDisk   (default RocksDB)
  KUMOGO_RELAY_HTTP     also accept injections (POST /api/inject/v1) on this
                        HTTP address, e.g. 127.0.0.1:8000  (default: no HTTP)
]]
local kumo = require 'kumo'

local listen = os.getenv 'KUMOGO_RELAY_LISTEN' or '127.0.0.1:2025'
local sink = os.getenv 'KUMOGO_SINK_HOST' or '127.0.0.1:2026'
local tmp = os.getenv 'TMPDIR' or '/tmp'
local dir = os.getenv 'KUMOGO_RELAY_DIR' or (tmp .. '/kumogo-relay')
local spool_kind = os.getenv 'KUMOGO_RELAY_SPOOL' or 'RocksDB'

-- "1.2.3.4" or "1.2.3.4:2026" → "[1.2.3.4]:2026": an address literal needs
-- no DNS. Anything else is a host name, optionally with a port.
local function sink_queue(host)
  local ip, port = host:match '^(%d+%.%d+%.%d+%.%d+):?(%d*)$'
  if ip then
    if port ~= '' then
      return '[' .. ip .. ']:' .. port
    end
    return '[' .. ip .. ']'
  end
  return host
end
local SINK_QUEUE = sink_queue(sink)

kumo.on('init', function()
  -- Durable spool: a message is on disk (fsynced) before the client gets its
  -- 250. RocksDB (served by an embedded LSM store with a write-ahead log)
  -- groups the fsyncs of concurrent sessions; 'LocalDisk' (a file per
  -- message) is simpler to inspect but creates a file and a directory per
  -- message, which costs far more at high volume.
  kumo.define_spool { name = 'data', path = dir .. '/data', kind = spool_kind }
  kumo.define_spool { name = 'meta', path = dir .. '/meta', kind = spool_kind }

  if os.getenv 'KUMOGO_RELAY_NOLOG' ~= '1' then
    kumo.configure_local_logs {
      log_dir = dir .. '/logs',
      max_segment_duration = '10s',
    }
  end

  kumo.start_esmtp_listener {
    listen = listen,
    hostname = os.getenv 'KUMOGO_RELAY_HOSTNAME',
    -- who may relay through us: change this for a real deployment
    relay_hosts = { '127.0.0.0/8', '::1' },
  }

  -- HTTP injection (trusted_hosts defaults to loopback)
  local http = os.getenv 'KUMOGO_RELAY_HTTP'
  if http and http ~= '' then
    kumo.start_http_listener {
      listen = http,
      hostname = os.getenv 'KUMOGO_RELAY_HOSTNAME',
    }
  end
end)

-- Every message goes to one scheduled queue named after the sink.
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', SINK_QUEUE)
end)

kumo.on('http_message_generated', function(msg)
  msg:set_meta('queue', SINK_QUEUE)
end)

-- Retry quickly: a sink on the same machine is either there or restarting.
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    retry_interval = '10s',
    max_retry_interval = '5m',
    max_age = '1h',
  }
end)

-- Shaped for volume: many connections, many messages per connection, and
-- loopback allowed (KumoMTA prohibits loopback destinations by default).
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {
    connection_limit = 64,
    max_deliveries_per_connection = 10000,
    enable_tls = 'Disabled',
    prohibited_hosts = {},
    idle_timeout = '10s',
  }
end)
