-- policy-extras.queue: tenants, campaigns and scheduled-queue settings
-- from data files, in the format of KumoMTA's user guide ("Configuring
-- Queue Management"):
--
--   scheduling_header = "X-Schedule"
--   tenant_header = "X-Tenant"          remove_tenant_header = true
--   campaign_header = "X-Campaign"      remove_campaign_header = true
--   default_tenant = "default-tenant"
--
--   [tenant.'mytenant']                 # queue options, egress_pool, ...
--   egress_pool = 'pool-2'
--   require_authz = ["user"]            # SMTP AUTH identities allowed
--   overall_max_message_rate = '100/s'  # across all of its queues
--
--   [queue.default]                     # every domain
--   [queue.'gmail.com']                 # a destination domain (wildcards too)
--   routing_domain = '[10.0.0.1]'       # sets the message's routing_domain
--   [queue.'gmail.com'.'mytenant']      # that domain and tenant
--   [queue.'gmail.com'.'mytenant'.'welcome-campaign']
--
-- Queue options are resolved in the order default, domain, tenant,
-- domain+tenant, domain+tenant+campaign, each overriding the one before.
-- A key that is not a kumo.make_queue_config option is a tenant (in a
-- domain block) or a campaign (in a domain+tenant block) when its value is
-- a table, and an error otherwise. Usage:
--
--   local queue_helper = queue_module:setup { '/path/queues.toml' }
--   kumo.on('smtp_server_message_received', function(msg) queue_helper:apply(msg) end)
local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'
local kg = require 'policy-extras.kumogo'
local shared = require 'kumogo.extras_data'

local mod = {}
local HELPER = 'policy-extras.queue'

-- Is name = value a kumo.make_queue_config option? Returns true, or
-- false and an error when it is an option with a bad value, or false.
local function is_queue_config_option(name, value)
  local ok, err = pcall(kumo.make_queue_config, { [name] = value })
  if ok then
    return true
  end
  if tostring(err):find 'invalid type' or tostring(err):find 'invalid value' then
    return false, err
  end
  return false
end
mod.is_queue_config_option = is_queue_config_option

local TOP = {
  scheduling_header = 'string',
  tenant_header = 'string',
  remove_tenant_header = 'boolean',
  campaign_header = 'string',
  remove_campaign_header = 'boolean',
  default_tenant = 'string',
  tenant = 'table',
  queue = 'table',
}

-- Keys (besides queue options) of each kind of block, with their types.
local TENANT_KEYS = {
  require_authz = 'string_list',
  overall_max_message_rate = 'string',
  campaigns = 'table',
}
local SCOPE_KEYS = {
  routing_domain = 'string',
  overall_max_message_rate = 'string',
}

-- Splits a block into options (queue options), extras (the known helper
-- keys) and children (tables that are not options; nil when a block
-- cannot have any).
local function parse_block(block, extra_keys, file, path, child_kind)
  if type(block) ~= 'table' then
    kg.fail(file, path, nil, 'expected a table, got a %s', type(block))
  end
  local options, extras, children = {}, {}, {}
  for k, v in pairs(block) do
    if extra_keys[k] then
      kg.check_type(block, k, extra_keys[k], file, path)
      extras[k] = v
    else
      local ok, err = is_queue_config_option(k, v)
      if ok then
        options[k] = v
      elseif err then
        kg.fail(file, path, k, "bad value for '%s': %s", k, tostring(err))
      elseif child_kind and type(v) == 'table' then
        children[k] = v
      else
        kg.fail(
          file,
          path,
          k,
          "unknown key '%s' (not a kumo.make_queue_config option%s)",
          k,
          child_kind and (', and not a ' .. child_kind .. ' table') or ''
        )
      end
    end
  end
  return options, extras, children
end

local function overlay(dst, src)
  utils.merge_into(src, dst)
  return dst
end

local function load_data(files)
  local data = { top = {}, tenants = {}, queues = {} }
  for _, f in ipairs(kg.read_files(files, HELPER)) do
    local d = f.data
    if d.queues ~= nil or d.tenants ~= nil then
      -- an inline table may use the helper's parsed names (queues,
      -- tenants), as KumoMTA's own test policies do; they mean queue and
      -- tenant
      local c = {}
      for k, v in pairs(d) do
        c[k] = v
      end
      for alias, name in pairs { queues = 'queue', tenants = 'tenant' } do
        if c[alias] ~= nil then
          if c[name] ~= nil then
            kg.fail(f.name, {}, alias, "both '%s' and '%s' are given", alias, name)
          end
          c[name], c[alias] = c[alias], nil
        end
      end
      d = c
    end
    kg.check_keys(d, TOP, f.name)
    for k in pairs(d) do
      kg.check_type(d, k, TOP[k], f.name)
    end
    for k, v in pairs(d) do
      if TOP[k] ~= 'table' then
        data.top[k] = v
      end
    end
    for name, block in pairs(d.tenant or {}) do
      local options, extras = parse_block(block, TENANT_KEYS, f.name, { 'tenant', name })
      local t = data.tenants[name] or { options = {}, extras = {}, campaigns = {} }
      overlay(t.options, options)
      for k, v in pairs(extras) do
        if k ~= 'campaigns' then
          t.extras[k] = v
        end
      end
      for cname, cblock in pairs(extras.campaigns or {}) do
        local _, cextras = parse_block(cblock, SCOPE_KEYS, f.name, { 'tenant', name, 'campaigns', cname })
        t.campaigns[cname] = overlay(t.campaigns[cname] or {}, cextras)
      end
      data.tenants[name] = t
    end
    for domain, block in pairs(d.queue or {}) do
      local options, extras, tenants = parse_block(block, SCOPE_KEYS, f.name, { 'queue', domain }, 'tenant')
      local q = data.queues[domain] or { options = {}, extras = {}, tenants = {} }
      overlay(q.options, options)
      overlay(q.extras, extras)
      for tname, tblock in pairs(tenants) do
        local topt, textras, campaigns = parse_block(tblock, SCOPE_KEYS, f.name, { 'queue', domain, tname }, 'campaign')
        local t = q.tenants[tname] or { options = {}, extras = {}, campaigns = {} }
        overlay(t.options, topt)
        overlay(t.extras, textras)
        for cname, cblock in pairs(campaigns) do
          local copt, cextras = parse_block(cblock, SCOPE_KEYS, f.name, { 'queue', domain, tname, cname })
          local c = t.campaigns[cname] or { options = {}, extras = {} }
          overlay(c.options, copt)
          overlay(c.extras, cextras)
          t.campaigns[cname] = c
        end
        q.tenants[tname] = t
      end
      data.queues[domain] = q
    end
  end
  local names, has_routing, has_overall = {}, false, false
  for domain, q in pairs(data.queues) do
    names[domain] = domain
    has_routing = has_routing or q.extras.routing_domain ~= nil
    for _, t in pairs(q.tenants) do
      has_routing = has_routing or t.extras.routing_domain ~= nil
      for _, c in pairs(t.campaigns) do
        has_routing = has_routing or c.extras.routing_domain ~= nil
      end
    end
  end
  for _, t in pairs(data.tenants) do
    has_overall = has_overall or t.extras.overall_max_message_rate ~= nil
    for _, c in pairs(t.campaigns) do
      has_overall = has_overall or c.overall_max_message_rate ~= nil
    end
  end
  data.domain_map = kumo.domain_map.new(names)
  data.has_routing = has_routing
  data.has_overall = has_overall
  return data
end

-- The blocks that apply to (domain, tenant, campaign), broadest first.
local function scopes(data, domain, tenant, campaign)
  local out = {}
  local default = data.queues.default
  if default then
    out[#out + 1] = default
  end
  local key = domain and data.domain_map[domain]
  local q = key and key ~= 'default' and data.queues[key]
  if q then
    out[#out + 1] = q
  end
  local t = tenant and data.tenants[tenant]
  if t then
    out[#out + 1] = t
  end
  local qt = q and tenant and q.tenants[tenant]
  if qt then
    out[#out + 1] = qt
    local c = campaign and qt.campaigns[campaign]
    if c then
      out[#out + 1] = c
    end
  end
  return out
end

local function resolve_config(data, domain, tenant, campaign)
  local params = { refresh_strategy = 'Epoch' }
  for _, s in ipairs(scopes(data, domain, tenant, campaign)) do
    utils.merge_into(s.options, params)
  end
  return params
end

-- The routing_domain for (domain, tenant, campaign): the most specific
-- scope that sets one, or nil.
local function resolve_routing_domain(data, domain, tenant, campaign)
  local routing
  for _, s in ipairs(scopes(data, domain, tenant, campaign)) do
    if s.extras and s.extras.routing_domain then
      routing = s.extras.routing_domain
    end
  end
  return routing
end

-- helper:apply(msg), per message, is kumogo.extras_data's queue_applier
-- (in Go: it is one call instead of a dozen): with the data of the cell,
--  * msg:import_scheduling_header(scheduling_header, true) when set;
--  * the campaign header's first value becomes the campaign meta (the
--    header is removed with remove_campaign_header);
--  * the tenant header's first value, else default_tenant, becomes the
--    tenant meta (the header is removed with remove_tenant_header); a
--    tenant without a [tenant] block is rejected (500), as is one whose
--    require_authz does not list the session's authz_id;
--  * when any scope sets routing_domain, the first recipient's domain,
--    tenant and campaign give the routing_domain meta
--    (resolve_routing_domain, remembered per state).

-- The provider name the shaping layer would give domain, for queue
-- configs that do not set provider_name.
local function resolve_provider(domain, routing_domain)
  if not kumo.invoke_get_egress_path_config then
    return nil
  end
  local ok, result = pcall(function()
    local target = routing_domain or domain
    local mx = kumo.dns.lookup_mx(target)
    return kumo.invoke_get_egress_path_config(target, 'unspecified', mx.site_name).provider_name
  end)
  if ok then
    return result
  end
  return nil
end

function mod:resolve_provider(domain, routing_domain)
  return resolve_provider(domain, routing_domain)
end

function mod:setup(file_names)
  return self:setup_with_options { file_names = file_names }
end

-- setup_with_options { file_names = {...}, skip_queue_config_hook = false }
function mod:setup_with_options(options)
  if mod.CONFIGURED then
    error(HELPER .. ': already configured', 2)
  end
  kg.check_keys(options, { file_names = true, skip_queue_config_hook = true, invalidate_with_epoch = true }, HELPER .. ':setup_with_options')
  local files = options.file_names
  local get_data, cell = kg.cached(HELPER, files, function()
    return load_data(files)
  end, 60)

  local helper = { file_names = files, apply = shared.queue_applier(cell, resolve_routing_domain) }
  function helper:resolve_config(domain, tenant, campaign)
    return resolve_config(get_data(), domain, tenant, campaign)
  end

  mod.CONFIGURED = { options = options, get_data = get_data, resolve_config = helper.resolve_config }

  if not options.skip_queue_config_hook then
    kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
      local params = resolve_config(get_data(), domain, tenant, campaign)
      if params.provider_name == nil then
        params.provider_name = resolve_provider(domain, routing_domain)
      end
      return kumo.make_queue_config(params)
    end)
  end

  kumo.on('throttle_insert_ready_queue', function(msg)
    local data = get_data()
    if not data.has_overall then
      return
    end
    local tenant = msg:get_meta 'tenant'
    local t = tenant and data.tenants[tenant]
    if not t then
      return
    end
    if not kumo.make_throttle then
      error(HELPER .. ': overall_max_message_rate needs kumo.make_throttle, which is not provided by kumogo yet')
    end
    local rate = t.extras.overall_max_message_rate
    if rate then
      local th = kumo.make_throttle('queue-helper-tenant-overall_max_message_rate-' .. tenant, rate)
      if th:delay_message_if_throttled(msg) then
        return
      end
    end
    local campaign = msg:get_meta 'campaign'
    local c = campaign and t.campaigns[campaign]
    if c and c.overall_max_message_rate then
      local th = kumo.make_throttle(
        string.format('queue-helper-tenant-campaign-overall_max_message_rate-%s-%s', tenant, campaign),
        c.overall_max_message_rate
      )
      th:delay_message_if_throttled(msg)
    end
  end)

  return helper
end

kumo.on('validate_config', function()
  if not mod.CONFIGURED then
    return
  end
  local ok, data = pcall(load_data, mod.CONFIGURED.options.file_names)
  if not ok then
    kg.report(HELPER, data)
    return
  end
  local sources = package.loaded['policy-extras.sources']
  if sources and sources.CONFIGURED then
    local sok, sdata = pcall(sources.CONFIGURED.get_data)
    if sok then
      local function check(what, name, scope)
        local pool = scope.options.egress_pool
        if pool and not sdata.pools[pool] then
          kg.report(HELPER, string.format("%s '%s' uses pool '%s', which is not defined in the sources data", what, name, pool))
        end
      end
      for name, t in pairs(data.tenants) do
        check('tenant', name, t)
      end
      for name, q in pairs(data.queues) do
        check('domain', name, q)
      end
    end
  end
  -- This helper answers every get_queue_config, so it must be the last
  -- handler registered for it.
  if not mod.CONFIGURED.options.skip_queue_config_hook then
    local regs = kumo.get_event_registrars 'get_queue_config'
    local last = regs[#regs] or {}
    local mine = false
    for _, frame in ipairs(last) do
      if frame:find('policy-extras/queue', 1, true) then
        mine = true
      end
    end
    if not mine then
      kg.report(HELPER, 'the queue helper must be the last module to register a get_queue_config handler; registrations: ' .. kumo.serde.json_encode(regs))
    end
  end
end)

return mod
