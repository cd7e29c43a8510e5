-- policy-extras.mail_auth: authentication checks of received mail,
-- collected into one result (KumoMTA's policy-extras.mail_auth pages:
-- check, iprev, iprev_msg). Written for kumogo from that documented
-- interface; no code is shared with KumoMTA. The checks themselves are
-- kumogo's kumo.spf, kumo.dmarc and msg:* methods; iprev comes from the
-- built-in kumogo.mail_auth module.
local kumo = require 'kumo'
local builtin = require 'kumogo.mail_auth'

local mod = {}

-- check options and their defaults
local DEFAULTS = {
  dkim = true,
  spf = true,
  iprev = true,
  smtp_auth = true,
  dmarc = true,
  arc = true,
  add_auth_results_header = true,
}
local STRINGS = { server_id = true, resolver = true }

local function options(config)
  local out = {}
  for k, v in pairs(DEFAULTS) do
    out[k] = v
  end
  if config == nil then
    return out
  end
  if type(config) ~= 'table' then
    error('mail_auth.check: the configuration must be a table, not ' .. type(config), 3)
  end
  for k, v in pairs(config) do
    if DEFAULTS[k] ~= nil then
      if type(v) ~= 'boolean' then
        error(string.format('mail_auth.check: `%s` must be a boolean, not %s', tostring(k), type(v)), 3)
      end
    elseif STRINGS[k] then
      if type(v) ~= 'string' then
        error(string.format('mail_auth.check: `%s` must be a string, not %s', tostring(k), type(v)), 3)
      end
    else
      error(string.format('mail_auth.check: unknown option `%s`', tostring(k)), 3)
    end
    out[k] = v
  end
  return out
end

-- "ip:port", "[ip]:port" or "ip" → "ip"
local function ip_of(addr)
  local v6 = addr:match '^%[([^%]]+)%]'
  if v6 then
    return v6
  end
  local v4 = addr:match '^(%d+%.%d+%.%d+%.%d+):%d+$'
  return v4 or addr
end

-- iprev(IP [, RESOLVER]): the iprev authentication result of IP.
function mod.iprev(ip, opt_resolver)
  return builtin.iprev(ip, opt_resolver)
end

-- iprev_msg(MSG [, RESOLVER]): iprev of the address the message came from.
function mod.iprev_msg(msg, opt_resolver)
  local from = msg:get_meta 'received_from'
  if from == nil then
    error('mail_auth.iprev_msg: received_from missing from metadata', 2)
  end
  return builtin.iprev(ip_of(from), opt_resolver)
end

-- check(MSG [, CONFIG]): run the enabled checks and return their results
-- (dkim, spf, iprev, smtp_auth, dmarc, arc, auth_results), adding an
-- Authentication-Results header unless add_auth_results_header is false.
function mod.check(msg, config)
  local opts = options(config)
  local result = { auth_results = {} }
  local all = result.auth_results

  if opts.dkim then
    local dkim = msg:dkim_verify(opts.resolver)
    if #dkim == 0 then
      dkim = { { method = 'dkim', result = 'none', reason = 'message was not signed', props = {} } }
    end
    result.dkim = dkim
    for _, r in ipairs(dkim) do
      table.insert(all, r)
    end
  end

  if opts.spf then
    result.spf = kumo.spf.check_msg(msg, opts.resolver).result
    table.insert(all, result.spf)
  end

  if opts.iprev then
    result.iprev = mod.iprev_msg(msg, opts.resolver)
    table.insert(all, result.iprev)
  end

  if opts.smtp_auth then
    local auth = {
      method = 'auth',
      result = 'none',
      props = { ['smtp.mailfrom'] = tostring(msg:sender()) },
    }
    local id = msg:get_meta 'authn_id'
    if id ~= nil and id ~= '' then
      auth.result = 'pass'
      auth.props['smtp.auth'] = tostring(id)
    end
    result.smtp_auth = auth
    table.insert(all, auth)
  end

  -- DMARC needs the DKIM and SPF results
  if opts.dmarc and opts.dkim and opts.spf then
    result.dmarc = kumo.dmarc.check_msg(msg, result.dkim, opts.resolver, result.spf, false).result
    table.insert(all, result.dmarc)
  end

  if opts.arc then
    result.arc = msg:arc_verify(opts.resolver)
    table.insert(all, result.arc)
  end

  if opts.add_auth_results_header then
    local server_id = opts.server_id or msg:get_meta 'hostname' or 'localhost'
    msg:add_authentication_results(server_id, all)
  end
  return result
end

return mod
