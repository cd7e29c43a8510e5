-- policy-extras.mail_auth: authentication checks of received mail,
-- collected into one result (KumoMTA's policy-extras.mail_auth pages:
-- check, iprev, iprev_msg). Written for kumogo from that documented
-- interface; no code is shared with KumoMTA. The checks run in the
-- built-in kumogo.mail_auth module (runtime/mailauthcheck.go), with the
-- results of kumogo's kumo.spf, kumo.dmarc and msg:* methods.
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

-- iprev(IP [, RESOLVER]): the iprev authentication result of IP.
function mod.iprev(ip, opt_resolver)
  return builtin.iprev(ip, opt_resolver)
end

-- iprev_msg(MSG [, RESOLVER]): iprev of the address the message came from.
function mod.iprev_msg(msg, opt_resolver)
  return builtin.iprev_msg(msg, opt_resolver)
end

-- check(MSG [, CONFIG]): run the enabled checks and return their results
-- (dkim, spf, iprev, smtp_auth, dmarc, arc, auth_results), adding an
-- Authentication-Results header unless add_auth_results_header is false.
function mod.check(msg, config)
  local opts = options(config)
  return builtin.check(msg, opts, opts.resolver)
end

return mod
