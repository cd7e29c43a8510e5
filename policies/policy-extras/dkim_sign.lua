-- policy-extras.dkim_sign: DKIM signing driven by data files, in the format
-- of KumoMTA's user guide ("Configuring DKIM Signing"):
--
--   [base]
--   selector = "dkim1024"               # default selector
--   headers = ["From", "To", "Subject"] # default signed headers
--   over_sign = true
--   additional_signatures = ["MyESP"]   # signature blocks added to every message
--
--   [domain."example.com"]              # matched against the From domain (wildcards too)
--   selector = 'dkim1024'
--   algo = "sha256"                     # or "ed25519"
--   filename = "/path/key.pem"          # default /opt/kumomta/etc/dkim/DOMAIN/SELECTOR.key
--
--   [signature."MyESP"]
--   domain = "myesp.com"                # the signing domain
--   policy = "Always"                   # or "OnlyIfMissingDomainBlock"
--
-- Usage (signing must come last in the event):
--
--   local dkim_signer = dkim_sign:setup { '/path/dkim_data.toml' }
--   kumo.on('smtp_server_message_received', function(msg) dkim_signer(msg) end)
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'
local kg = require 'policy-extras.kumogo'

local mod = {}
local HELPER = 'policy-extras.dkim_sign'
local DKIM_PATH = '/opt/kumomta/etc/dkim'

local COMMON = {
  selector = 'string',
  headers = 'string_list',
  expiration = 'number',
  header_canonicalization = 'string',
  body_canonicalization = 'string',
  over_sign = 'boolean',
}
local function with(extra)
  local t = utils.merge_into(COMMON, {})
  return utils.merge_into(extra, t)
end
local BASE = with {
  vault_mount = 'string',
  vault_path_prefix = 'string',
  vault_key = 'string',
  additional_signatures = 'string_list',
  policy = 'string',
}
local DOMAIN = with { policy = 'string', algo = 'string', filename = 'string' }
local SIGNATURE = with { domain = 'string', policy = 'string', algo = 'string', filename = 'string' }

local function check_block(block, spec, file, path)
  if type(block) ~= 'table' then
    kg.fail(file, path, nil, 'expected a table, got a %s', type(block))
  end
  kg.check_keys(block, spec, file, path)
  for k, want in pairs(spec) do
    kg.check_type(block, k, want, file, path)
  end
  if block.algo and block.algo ~= 'sha256' and block.algo ~= 'ed25519' then
    kg.fail(file, path, 'algo', "algo must be 'sha256' or 'ed25519', not '%s'", block.algo)
  end
end

local function load_data(files)
  local data = { base = {}, domain = {}, signature = {} }
  for _, f in ipairs(kg.read_files(files, HELPER)) do
    kg.check_keys(f.data, { base = true, domain = true, signature = true }, f.name)
    if f.data.base then
      check_block(f.data.base, BASE, f.name, { 'base' })
      if f.data.base.policy and f.data.base.policy ~= 'Always' then
        kg.fail(f.name, { 'base' }, 'policy', "policy must be 'Always', not '%s'", f.data.base.policy)
      end
      utils.merge_into(f.data.base, data.base)
    end
    for name, block in pairs(f.data.domain or {}) do
      local path = { 'domain', name }
      check_block(block, DOMAIN, f.name, path)
      if block.policy and block.policy ~= 'Always' then
        kg.fail(f.name, path, 'policy', "policy must be 'Always', not '%s'", block.policy)
      end
      data.domain[name] = utils.merge_into(block, data.domain[name] or {})
    end
    for name, block in pairs(f.data.signature or {}) do
      local path = { 'signature', name }
      check_block(block, SIGNATURE, f.name, path)
      if block.policy and block.policy ~= 'Always' and block.policy ~= 'OnlyIfMissingDomainBlock' then
        kg.fail(f.name, path, 'policy', "policy must be 'Always' or 'OnlyIfMissingDomainBlock', not '%s'", block.policy)
      end
      data.signature[name] = utils.merge_into(block, data.signature[name] or {})
    end
  end
  for _, name in ipairs(data.base.additional_signatures or {}) do
    local sig = data.signature[name]
    if not sig then
      error(string.format("%s: base.additional_signatures lists '%s', which has no [signature.'%s'] block", HELPER, name, name), 0)
    end
    if not sig.domain then
      error(string.format("%s: [signature.'%s'] has no domain", HELPER, name), 0)
    end
  end
  for name, block in pairs(data.domain) do
    if not (block.selector or data.base.selector) then
      error(string.format("%s: domain '%s' has no selector and [base] has no default selector", HELPER, name), 0)
    end
  end
  local names = {}
  for name in pairs(data.domain) do
    names[name] = name
  end
  data.domain_map = kumo.domain_map.new(names)
  return data
end

-- The signer parameters for a domain or signature block.
local function signer_params(data, block, domain)
  local base = data.base
  local function pick(k)
    if block[k] ~= nil then
      return block[k]
    end
    return base[k]
  end
  local params = {
    domain = domain,
    selector = pick 'selector',
    headers = pick 'headers',
    expiration = pick 'expiration',
    header_canonicalization = pick 'header_canonicalization',
    body_canonicalization = pick 'body_canonicalization',
    over_sign = pick 'over_sign',
  }
  if base.vault_mount then
    params.key = {
      vault_mount = base.vault_mount,
      vault_path = block.filename or string.format('%s/%s/%s', base.vault_path_prefix or 'dkim', domain, params.selector),
      vault_key = base.vault_key,
    }
  else
    params.key = block.filename or string.format('%s/%s/%s.key', DKIM_PATH, domain, params.selector)
  end
  return params
end

-- Per Lua state: signers by block, for the data they were made from.
local signers_for, signers = nil, {}

local function signer_for(data, cache_key, block, domain)
  if signers_for ~= data then
    signers_for, signers = data, {}
  end
  local signer = signers[cache_key]
  if not signer then
    local params = signer_params(data, block, domain)
    if (block.algo or 'sha256') == 'ed25519' then
      signer = kumo.dkim.ed25519_signer(params)
    else
      signer = kumo.dkim.rsa_sha256_signer(params)
    end
    signers[cache_key] = signer
  end
  return signer
end

local lower = string.lower

-- sign(msg, data, from, key) signs msg with the block key (the From
-- domain's block in data.domain, or nil) and the additional signatures.
-- The signing function, per message, is kumogo.extras_data's dkim_signer
-- (in Go): it finds the From domain and its block, rejects a message
-- without a From header (552 5.6.0) and calls sign only when there is
-- something to sign.
local function sign(msg, data, from, key)
  local signed_domain = false
  if key then
    -- wildcard blocks sign as the message's own From domain
    local domain = lower(from)
    msg:dkim_sign(signer_for(data, 'domain\1' .. domain, data.domain[key], domain))
    signed_domain = true
  end
  local extra = data.base.additional_signatures
  if extra then
    for _, name in ipairs(extra) do
      local sig = data.signature[name]
      if not (sig.policy == 'OnlyIfMissingDomainBlock' and signed_domain) then
        msg:dkim_sign(signer_for(data, 'signature\1' .. name, sig, sig.domain))
      end
    end
  end
end

-- Returns the signing function for data_files (a list of file names or
-- inline tables).
function mod:setup(data_files)
  if mod.CONFIGURED then
    error(HELPER .. ': already configured', 2)
  end
  local get_data, cell = kg.cached(HELPER, data_files, function()
    return load_data(data_files)
  end, 300)
  mod.CONFIGURED = { data_files = data_files, get_data = get_data }
  return require('kumogo.extras_data').dkim_signer(cell, sign)
end

kumo.on('validate_config', function()
  if not mod.CONFIGURED then
    return
  end
  local ok, data = pcall(load_data, mod.CONFIGURED.data_files)
  if not ok then
    kg.report(HELPER, data)
    return
  end
  -- Make every signer once: this reads (and checks) every key.
  -- (A wildcard block without a filename signs with each domain's own
  -- key file, which cannot be checked here.)
  for _, name in ipairs(utils.table_keys(data.domain)) do
    local block = data.domain[name]
    if not (name:find('*', 1, true) and not block.filename) then
      local sok, err = pcall(signer_for, data, 'domain\1' .. name, block, name)
      if not sok then
        kg.report(HELPER, string.format("domain '%s': %s", name, tostring(err)))
      end
    end
  end
  for _, name in ipairs(utils.table_keys(data.signature)) do
    local sig = data.signature[name]
    local sok, err = pcall(signer_for, data, 'signature\1' .. name, sig, sig.domain)
    if not sok then
      kg.report(HELPER, string.format("signature '%s': %s", name, tostring(err)))
    end
    if not utils.table_contains(data.base.additional_signatures, name) then
      kumo.log_warn(string.format("%s: [signature.'%s'] is not listed in base.additional_signatures and is never used", HELPER, name))
    end
  end
end)

return mod
