--[[
kumogo bundled policy: sink.lua

An SMTP sink. It accepts every message for any recipient from any client
and throws it away (queue "null"): each message gets "250 OK ids=..." and,
when logging is enabled, a Reception log record; nothing is stored.

Use it as the far end of a load test or of a relay:

    kumogo --policy sink.lua

Environment variables (all optional):
  KUMOGO_SINK_LISTEN   address to listen on            (default 0.0.0.0:2026)
  KUMOGO_SINK_DIR      directory for the spool folders (default $TMPDIR/kumogo-sink;
                       the sink never writes messages there, but a policy
                       must define its spools)
  KUMOGO_SINK_LOG_DIR  write zstd JSON log records here (default: no logs)
  KUMOGO_SINK_HOSTNAME host name used in the banner and replies
                       (default: the machine's host name)
  KUMOGO_SINK_HTTP     also accept injections (POST /api/inject/v1) on this
                       HTTP address, e.g. 127.0.0.1:8000 (default: no HTTP)

Nothing here needs root or any directory set-up.
]]
local kumo = require 'kumo'

local listen = os.getenv 'KUMOGO_SINK_LISTEN' or '0.0.0.0:2026'
local tmp = os.getenv 'TMPDIR' or '/tmp'
local spool_dir = os.getenv 'KUMOGO_SINK_DIR' or (tmp .. '/kumogo-sink')
local log_dir = os.getenv 'KUMOGO_SINK_LOG_DIR'

kumo.on('init', function()
  kumo.define_spool { name = 'data', path = spool_dir .. '/data' }
  kumo.define_spool { name = 'meta', path = spool_dir .. '/meta' }

  if log_dir and log_dir ~= '' then
    kumo.configure_local_logs {
      log_dir = log_dir,
      max_segment_duration = '1s',
    }
  end

  kumo.start_esmtp_listener {
    listen = listen,
    hostname = os.getenv 'KUMOGO_SINK_HOSTNAME',
    -- an open relay: this is a sink, it delivers nowhere
    relay_hosts = { '0.0.0.0/0', '::/0' },
  }

  local http = os.getenv 'KUMOGO_SINK_HTTP'
  if http and http ~= '' then
    kumo.start_http_listener {
      listen = http,
      hostname = os.getenv 'KUMOGO_SINK_HOSTNAME',
    }
  end
end)

-- Every received message goes to the "null" queue: accepted, then discarded.
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', 'null')
end)

kumo.on('http_message_generated', function(msg)
  msg:set_meta('queue', 'null')
end)
