--[[
bench/mailauth.lua: the sink of bench/mailauth.sh. Like sink.lua it takes
every message from loopback and discards it (queue "null"); with
BENCH_MAIL_AUTH=1 it first runs policy-extras.mail_auth's check (DKIM
verify, SPF, iprev, DMARC, ARC, an Authentication-Results header) and
refuses any message whose DKIM, SPF, iprev or DMARC result is not pass, so
that a broken set-up shows as failed messages instead of a cheap shortcut.

Environment: BENCH_LISTEN (127.0.0.1:PORT), BENCH_DIR (spool folders, never
written), BENCH_ZONE (a zone file answered by kumo.dns.configure_test_resolver,
through kumogo's resolver and its cache), BENCH_MAIL_AUTH (1 or 0).
]]
local kumo = require 'kumo'
local mail_auth = require 'policy-extras.mail_auth'

local auth = os.getenv 'BENCH_MAIL_AUTH' == '1'

kumo.on('init', function()
  local dir = (assert(os.getenv 'BENCH_DIR', 'BENCH_DIR is not set'))
  kumo.define_spool { name = 'data', path = dir .. '/data' }
  kumo.define_spool { name = 'meta', path = dir .. '/meta' }
  local f = assert(io.open((assert(os.getenv 'BENCH_ZONE', 'BENCH_ZONE is not set'))))
  kumo.dns.configure_test_resolver { f:read '*a' }
  f:close()
  kumo.start_esmtp_listener {
    listen = (assert(os.getenv 'BENCH_LISTEN', 'BENCH_LISTEN is not set')),
    hostname = 'mx.auth.example',
    relay_hosts = { '127.0.0.1' },
  }
end)

local function first(list)
  return list and list[1] and list[1].result
end

kumo.on('smtp_server_message_received', function(msg)
  if auth then
    local r = mail_auth.check(msg)
    local dkim, spf, iprev, dmarc = first(r.dkim), r.spf.result, r.iprev.result, r.dmarc.result
    if dkim ~= 'pass' or spf ~= 'pass' or iprev ~= 'pass' or dmarc ~= 'pass' then
      kumo.reject(
        550,
        string.format('5.7.1 bench: dkim=%s spf=%s iprev=%s dmarc=%s', dkim, spf, iprev, dmarc)
      )
    end
  end
  msg:set_meta('queue', 'null')
end)
